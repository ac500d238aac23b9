import { Buffer } from 'node:buffer';
import http2, { type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import { Exchange } from '../forward/exchange.ts';
import { forwardedHeaders } from '../forward/forwarded-headers.ts';
import { h2RequestHead } from '../forward/h2-translate.ts';
import { parseRequestHead, type RequestHead } from '../http1/request-head.ts';
import { hostWithoutPort } from '../router/router.ts';
import type { H2Responder } from './downstream.ts';
import type { H2Connection } from './h2-connection.ts';

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const EMPTY = Buffer.alloc(0);

/**
 * One HTTP/2 request stream from a client, as the downstream of an Exchange. The request is turned
 * into an HTTP/1.1 head and parsed by the strict HTTP/1.1 parser (see h2-translate.ts), so routing,
 * forwarding headers and framing rules are the same for both protocols. A body without
 * Content-Length is fed to the exchange chunk-framed, which keeps one body model for the exchange;
 * the upstream side removes the framing again for HTTP/2 upstreams.
 */
export class H2Stream implements H2Responder {
  readonly h2 = true;
  readonly stream: ServerHttp2Stream;
  readonly conn: H2Connection;
  private ex: Exchange | null = null;
  private chunked = false;
  private trailers: OutgoingHttpHeaders | null = null;
  private wantTrailers = false;
  private done = false;

  constructor(stream: ServerHttp2Stream, conn: H2Connection) {
    this.stream = stream;
    this.conn = conn;
  }

  get ctx() {
    return this.conn.ctx;
  }

  get peer(): string {
    return this.conn.peer;
  }

  /** Validate, route and start forwarding. */
  start(raw: readonly string[], endStream: boolean): void {
    const stream = this.stream;
    const ctx = this.ctx;
    ctx.stats.requests++;
    (stream as H2ServerStream)[kStream] = this;
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('drain', onDrain);
    stream.on('error', ignore);
    stream.on('close', onClose);
    const synth = h2RequestHead(raw, endStream);
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
      this.reject(head);
      return;
    }
    const path = pathOf(head.target);
    const route = ctx.router.match(head.method, hostWithoutPort(head.host), path, head);
    const ex = new Exchange(this, head, route, path, false);
    ex.teTrailers = this.wantTrailers;
    this.ex = ex;
    ex.begin(EMPTY, 0, 0);
    if (endStream && this.chunked) this.feed(LAST_CHUNK);
  }

  // --- request body ---

  onData(chunk: Buffer): void {
    this.ctx.stats.bytesIn += chunk.length;
    if (!this.chunked) {
      this.feed(chunk);
      return;
    }
    this.feed(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'));
    this.feed(chunk);
    this.feed(CRLF);
  }

  onEnd(): void {
    if (this.chunked) this.feed(LAST_CHUNK);
    const ex = this.ex;
    // A Content-Length body that ended short: nghttp2 resets such streams, this is the backstop.
    if (ex !== null && !ex.requestDone) ex.onDownstreamEnd();
  }

  private feed(buf: Buffer): void {
    const ex = this.ex;
    if (ex === null || ex.requestDone || buf.length === 0) return;
    ex.onRequestBody(buf, 0, buf.length);
  }

  // --- Downstream ---

  forwardingFields(head: RequestHead): string {
    const via = this.ctx.via;
    return forwardedHeaders(head, {
      peer: this.conn.peer,
      proto: this.ctx.proto,
      host: head.host,
      trusted: this.conn.trusted,
      via: via === null ? null : `2 ${via}`,
    });
  }

  respond(headers: OutgoingHttpHeaders, noBody: boolean): void {
    const stream = this.stream;
    if (stream.closed || stream.headersSent) return;
    const waitForTrailers = this.wantTrailers && !noBody;
    try {
      stream.respond(headers, { endStream: noBody, waitForTrailers });
    } catch (err) {
      // node:http2 refused a field the translation let through: never crash, never send half a head.
      this.ctx.log.error({ err: (err as Error).message }, 'cannot send the HTTP/2 response head');
      this.destroy();
      return;
    }
    if (waitForTrailers) stream.once('wantTrailers', onWantTrailers);
  }

  interim(headers: OutgoingHttpHeaders): void {
    const stream = this.stream;
    if (stream.closed || stream.headersSent) return;
    try {
      stream.additionalHeaders(headers);
    } catch {
      // An interim response is advisory: drop one node:http2 will not send.
    }
  }

  setTrailers(trailers: OutgoingHttpHeaders): void {
    this.trailers = trailers;
  }

  sendTrailers(): void {
    if (this.stream.closed) return;
    try {
      this.stream.sendTrailers(this.trailers ?? {});
    } catch {
      this.stream.close(NGHTTP2_INTERNAL_ERROR);
    }
  }

  queue(data: Buffer | string): void {
    const stream = this.stream;
    if (stream.closed || stream.writableEnded) return;
    // A copy: HTTP/1.1 upstream bytes are views of the shared read buffer, and the stream keeps
    // what it is given until the frames are sent.
    const ok = stream.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data));
    if (!ok) this.ex?.onDownstreamBlocked();
  }

  sendError(code: ErrorCode, _close: boolean, headOnly: boolean): void {
    const stream = this.stream;
    if (stream.closed) return;
    if (stream.headersSent) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const info = ERRORS[code];
    const body = Buffer.from(`${info.text} (${code})\n`);
    this.ctx.stats.bytesOut += body.length;
    stream.respond(
      {
        ':status': info.status,
        'content-type': 'text/plain; charset=utf-8',
        'content-length': body.length,
        'muxgate-error': code,
      },
      { endStream: headOnly },
    );
    if (!headOnly) stream.end(body);
  }

  pauseForBody(): void {
    this.stream.pause();
  }

  resumeForBody(): void {
    if (!this.stream.closed) this.stream.resume();
  }

  onExchangeDone(): void {
    this.done = true;
    this.ex = null;
    const stream = this.stream;
    if (!stream.closed && !stream.writableEnded) stream.end();
  }

  /** A response is half-sent: RST_STREAM, so the client sees the truncation. */
  destroy(): void {
    this.done = true;
    this.ex = null;
    if (!this.stream.closed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }

  onDrain(): void {
    this.ex?.onDownstreamDrain();
  }

  onClose(): void {
    this.conn.openStreams--;
    const ex = this.ex;
    this.ex = null;
    // The client reset the stream before its response was complete: a rapid-reset flood looks like this.
    if (!this.done) this.conn.onClientReset();
    ex?.onDownstreamClose();
  }

  private reject(code: ErrorCode): void {
    this.done = true;
    const ctx = this.ctx;
    ctx.stats.recordError(code);
    ctx.accessLog?.info({
      listener: ctx.name,
      client: this.conn.peer,
      protocol: 'HTTP/2',
      status: ERRORS[code].status,
      error: code,
    });
    this.sendError(code, false, false);
  }
}

const kStream = Symbol('muxgate.h2stream');
type H2ServerStream = ServerHttp2Stream & { [kStream]: H2Stream };

function onData(this: H2ServerStream, chunk: Buffer): void {
  this[kStream].onData(chunk);
}
function onEnd(this: H2ServerStream): void {
  this[kStream].onEnd();
}
function onDrain(this: H2ServerStream): void {
  this[kStream].onDrain();
}
function onClose(this: H2ServerStream): void {
  this[kStream].onClose();
}
function onWantTrailers(this: H2ServerStream): void {
  this[kStream].sendTrailers();
}
function ignore(): void {}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}
