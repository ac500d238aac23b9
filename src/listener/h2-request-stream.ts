import { Buffer } from 'node:buffer';
import { isLent } from '../core/direct-io.ts';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import { Exchange } from '../forward/exchange.ts';
import { h2RequestHead } from '../forward/h2-translate.ts';
import { INTERNAL_ERROR, PROTOCOL_ERROR } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import { parseRequestHead, type RequestHead } from '../http1/request-head.ts';
import { pathOf } from '../router/router.ts';
import type { H2Responder } from '../forward/downstream.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';
import type { H2DownstreamConnection } from './h2-downstream-connection.ts';

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const EMPTY = Buffer.alloc(0);

/**
 * One HTTP/2 request stream from a client, as the downstream of an Exchange. The decoded header list
 * is turned into an HTTP/1.1 head and parsed by the strict HTTP/1.1 parser (see h2-translate.ts), so
 * routing, forwarding headers and framing rules are the same for both protocols. A malformed request
 * (RFC 9113 §8.1.1, §8.2) is answered 400 with its `muxgate-error` code and the stream is reset with
 * PROTOCOL_ERROR: nothing is forwarded. A body without Content-Length is fed to the exchange
 * chunk-framed, which keeps one body model for the exchange.
 */
export class H2RequestStream implements H2Responder, StreamSink {
  readonly h2 = true;
  readonly stream: Http2Stream;
  readonly conn: H2DownstreamConnection;
  private ex: Exchange | null = null;
  private chunked = false;
  private trailers: string[] | null = null;
  private wantTrailers = false;
  private done = false;

  constructor(stream: Http2Stream, conn: H2DownstreamConnection) {
    this.stream = stream;
    this.conn = conn;
    stream.sink = this;
  }

  get ctx() {
    return this.conn.ctx;
  }

  get peer(): string {
    return this.conn.peer;
  }

  origin(): ClientOrigin {
    return this.conn.origin();
  }

  /** Validate, route and start forwarding; `fields` null: the header list was over the limit. */
  start(fields: readonly string[] | null, endStream: boolean): void {
    const ctx = this.ctx;
    ctx.stats.requests++;
    if (fields === null) {
      this.reject('header_too_large', false);
      return;
    }
    const synth = h2RequestHead(fields, endStream, this.stream.fieldsClean);
    let head: RequestHead | ErrorCode;
    if (typeof synth === 'string') head = synth;
    else {
      head =
        synth.bytes.length > ctx.limits.maxHeaderBytes
          ? 'header_too_large'
          : parseRequestHead(synth.bytes, 0, synth.bytes.length, ctx.limits);
      this.chunked = synth.chunked;
      this.wantTrailers = synth.teTrailers;
    }
    if (typeof head === 'string') {
      this.reject(head, ERRORS[head].status === 400);
      return;
    }
    const path = pathOf(head.target);
    const route = ctx.router.route(head, path);
    const ex = new Exchange(this, head, route, path, false);
    ex.teTrailers = this.wantTrailers;
    this.ex = ex;
    ex.begin(EMPTY, 0, 0);
    if (endStream && this.chunked) this.feed(LAST_CHUNK, 0, LAST_CHUNK.length);
  }

  // --- StreamSink: the request body ---

  onData(buf: Buffer, start: number, end: number): void {
    this.ctx.stats.bytesIn += end - start;
    if (!this.chunked) {
      this.feed(buf, start, end);
      return;
    }
    const size = Buffer.from(`${(end - start).toString(16)}\r\n`, 'latin1');
    this.feed(size, 0, size.length);
    this.feed(buf, start, end);
    this.feed(CRLF, 0, 2);
  }

  /** Trailers from the client end the body (they are not relayed). */
  onHeaders(_fields: readonly string[], endStream: boolean): void {
    if (endStream) this.onEnd();
  }

  onEnd(): void {
    if (this.chunked) this.feed(LAST_CHUNK, 0, LAST_CHUNK.length);
    const ex = this.ex;
    if (ex !== null && !ex.requestDone) ex.onDownstreamEnd();
  }

  onReset(_code: number, _local: boolean): void {
    const ex = this.ex;
    this.ex = null;
    this.done = true;
    ex?.onDownstreamClose();
  }

  onWritable(): void {
    this.ex?.onDownstreamDrain();
  }

  private feed(buf: Buffer, start: number, end: number): void {
    const ex = this.ex;
    if (ex === null || ex.requestDone || start === end) return;
    ex.onRequestBody(buf, start, end, isLent(buf));
  }

  // --- Downstream ---

  forwardingFields(head: RequestHead): string {
    return this.conn.forwardingFields(head);
  }

  respond(fields: string[], noBody: boolean): void {
    const s = this.stream;
    if (s.closed || s.headersSent) return;
    s.respond(fields, noBody);
    if (noBody) this.finish();
  }

  interim(fields: string[]): void {
    const s = this.stream;
    if (s.closed || s.headersSent) return;
    s.conn.sendInterim(s, fields);
  }

  setTrailers(trailers: string[]): void {
    this.trailers = trailers;
  }

  queue(data: Buffer | string): void {
    const s = this.stream;
    if (s.closed || s.localClosed) return;
    const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    if (!s.write(buf)) this.ex?.onDownstreamBlocked();
  }

  sendError(code: ErrorCode, _close: boolean, headOnly: boolean, extra?: readonly string[]): void {
    const s = this.stream;
    if (s.closed) return;
    if (s.headersSent) {
      s.reset(INTERNAL_ERROR);
      return;
    }
    const info = ERRORS[code];
    const body = Buffer.from(`${info.text} (${code})\n`);
    this.ctx.stats.bytesOut += body.length;
    s.respond(
      [
        ':status',
        String(info.status),
        'content-type',
        'text/plain; charset=utf-8',
        'content-length',
        String(body.length),
        'muxgate-error',
        code,
        ...(extra ?? []),
      ],
      headOnly,
    );
    if (!headOnly) s.write(body);
  }

  pauseForBody(): void {
    this.stream.pause();
  }

  resumeForBody(): void {
    this.stream.resume();
  }

  onExchangeDone(): void {
    this.ex = null;
    this.finish();
  }

  /** A response is half-sent: RST_STREAM, so the client sees the truncation. */
  destroy(): void {
    this.done = true;
    this.ex = null;
    this.stream.reset(INTERNAL_ERROR);
  }

  /** END_STREAM (with trailers when the client asked for them); a request still coming is stopped. */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    const t = this.wantTrailers ? this.trailers : null;
    this.stream.end(t, true);
  }

  /** Refused before any upstream work; `malformed` also resets the stream with PROTOCOL_ERROR (§8.1.1). */
  private reject(code: ErrorCode, malformed: boolean): void {
    const ctx = this.ctx;
    ctx.stats.recordError(code);
    ctx.accessLog?.event({
      listener: ctx.name,
      client: this.conn.peer,
      protocol: 'HTTP/2',
      status: ERRORS[code].status,
      error: code,
    });
    this.sendError(code, false, false);
    this.done = true;
    this.stream.end(null, !malformed);
    // After the answer, so that curl and browsers show the 400 and its code; h2spec and other
    // strict peers see the stream error RFC 9113 asks for.
    if (malformed) this.stream.conn.resetAfterAnswer(this.stream, PROTOCOL_ERROR);
  }
}
