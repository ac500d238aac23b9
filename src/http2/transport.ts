import type { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { detachDirect, readDirect, writeDirectTo } from '../core/direct-io.ts';
import { WriteBatch } from '../core/write-batch.ts';
import { type Flushable, scheduleFlush } from '../core/flush-queue.ts';

/** What the transport drives: the connection's reads, its flush hook, drain and close. */
export interface TransportOwner {
  onBytes(buf: Buffer, start: number, end: number): void;
  beforeFlush(): void;
  onDrain(): void;
  onTransportClosed(error: boolean): void;
  congested: boolean;
}

/**
 * The bytes under one HTTP/2 connection. A plain TCP socket is read through the shared direct-read
 * buffer (frames are parsed in place; only an incomplete frame is copied) and written through its
 * handle; a TLS socket uses 'data' events and `write`. Frames are gathered in a WriteBatch and
 * written once per turn of the event loop, from the flush queue's microtask.
 *
 * The peer's FIN ends the connection at once: HTTP/2 has no use for a half-closed connection
 * (everything the peer could still want is on a stream), and waiting would leave the socket in
 * CLOSE-WAIT until a timeout.
 */
export class H2Transport implements Flushable {
  readonly socket: Socket;
  private readonly owner: TransportOwner;
  private batch = new WriteBatch();
  private scheduled = false;
  private direct = false;
  private ending = false;
  private failed = false;
  private finished = false;

  constructor(socket: Socket, owner: TransportOwner) {
    this.socket = socket;
    this.owner = owner;
    socket.on('error', () => {
      this.failed = true;
    });
    socket.once('end', () => {
      if (!socket.destroyed) socket.destroy();
    });
    socket.once('close', () => owner.onTransportClosed(this.failed || !this.ending));
  }

  startReading(): void {
    const socket = this.socket;
    if (socket.destroyed) {
      this.owner.onTransportClosed(true);
      return;
    }
    if (readDirect(socket, this)) {
      this.direct = writeDirectTo(socket, this);
      socket.resume();
      return;
    }
    socket.on('data', (chunk: Buffer) => this.owner.onBytes(chunk, 0, chunk.length));
    socket.on('drain', () => this.onDirectDrain());
    socket.resume();
  }

  onDirectRead(buf: Buffer, length: number): void {
    this.owner.onBytes(buf, 0, length);
  }

  onDirectDrain(): void {
    this.owner.onDrain();
  }

  add(data: Buffer): void {
    this.batch.add(data);
  }

  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    scheduleFlush(this);
  }

  flush(): void {
    this.scheduled = false;
    const socket = this.socket;
    if (socket.destroyed) return;
    this.owner.beforeFlush();
    if (this.batch.empty) return;
    if (!this.batch.flush(socket, this.direct)) this.owner.congested = true;
    if (this.ending) this.finishEnd();
  }

  /** Sends what is queued, then FIN; the socket is destroyed if the peer does not close in time. */
  end(): void {
    if (this.ending) return;
    this.ending = true;
    if (this.scheduled) return; // flush() ends it
    this.flush();
    this.finishEnd();
  }

  private finishEnd(): void {
    const socket = this.socket;
    if (this.finished || socket.destroyed) return;
    this.finished = true;
    if (this.direct) detachDirect(socket);
    socket.end();
    // The peer may never read our GOAWAY: do not keep the socket for longer than a moment.
    const t = setTimeout(() => socket.destroy(), 2000);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  }

  destroy(): void {
    this.ending = true;
    this.socket.destroy();
  }
}
