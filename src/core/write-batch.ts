import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { isLent, writeDirect, writevDirect } from './direct-io.ts';

/** Batches at most this many bytes into one buffer; larger batches are written corked (writev). */
const COALESCE_MAX = 16 * 1024;

/** Direct writes coalesce into this (a 64 KiB read plus a response head fits). */
const SCRATCH_BYTES = 80 * 1024;
let scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

/**
 * Writes a lent view (of a shared read buffer) to a socket switched to direct writes: copied into the
 * shared scratch buffer and written from there, which is then replaced if the write has to wait (see
 * WriteBatch.flushDirect). Returns false when the caller should wait for the drain.
 */
export function writeLentDirect(socket: Socket, view: Buffer): boolean {
  if (view.length > SCRATCH_BYTES) return writeDirect(socket, Buffer.from(view));
  const copy = scratch.subarray(0, view.length);
  view.copy(copy);
  return writeScratch(socket, copy);
}

/** Writes `view` (the start of `scratch`); if the kernel did not take it all, libuv keeps it: make a new scratch. */
function writeScratch(socket: Socket, view: Buffer): boolean {
  const done = writeDirect(socket, view);
  if (!done) scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  return done;
}

/**
 * Collects what one event produces for a socket (a response head, body slices, chunk framing) and
 * writes it with as few syscalls and as little stream bookkeeping as possible: one piece is written
 * as is; small batches are copied into one buffer (one write, no writev arrays, no string copies in
 * C++); large ones go out corked so the body is never copied. Parts that are views of a shared read
 * buffer (`isLent`) are copied wherever the write may complete after the read's callback.
 */
export class WriteBatch {
  /** Parts [0, count); the array keeps its capacity between flushes (truncating it would free it). */
  private readonly parts: (Buffer | string)[] = [];
  private count = 0;
  private bytes = 0;

  get empty(): boolean {
    return this.count === 0;
  }

  /** Strings are latin1 (one byte per char): HTTP heads are bytes. */
  add(data: Buffer | string): void {
    this.parts[this.count++] = data;
    this.bytes += data.length;
  }

  /**
   * Writes everything added so far; returns false when the socket asks the writer to wait for 'drain'.
   * `direct`: the socket was switched to direct writes (core/direct-io.ts), which this then uses.
   */
  flush(socket: Socket, direct = false): boolean {
    const parts = this.parts;
    const n = this.count;
    if (n === 0) return true;
    let ok = true;
    if (direct) {
      ok = this.flushDirect(socket);
    } else if (n === 1) {
      const p = parts[0]!;
      ok = typeof p === 'string' ? socket.write(p, 'latin1') : socket.write(isLent(p) ? Buffer.from(p) : p);
    } else if (this.bytes <= COALESCE_MAX) {
      ok = socket.write(this.coalesce());
    } else {
      socket.cork();
      for (let i = 0; i < n; i++) {
        const p = parts[i]!;
        ok = typeof p === 'string' ? socket.write(p, 'latin1') : socket.write(isLent(p) ? Buffer.from(p) : p);
      }
      socket.uncork();
    }
    for (let i = 0; i < n; i++) parts[i] = ''; // drop references, keep the slots
    this.count = 0;
    this.bytes = 0;
    return ok;
  }

  /**
   * Written to the handle. An owned buffer or a string alone goes as it is. Anything else is copied
   * into one shared scratch buffer and written from there: no buffer is allocated per write (a
   * 64 KiB body read from the shared upstream buffer would otherwise cost a 64 KiB ArrayBuffer
   * each time, and the external memory they add makes V8 run full GCs). When the kernel does not
   * take all of it at once, libuv keeps pointing into the scratch buffer, so that one is handed
   * over and a new one made. Batches larger than the scratch go out with one writev.
   */
  private flushDirect(socket: Socket): boolean {
    const parts = this.parts;
    const n = this.count;
    if (n === 1) {
      const p = parts[0]!;
      if (typeof p === 'string' || !isLent(p)) return writeDirect(socket, p);
    }
    if (this.bytes <= SCRATCH_BYTES) return writeScratch(socket, this.coalesce(scratch));
    const chunks: Buffer[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const p = parts[i]!;
      chunks[i] = typeof p === 'string' ? Buffer.from(p, 'latin1') : isLent(p) ? Buffer.from(p) : p;
    }
    return writevDirect(socket, chunks);
  }

  /** All parts in one buffer: a new one, or the start of `into`. */
  private coalesce(into?: Buffer): Buffer {
    const parts = this.parts;
    const out = into === undefined ? Buffer.allocUnsafe(this.bytes) : into.subarray(0, this.bytes);
    let off = 0;
    for (let i = 0; i < this.count; i++) {
      const p = parts[i]!;
      off += typeof p === 'string' ? out.write(p, off, 'latin1') : p.copy(out, off);
    }
    return out;
  }
}
