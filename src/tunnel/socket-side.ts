import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import {
  type DrainSink,
  isLent,
  pauseDirect,
  type ReadSink,
  readDirect,
  resumeDirect,
  writeDirect,
  writeDirectTo,
} from '../core/direct-io.ts';
import { resetSocket } from '../core/reset-socket.ts';
import { writeLentDirect } from '../core/write-batch.ts';
import type { SideEvents, TunnelSide } from './tunnel-side.ts';

/**
 * A TCP or TLS socket as a tunnel side. A plain TCP socket is read through the shared direct-read
 * buffer and written through its handle (core/direct-io.ts), like the HTTP/1.1 path: no buffer is
 * allocated per read and nothing is kept per idle tunnel but the socket itself. A TLS socket uses
 * 'data' events and `write`.
 *
 * The socket is half-open capable: the peer's FIN is reported (`onSideEnd`) and our output stays
 * open until the splice ends it; 'close' reports the side gone, abrupt unless input ended cleanly.
 */
export class SocketSide implements TunnelSide, ReadSink, DrainSink {
  readonly socket: Socket;
  private events: SideEvents | null = null;
  /** Bytes that came with the handshake (after the head); delivered first. */
  private leftover: Buffer | null;
  private direct = false;
  private directWrite = false;
  private inputEnded = false;
  gone = false;

  constructor(socket: Socket, leftover: Buffer | null) {
    this.socket = socket;
    this.leftover = leftover !== null && leftover.length > 0 ? leftover : null;
    socket.allowHalfOpen = true;
    // Direct writes only when no stream write is still waiting: they would overtake it.
    if (socket.writableLength === 0) this.directWrite = writeDirectTo(socket, this);
  }

  attach(events: SideEvents): void {
    this.events = events;
    const socket = this.socket;
    socket.on('error', noop);
    socket.once('end', () => this.onEnd());
    socket.once('close', () => this.onClose());
    const first = this.leftover;
    this.leftover = null;
    if (first !== null) events.onSideData(this, first, 0, first.length);
    if (socket.destroyed) {
      // Already closed: 'close' will not fire again (the splice reports it); else it follows.
      if (socket.closed) this.gone = true;
      return;
    }
    // What the socket's Readable side holds (read while the tunnel was being set up) goes first.
    if (!socket.readableFlowing) {
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) {
        events.onSideData(this, c, 0, c.length);
      }
    }
    if (readDirect(socket, this)) {
      this.direct = true;
      resumeDirect(socket);
      // An end of input that came before the switch is not reported by 'end' again.
      if (socket.readableEnded) this.onEnd();
      return;
    }
    socket.on('data', (c: Buffer) => this.events?.onSideData(this, c, 0, c.length));
    socket.resume();
  }

  onDirectRead(buf: Buffer, length: number): void {
    this.events?.onSideData(this, buf, 0, length);
  }

  onDirectDrain(): void {
    this.events?.onSideWritable(this);
  }

  write(buf: Buffer, start: number, end: number): boolean {
    const socket = this.socket;
    if (this.gone || socket.destroyed || socket.writableEnded) return true;
    const view = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    if (this.directWrite) return isLent(view) ? writeLentDirect(socket, view) : writeDirect(socket, view);
    const ok = socket.write(isLent(view) ? Buffer.from(view) : view);
    if (!ok) socket.once('drain', () => this.events?.onSideWritable(this));
    return ok;
  }

  end(): void {
    const socket = this.socket;
    if (!socket.destroyed && !socket.writableEnded) socket.end();
  }

  reset(): void {
    resetSocket(this.socket);
  }

  close(): void {
    this.socket.destroy();
  }

  pause(): void {
    if (this.direct) pauseDirect(this.socket);
    else this.socket.pause();
  }

  resume(): void {
    if (this.direct) resumeDirect(this.socket);
    else this.socket.resume();
  }

  private onEnd(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.events?.onSideEnd(this);
  }

  private onClose(): void {
    if (this.gone) return;
    this.gone = true;
    this.events?.onSideClosed(this, this.socket.errored !== null || !this.inputEnded);
  }
}

function noop(): void {}
