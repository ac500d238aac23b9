import { Buffer } from 'node:buffer';
import { Duplex } from 'node:stream';
import { CANCEL, errorName, NO_ERROR } from './frame.ts';
import type { Http2Stream, StreamSink } from './stream.ts';

/**
 * An HTTP/2 stream as a Duplex, for the CONNECT-UDP relay only (its capsule parser reads a Node
 * stream). Requests use the stream record directly, and TCP and WebSocket tunnels join stream records
 * and sockets without Node streams (tunnel/splice.ts).
 *
 * Reads: DATA is pushed; when the readable side is full the stream is paused, which holds back the
 * WINDOW_UPDATE, so the peer stops sending. Writes go out as DATA; the callback waits for the
 * stream's window when it is exhausted. END_STREAM is `end()` / 'end'; a reset is `close(code)` and
 * shows as `rstCode` (so the splice tells a reset from a clean end).
 */
export class H2StreamDuplex extends Duplex implements StreamSink {
  readonly h2: Http2Stream;
  /** The RST_STREAM code that ended the stream, either way; undefined after a clean end. */
  rstCode: number | undefined = undefined;
  private pendingWrite: (() => void) | null = null;
  /** `_final`'s callback, held until END_STREAM has left (it may wait for window behind queued DATA). */
  private pendingFinal: (() => void) | null = null;
  /**
   * Our END_STREAM closes the stream whole: if the peer has not ended its side, RST_STREAM NO_ERROR
   * follows (RFC 9113 §8.1). For WebSocket tunnels, see Splice.
   */
  closeOnEnd = false;
  /** Headers received after the first block (the upstream's answer on a client stream). */
  onHeadersBlock: ((fields: readonly string[], endStream: boolean) => void) | null = null;

  constructor(stream: Http2Stream) {
    super({ allowHalfOpen: true });
    this.h2 = stream;
    stream.sink = this;
    // Nothing is read until a consumer asks (`pipe`, 'data').
    stream.pause();
  }

  /** The stream is over, or the duplex was destroyed. */
  get ended(): boolean {
    return this.h2.closed || this.destroyed;
  }

  get headersSent(): boolean {
    return this.h2.headersSent;
  }

  /** RST_STREAM with `code` and destroy. */
  close(code: number = NO_ERROR): void {
    if (this.rstCode === undefined && !this.h2.closed) this.rstCode = code;
    this.h2.reset(code);
    this.destroy();
  }

  // --- StreamSink ---

  onHeaders(fields: readonly string[], endStream: boolean): void {
    this.onHeadersBlock?.(fields, endStream);
    if (endStream) this.push(null);
  }

  onData(buf: Buffer, start: number, end: number): void {
    if (!this.push(Buffer.from(buf.subarray(start, end)))) this.h2.pause();
  }

  onEnd(): void {
    this.push(null);
  }

  onReset(code: number, local: boolean): void {
    this.release();
    if (local && code === NO_ERROR) {
      // We closed it after our END_STREAM (closeOnEnd): a clean end, whatever the peer still had.
      this.push(null);
      this.destroy();
      return;
    }
    if (this.rstCode === undefined) this.rstCode = code;
    if (code === NO_ERROR && this.readableEnded) {
      this.destroy();
      return;
    }
    const err = Object.assign(new Error(`HTTP/2 stream reset: ${errorName(code)}`), { code: 'ERR_HTTP2_STREAM_ERROR' });
    this.destroy(local && code === CANCEL ? undefined : err);
  }

  onWritable(): void {
    this.release();
  }

  private release(): void {
    const cb = this.pendingWrite;
    this.pendingWrite = null;
    cb?.();
    if (this.pendingFinal !== null && !this.h2.endQueued) {
      const f = this.pendingFinal;
      this.pendingFinal = null;
      f();
    }
  }

  // --- Duplex ---

  override _read(): void {
    this.h2.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.h2.closed) {
      cb();
      return;
    }
    if (this.h2.write(chunk)) cb();
    else this.pendingWrite = () => cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.h2.end(null, this.closeOnEnd);
    if (this.h2.endQueued) this.pendingFinal = () => cb();
    else cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.h2.closed) {
      this.rstCode ??= CANCEL;
      this.h2.reset(CANCEL);
    }
    this.pendingFinal = null;
    this.release();
    cb(err);
  }
}
