import { Buffer } from 'node:buffer';
import { CLIENT_PREFACE, FRAME_HEADER, PREFACE_LENGTH } from './frame.ts';

/** Where whole frames go, and why reading stopped. */
export interface FrameSink {
  /** One complete frame `b[start, end)`, header included (b may be lent: valid during the call). */
  onFrame(b: Buffer, start: number, end: number): void;
  /** The client preface was wrong. */
  onBadPreface(): void;
  /** A frame longer than our SETTINGS_MAX_FRAME_SIZE. */
  onOversizeFrame(length: number): void;
  /** The connection is gone: stop handing frames. */
  readonly closed: boolean;
}

/**
 * Cuts a connection's bytes into frames (RFC 9113 §4.1). Frames that arrive whole are handed on in
 * place, as views of the read; only a frame cut by the end of a read is copied, into a buffer of its
 * own (never reused, so views of its payload handed on stay valid). A server first checks the client
 * preface (§3.4).
 */
export class FrameReader {
  private readonly sink: FrameSink;
  private prefaceLeft: number;
  private partial: Buffer | null = null;
  private partialLength = 0;
  /** SETTINGS_MAX_FRAME_SIZE we advertised. */
  maxFrameSize = 16384;

  constructor(sink: FrameSink, expectPreface: boolean) {
    this.sink = sink;
    this.prefaceLeft = expectPreface ? PREFACE_LENGTH : 0;
  }

  /** Bytes `buf[start, end)`, possibly lent. */
  push(buf: Buffer, start: number, end: number): void {
    const sink = this.sink;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, end - start);
      const from = PREFACE_LENGTH - this.prefaceLeft;
      for (let i = 0; i < n; i++) {
        if (buf[start + i] !== CLIENT_PREFACE.charCodeAt(from + i)) {
          sink.onBadPreface();
          return;
        }
      }
      this.prefaceLeft -= n;
      start += n;
      if (start === end) return;
    }
    let partial = this.partial;
    if (partial !== null) {
      const have = this.partialLength;
      let need = FRAME_HEADER;
      if (have >= FRAME_HEADER) need += lengthAt(partial, 0);
      else {
        const take = Math.min(FRAME_HEADER - have, end - start);
        buf.copy(partial, have, start, start + take);
        this.partialLength += take;
        start += take;
        if (this.partialLength < FRAME_HEADER) return;
        const len = lengthAt(partial, 0);
        if (len > this.maxFrameSize) {
          sink.onOversizeFrame(len);
          return;
        }
        need = FRAME_HEADER + len;
        if (partial.length < need) {
          const bigger = Buffer.allocUnsafe(need);
          partial.copy(bigger, 0, 0, FRAME_HEADER);
          partial = bigger;
          this.partial = bigger;
        }
      }
      const take = Math.min(need - this.partialLength, end - start);
      buf.copy(partial, this.partialLength, start, start + take);
      this.partialLength += take;
      start += take;
      if (this.partialLength < need) return;
      this.partial = null;
      this.partialLength = 0;
      sink.onFrame(partial, 0, need);
      if (sink.closed) return;
    }
    while (end - start >= FRAME_HEADER) {
      const len = lengthAt(buf, start);
      if (len > this.maxFrameSize) {
        sink.onOversizeFrame(len);
        return;
      }
      if (end - start < FRAME_HEADER + len) break;
      sink.onFrame(buf, start, start + FRAME_HEADER + len);
      if (sink.closed) return;
      start += FRAME_HEADER + len;
    }
    if (start < end) {
      const rest = end - start;
      const size = rest >= FRAME_HEADER ? FRAME_HEADER + lengthAt(buf, start) : FRAME_HEADER;
      const p = Buffer.allocUnsafe(size);
      buf.copy(p, 0, start, end);
      this.partial = p;
      this.partialLength = rest;
    }
  }
}

function lengthAt(b: Buffer, at: number): number {
  return (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
}
