import type { Buffer } from 'node:buffer';
import { CONNECT_ERROR, NO_ERROR } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import type { SideEvents, TunnelSide } from './tunnel-side.ts';

/**
 * An HTTP/2 stream (CONNECT, RFC 8441 extended CONNECT) as a tunnel side: the stream record's own
 * sink, so a tunnel over HTTP/2 costs this small object and the stream record, not a Duplex.
 *
 * Flow control is the stream's: pausing holds DATA in the record (bounded by the window we granted)
 * and withholds WINDOW_UPDATE, so the peer stops sending. The side is gone when both directions
 * ended (our END_STREAM out, theirs in) or on a reset. A reset with NO_ERROR counts as clean only
 * after the peer's END_STREAM, or when it is ours after our END_STREAM (`closeWhole`).
 */
export class StreamSide implements TunnelSide, StreamSink {
  readonly stream: Http2Stream;
  private events: SideEvents | null = null;
  /**
   * Our END_STREAM closes the stream whole: a peer still open is reset with NO_ERROR (RFC 9113 §8.1).
   * For WebSockets, whose own closing handshake is over when either side's input ends.
   */
  closeWhole = false;
  private inputEnded = false;
  private outputEnded = false;
  gone = false;

  constructor(stream: Http2Stream) {
    this.stream = stream;
    stream.sink = this;
    stream.pause();
  }

  attach(events: SideEvents): void {
    this.events = events;
    const s = this.stream;
    if (s.closed) {
      // Reset (or the connection died) between the answer and the splice.
      this.gone = true;
      return;
    }
    s.resume();
    // END_STREAM that came on the answer's HEADERS is not told to a sink that was not there yet.
    if (!this.inputEnded && !this.gone && s.remoteClosed && s.held === null && !s.heldEnd) this.onEnd();
  }

  write(buf: Buffer, start: number, end: number): boolean {
    return this.stream.write(buf, start, end);
  }

  end(): void {
    if (this.outputEnded || this.gone) return;
    this.outputEnded = true;
    this.stream.end(null, this.closeWhole);
    this.checkDone();
  }

  reset(): void {
    if (!this.gone) this.stream.reset(CONNECT_ERROR);
  }

  close(): void {
    this.reset();
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    if (!this.gone) this.stream.resume();
  }

  // --- StreamSink ---

  onHeaders(_fields: readonly string[], endStream: boolean): void {
    // Trailers on a tunnel carry nothing to relay; their END_STREAM ends the input.
    if (endStream) this.onEnd();
  }

  onData(buf: Buffer, start: number, end: number): void {
    this.events?.onSideData(this, buf, start, end);
  }

  onEnd(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.events?.onSideEnd(this);
    this.checkDone();
  }

  onReset(code: number, local: boolean): void {
    if (this.gone) return;
    this.gone = true;
    const clean = code === NO_ERROR && (this.inputEnded || (local && this.outputEnded));
    this.events?.onSideClosed(this, !clean);
  }

  onWritable(): void {
    if (this.gone) return;
    this.checkDone();
    if (!this.gone) this.events?.onSideWritable(this);
  }

  /** Both directions over: our END_STREAM left (not still queued behind window) and theirs came. */
  private checkDone(): void {
    const s = this.stream;
    if (this.gone || !this.inputEnded || !this.outputEnded || s.endQueued || !s.localClosed) return;
    this.gone = true;
    this.events?.onSideClosed(this, false);
  }
}
