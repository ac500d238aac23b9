import type { Socket } from 'node:net';

/** Batches at most this many bytes into one buffer; larger batches are written corked (writev). */
const COALESCE_MAX = 16 * 1024;

/**
 * Collects what one event produces for a socket (a response head, body slices, chunk framing) and
 * writes it with as few syscalls and as little stream bookkeeping as possible: one piece is written
 * as is; small batches are copied into one buffer (one write, no writev arrays, no string copies in
 * C++); large ones go out corked so the body is never copied.
 */
export class WriteBatch {
  /** Parts [0, count); the array keeps its capacity between flushes (truncating it would free it). */
  private readonly parts: (Buffer | string)[] = [];
  private count = 0;
  private bytes = 0;
  /** Buffers may be borrowed views (the shared upstream read buffer): copy any not coalesced. */
  private readonly borrowed: boolean;

  constructor(borrowed = false) {
    this.borrowed = borrowed;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  /** Strings are latin1 (one byte per char): HTTP heads are bytes. */
  add(data: Buffer | string): void {
    this.parts[this.count++] = data;
    this.bytes += data.length;
  }

  /** Writes everything added so far; returns false when the socket asks the writer to wait for 'drain'. */
  flush(socket: Socket): boolean {
    const parts = this.parts;
    const n = this.count;
    if (n === 0) return true;
    let ok = true;
    if (n === 1) {
      const p = parts[0]!;
      ok = typeof p === 'string' ? socket.write(p, 'latin1') : socket.write(this.borrowed ? Buffer.from(p) : p);
    } else if (this.bytes <= COALESCE_MAX) {
      const out = Buffer.allocUnsafe(this.bytes);
      let off = 0;
      for (let i = 0; i < n; i++) {
        const p = parts[i]!;
        off += typeof p === 'string' ? out.write(p, off, 'latin1') : p.copy(out, off);
      }
      ok = socket.write(out);
    } else {
      socket.cork();
      for (let i = 0; i < n; i++) {
        const p = parts[i]!;
        ok = typeof p === 'string' ? socket.write(p, 'latin1') : socket.write(this.borrowed ? Buffer.from(p) : p);
      }
      socket.uncork();
    }
    for (let i = 0; i < n; i++) parts[i] = ''; // drop references, keep the slots
    this.count = 0;
    this.bytes = 0;
    return ok;
  }
}
