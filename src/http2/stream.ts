import type { Buffer } from 'node:buffer';
import type { Http2Connection } from './connection.ts';

/**
 * What the owner of a stream (a request being forwarded, a tunnel) hears from it. Payload views may
 * be lent (a view of the shared read buffer, `isLent`): copy what is kept past the call.
 */
export interface StreamSink {
  /** A header block after the first: the response head (client role; 1xx ones first), or trailers. */
  onHeaders(fields: readonly string[], endStream: boolean): void;
  onData(buf: Buffer, start: number, end: number): void;
  /** The peer ended its side (END_STREAM). */
  onEnd(): void;
  /** The stream ended abnormally: `local` when we reset it, else the peer did or the connection died. */
  onReset(code: number, local: boolean): void;
  /** Queued output went out (or the window opened): the producer may write again. */
  onWritable(): void;
}

/**
 * One HTTP/2 stream: a small record, not a Duplex. State, both flow-control windows and the output
 * that waits for window; the connection does the work (`Http2Connection` methods take the stream).
 */
export class Http2Stream {
  readonly id: number;
  readonly conn: Http2Connection;
  sink: StreamSink | null = null;
  /**
   * Thirteen booleans in one small integer, read and written through the accessors below: a stream
   * record is ~90 B smaller (an idle RFC 8441 WebSocket holds two of them).
   */
  private flags = 0;
  /** Bytes we may still send / the peer may still send before a WINDOW_UPDATE. */
  sendWindow: number;
  recvWindow: number;
  /** Received bytes handed on but not yet credited back with WINDOW_UPDATE. */
  recvUnacked = 0;
  /** DATA that arrived while the owner paused receiving (bounded by the window we granted). */
  held: Buffer[] | null = null;
  /** Output waiting for window: owned buffers, then END_STREAM and trailers. */
  queue: Buffer[] | null = null;
  queuedBytes = 0;
  trailersQueued: string[] | null = null;
  /** content-length of the peer's message, -1 when absent; DATA counted against it (RFC 9113 §8.1.1). */
  expectedLength = -1;
  receivedLength = 0;
  /** The RST_STREAM code that ended the stream (either way; REFUSED_STREAM above a GOAWAY), -1 if none. */
  resetCode = -1;
  /** When output last stopped progressing for want of window (performance.now(); 0 = not stalled). */
  stalledSince = 0;

  constructor(conn: Http2Connection, id: number, sendWindow: number, recvWindow: number) {
    this.conn = conn;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  // --- the packed flags (bit per name, in declaration order) ---
  /** We sent END_STREAM (or reset). */
  get localClosed(): boolean {
    return (this.flags & 1) !== 0;
  }
  set localClosed(v: boolean) {
    this.flags = v ? this.flags | 1 : this.flags & ~1;
  }
  /** The peer sent END_STREAM (or reset). */
  get remoteClosed(): boolean {
    return (this.flags & 2) !== 0;
  }
  set remoteClosed(v: boolean) {
    this.flags = v ? this.flags | 2 : this.flags & ~2;
  }
  /** Gone from the connection's table. */
  get closed(): boolean {
    return (this.flags & 4) !== 0;
  }
  set closed(v: boolean) {
    this.flags = v ? this.flags | 4 : this.flags & ~4;
  }
  /** Our head went out (response on the server side, request on the client side). */
  get headersSent(): boolean {
    return (this.flags & 8) !== 0;
  }
  set headersSent(v: boolean) {
    this.flags = v ? this.flags | 8 : this.flags & ~8;
  }
  /** The peer's first header block arrived (client role: a final response head). */
  get headersReceived(): boolean {
    return (this.flags & 16) !== 0;
  }
  set headersReceived(v: boolean) {
    this.flags = v ? this.flags | 16 : this.flags & ~16;
  }
  /** Receiving is paused by the owner: DATA is held here (bounded by the window we granted). */
  get paused(): boolean {
    return (this.flags & 32) !== 0;
  }
  set paused(v: boolean) {
    this.flags = v ? this.flags | 32 : this.flags & ~32;
  }
  get heldEnd(): boolean {
    return (this.flags & 64) !== 0;
  }
  set heldEnd(v: boolean) {
    this.flags = v ? this.flags | 64 : this.flags & ~64;
  }
  get endQueued(): boolean {
    return (this.flags & 128) !== 0;
  }
  set endQueued(v: boolean) {
    this.flags = v ? this.flags | 128 : this.flags & ~128;
  }
  /** The owner was told to wait (write returned false): tell it when output drains. */
  get needWritable(): boolean {
    return (this.flags & 256) !== 0;
  }
  set needWritable(v: boolean) {
    this.flags = v ? this.flags | 256 : this.flags & ~256;
  }
  /** Client role: the request was HEAD (a response may announce a length it does not send). */
  get noResponseBody(): boolean {
    return (this.flags & 512) !== 0;
  }
  set noResponseBody(v: boolean) {
    this.flags = v ? this.flags | 512 : this.flags & ~512;
  }
  /** Reset the peer's side with NO_ERROR once our END_STREAM is out. */
  get stopPeerAfterEnd(): boolean {
    return (this.flags & 1024) !== 0;
  }
  set stopPeerAfterEnd(v: boolean) {
    this.flags = v ? this.flags | 1024 : this.flags & ~1024;
  }
  /** Listed in the connection's queue of streams waiting for connection window. */
  get waitingForWindow(): boolean {
    return (this.flags & 2048) !== 0;
  }
  set waitingForWindow(v: boolean) {
    this.flags = v ? this.flags | 2048 : this.flags & ~2048;
  }
  /**
   * The header block just handed to the owner (onStream, onHeaders) is known to pass the character
   * rules of RFC 9113 §8.2.1 (HpackDecoder.clean): the owner's message rules may skip that scan.
   */
  get fieldsClean(): boolean {
    return (this.flags & 4096) !== 0;
  }
  set fieldsClean(v: boolean) {
    this.flags = v ? this.flags | 4096 : this.flags & ~4096;
  }

  /** Sends the head: `fields` flat as [name, value, ...], pseudo-fields first. */
  respond(fields: readonly string[], endStream: boolean): void {
    this.conn.sendHeaders(this, fields, endStream);
  }

  /** Body bytes (copied when they cannot leave in this turn). False: wait for `onWritable`. */
  write(buf: Buffer, start = 0, end = buf.length): boolean {
    return this.conn.sendData(this, buf, start, end);
  }

  /**
   * END_STREAM, after anything queued; with trailers when given. `stopPeer`: once it is sent, reset
   * the peer's side with NO_ERROR if it is still sending (a response complete before its request, §8.1).
   */
  end(trailers: readonly string[] | null = null, stopPeer = false): void {
    this.conn.endStream(this, trailers, stopPeer);
  }

  reset(code: number): void {
    this.conn.resetStream(this, code);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn.releaseHeld(this);
  }
}
