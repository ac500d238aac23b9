import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { detachDirect, readDirect, writeDirect, writeDirectTo, writevDirect } from '../core/direct-io.ts';
import { DATA, FLAG_END_STREAM, FRAME_HEADER, writeFrameHeader } from './frame.ts';

/** What the transport drives: the connection's reads, its flush hook, drain and close. */
export interface TransportOwner {
  onBytes(buf: Buffer, start: number, end: number): void;
  beforeFlush(): void;
  onDrain(): void;
  onTransportClosed(error: boolean): void;
  congested: boolean;
}

/** Output is gathered here; pieces up to this size are copied in, larger owned ones referenced. */
const ARENA_BYTES = 64 * 1024;
const COPY_MAX = 4096;
/** Arenas handed back after a write the kernel took at once, for the next connection that writes. */
const spareArenas: Buffer[] = [];
const SPARE_ARENAS = 16;

/** Transports with output this turn; all flushed from one setImmediate. */
const toFlush: H2Transport[] = [];
let flushQueued = false;

function flushAll(): void {
  flushQueued = false;
  // Index loop: a flush can schedule another transport (a stream relayed between two connections).
  for (let i = 0; i < toFlush.length; i++) toFlush[i]!.flush();
  toFlush.length = 0;
}

/**
 * The bytes under one HTTP/2 connection. A plain TCP socket is read through the shared direct-read
 * buffer (frames are parsed in place; only an incomplete frame is copied) and written through its
 * handle; a TLS socket uses 'data' events and `write`.
 *
 * Output is gathered per connection and written once per turn of the event loop (a setImmediate
 * after the poll phase), not after every read: a connection whose streams are answered by many
 * upstream reads in one turn then costs one write syscall, not one per response. Frame headers and
 * small payloads are copied into an arena (a 64 KiB buffer lent from a free list); since the write
 * happens after later reads may have reused the shared read buffer, lent views are always copied.
 *
 * The peer's FIN ends the connection at once: HTTP/2 has no use for a half-closed connection
 * (everything the peer could still want is on a stream), and waiting would leave the socket in
 * CLOSE-WAIT until a timeout.
 */
export class H2Transport {
  readonly socket: Socket;
  private readonly owner: TransportOwner;
  private arena: Buffer | null = null;
  private used = 0;
  /** Sealed output in order (arena slices and large owned payloads), when more than one arena's worth. */
  private parts: Buffer[] | null = null;
  private scheduled = false;
  private direct = false;
  private ending = false;
  private failed = false;
  private finished = false;
  /** Where the last frame header went (until the next flush): see endLastData. */
  private lastArena: Buffer | null = null;
  private lastPos = 0;
  private lastType = -1;
  private lastStream = 0;

  constructor(socket: Socket, owner: TransportOwner) {
    this.socket = socket;
    this.owner = owner;
    socket.on('error', () => {
      this.failed = true;
    });
    socket.once('end', () => {
      if (!socket.destroyed) socket.destroy();
    });
    socket.once('close', () => {
      this.release();
      owner.onTransportClosed(this.failed || !this.ending);
    });
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

  /** Room for `n` more bytes in the arena (sealing a full one). */
  private room(n: number): Buffer {
    let a = this.arena;
    if (a !== null && this.used + n <= a.length) return a;
    if (a !== null && this.used > 0) {
      (this.parts ??= []).push(a.subarray(0, this.used));
      a = null; // the sealed slice keeps it; a new arena follows
    }
    a = n <= ARENA_BYTES ? (spareArenas.pop() ?? Buffer.allocUnsafeSlow(ARENA_BYTES)) : Buffer.allocUnsafeSlow(n);
    this.arena = a;
    this.used = 0;
    return a;
  }

  /** A frame header; its payload follows with `bytes`. */
  header(length: number, type: number, flags: number, streamId: number): void {
    const a = this.room(FRAME_HEADER);
    this.lastArena = a;
    this.lastPos = this.used;
    this.lastType = type;
    this.lastStream = streamId;
    writeFrameHeader(a, this.used, length, type, flags, streamId);
    this.used += FRAME_HEADER;
  }

  /**
   * Sets END_STREAM on the frame written last if it is a DATA frame of `streamId` not yet flushed:
   * a response whose end follows its last body bytes then costs no empty DATA frame.
   */
  endLastData(streamId: number): boolean {
    const a = this.lastArena;
    if (a === null || this.lastType !== DATA || this.lastStream !== streamId) return false;
    a[this.lastPos + 4]! |= FLAG_END_STREAM;
    this.lastArena = null;
    return true;
  }

  /** Payload bytes `buf[start, end)`: copied when small or lent, else referenced (must not change). */
  bytes(buf: Buffer, start: number, end: number, owned: boolean): void {
    const n = end - start;
    if (n === 0) return;
    if (n <= COPY_MAX || !owned) {
      // A large lent view is copied in pieces that fill each arena.
      let at = start;
      while (at < end) {
        const a = this.room(Math.min(end - at, ARENA_BYTES));
        const take = Math.min(end - at, a.length - this.used);
        buf.copy(a, this.used, at, at + take);
        this.used += take;
        at += take;
      }
      return;
    }
    const a = this.arena;
    if (a !== null && this.used > 0) {
      (this.parts ??= []).push(a.subarray(0, this.used));
      this.arena = null;
      this.used = 0;
    }
    (this.parts ??= []).push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** Output was added: flush it this turn. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    toFlush.push(this);
    if (!flushQueued) {
      flushQueued = true;
      setImmediate(flushAll);
    }
  }

  flush(): void {
    this.scheduled = false;
    const socket = this.socket;
    if (socket.destroyed) {
      this.release();
      return;
    }
    this.owner.beforeFlush();
    this.lastArena = null;
    const parts = this.parts;
    const a = this.arena;
    const used = this.used;
    if (parts === null && used === 0) {
      if (this.ending) this.finishEnd();
      return;
    }
    let ok: boolean;
    if (parts === null) {
      const view = a!.subarray(0, used);
      ok = this.direct ? writeDirect(socket, view) : socket.write(view);
      // Written at once: the arena is free again. Otherwise libuv (or the TLS layer) holds it.
      this.used = 0;
      if (this.direct && ok) this.giveBack();
      else this.arena = null;
    } else {
      if (used > 0) parts.push(a!.subarray(0, used));
      this.arena = null;
      this.used = 0;
      this.parts = null;
      if (this.direct) ok = writevDirect(socket, parts);
      else {
        socket.cork();
        ok = true;
        for (const p of parts) ok = socket.write(p) && ok;
        socket.uncork();
      }
    }
    if (!ok) this.owner.congested = true;
    if (this.ending) this.finishEnd();
  }

  /** The arena goes back to the free list (an idle connection holds none). */
  private giveBack(): void {
    const a = this.arena;
    this.arena = null;
    if (a !== null && a.length === ARENA_BYTES && spareArenas.length < SPARE_ARENAS) spareArenas.push(a);
  }

  private release(): void {
    this.arena = null;
    this.used = 0;
    this.parts = null;
  }

  /** Sends what is queued, then FIN; the socket is destroyed if the peer does not close in time. */
  end(): void {
    if (this.ending) return;
    this.ending = true;
    if (this.scheduled) return; // flush() ends it
    this.flush();
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
