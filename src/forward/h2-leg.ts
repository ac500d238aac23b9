import { Buffer } from 'node:buffer';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import { CANCEL } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import type { H2Responder } from './downstream.ts';
import type { H2UpstreamConnection } from '../pool/h2-upstream-connection.ts';
import type { Exchange } from './exchange.ts';
import {
  BODY_CHUNKED,
  BODY_NONE,
  chunkedTrailers,
  h1ResponseHead,
  h2FieldsFromH2,
  h2RequestFields,
  h2TrailersValid,
  h2TrailerFields,
} from './h2-translate.ts';
import { ResponseTranslation } from './response-translation.ts';
import { upstreamTarget } from './upstream-head.ts';

/** Request body bytes kept so a refused stream can be sent again; beyond this a refusal is final. */
const REPLAY_LIMIT = 64 * 1024;
/** Times a request is re-sent after the upstream refused its stream (REFUSED_STREAM or GOAWAY). */
const MAX_REFUSALS = 3;

/**
 * The upstream side of an exchange when the endpoint speaks HTTP/2: one stream on a pooled session.
 * The exchange keeps owning the request (routing, body counting, endings); this turns it into
 * HEADERS/DATA (a chunked request body is decoded, a Content-Length one passed through) and turns the
 * response back into whatever the client speaks: HTTP/1.1 bytes (chunked when the upstream gave no
 * length, trailers included) or, for an HTTP/2 client, a header map and unframed DATA.
 */
export class H2Leg implements Expirable, StreamSink {
  deadline = 0;
  sweepSlot = -1;
  private readonly ex: Exchange;
  session: H2UpstreamConnection | null = null;
  stream: Http2Stream | null = null;
  /** Decodes a chunked request body into DATA; null for Content-Length bodies. */
  private decoder: ChunkedScanner | null;
  /** Body bytes sent on the current stream, kept for a replay; null once past REPLAY_LIMIT. */
  private sent: Buffer[] | null = [];
  private sentBytes = 0;
  private refusals = 0;
  headSent = false;
  private framing = BODY_NONE;
  private trailers: readonly string[] | null = null;
  /**
   * The request as HTTP/2 fields, built once: a replay after a refusal sends them again. The head's
   * bytes may be gone by then (Exchange.begin keeps no copy of a lent read when only this leg needs it).
   */
  private fields: string[] | null = null;
  private ended = false;
  private paused = false;

  constructor(ex: Exchange) {
    this.ex = ex;
    const head = ex.head;
    this.decoder = head.chunked ? new ChunkedScanner(ex.session.ctx.limits.maxHeaderBytes, true) : null;
  }

  /** A stream slot is reserved on `session`: open the stream and send what is held. */
  start(session: H2UpstreamConnection, held: Buffer[] | null): void {
    const ex = this.ex;
    const head = ex.head;
    const route = ex.route!;
    this.session = session;
    // A replay after a refusal sends everything from the first byte: what the refused stream took,
    // then what arrived since; the chunked decoder starts over with it.
    const replay = this.sent;
    this.sent = [];
    this.sentBytes = 0;
    let body = held;
    if (replay !== null && replay.length > 0) {
      body = held === null ? replay : replay.concat(held);
      if (head.chunked) this.decoder = new ChunkedScanner(ex.session.ctx.limits.maxHeaderBytes, true);
    }
    const noBody = ex.requestDone && (body === null || body.length === 0);
    // A replay goes to the same endpoint (Exchange.retryH2), so to the same scheme: the fields serve again.
    const fields = (this.fields ??= h2RequestFields(
      head,
      upstreamTarget(head, route),
      route.hostRewrite ?? head.host,
      session.pool.scheme,
      ex.session.forwardingFields(head),
      ex.teTrailers,
    ));
    const stream = session.request(fields, noBody, this, head.method === 'HEAD');
    if (stream === null) {
      // The connection went away between the slot and the stream: like a refusal, nothing was sent.
      if (++this.refusals <= MAX_REFUSALS) ex.retryH2(session);
      else ex.fail('upstream_reset');
      return;
    }
    this.stream = stream;
    this.arm();
    if (body !== null) for (const b of body) this.writeRaw(b);
    if (ex.requestDone && !noBody) stream.end();
  }

  /** Raw request body bytes (as the client framed them); returns false when the stream is full. */
  write(buf: Buffer): boolean {
    return this.writeRaw(buf);
  }

  /** The request body is complete. */
  endBody(): void {
    this.stream?.end();
  }

  private writeRaw(buf: Buffer): boolean {
    const stream = this.stream!;
    if (this.sent !== null) {
      this.sentBytes += buf.length;
      // A copy: the bytes may be a view of a buffer the caller reuses.
      if (this.sentBytes <= REPLAY_LIMIT) this.sent.push(Buffer.from(buf));
      else this.sent = null;
    }
    const d = this.decoder;
    if (d === null) return stream.write(buf);
    const n = d.feed(buf, 0, buf.length);
    if (n < 0) return true; // the exchange's own scanner refuses the body and ends the exchange
    const ranges = d.ranges!;
    let ok = true;
    for (let i = 0; i < ranges.length; i += 2) {
      // The engine copies what it cannot send in this turn.
      ok = stream.write(buf, ranges[i], ranges[i + 1]) && ok;
    }
    return ok;
  }

  /** The client reads slower than the upstream sends. */
  pause(): void {
    if (!this.paused && this.stream !== null) {
      this.paused = true;
      this.stream.pause();
    }
  }

  resume(): void {
    if (this.paused && this.stream !== null) {
      this.paused = false;
      this.stream.resume();
    }
  }

  /** The exchange ended (any way): stop the stream if it is still open, give back an unused slot. */
  release(): void {
    sweeper.delete(this);
    this.deadline = 0;
    const stream = this.stream;
    if (stream !== null) {
      this.stream = null;
      stream.sink = null;
      // A stream that ended both ways is done; anything else is cut with RST_STREAM CANCEL.
      if (!stream.closed) stream.reset(CANCEL);
    }
  }

  expire(): void {
    this.ex.onUpstreamTimeout();
  }

  // --- StreamSink ---

  onHeaders(fields: readonly string[], endStream: boolean): void {
    if (this.headSent) {
      // Trailers (the engine already checked they end the stream and carry no pseudo-fields);
      // malformed ones are dropped, the body they end is complete.
      if (h2TrailersValid(fields, this.stream?.fieldsClean)) this.trailers = fields;
      if (endStream) this.onEnd();
      return;
    }
    const status = translationOf(this.session!).status(fields, this.stream?.fieldsClean === true);
    if (status === -1) {
      this.ex.fail('upstream_protocol_error');
      return;
    }
    if (status < 200) {
      this.onInterim(fields, status);
      return;
    }
    this.onResponse(fields, status);
    if (endStream && this.stream !== null) this.onEnd();
  }

  onData(buf: Buffer, start: number, end: number): void {
    this.onBody(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  onReset(code: number, local: boolean): void {
    if (local) return;
    this.onClose(code);
  }

  onWritable(): void {
    this.ex.onUpstreamDrain();
  }

  private onResponse(fields: readonly string[], status: number): void {
    const ex = this.ex;
    // A status the route retries: the exchange drops this stream and tries elsewhere.
    if (ex.retriesStatus(status)) return;
    if (ex.cacheTakesOver(status, () => h2FieldsFromH2(fields, status, null))) return;
    this.arm();
    // The first request with an Idempotency-Key: its response is kept for the repeats.
    if (ex.tap !== null) ex.tap.head(h2FieldsFromH2(fields, status, null), false, contentLengthOf(fields));
    const head = ex.head;
    const noBody = head.method === 'HEAD' || status === 204 || status === 304;
    const down = ex.session;
    const via = down.ctx.via;
    if (ex.cache !== null) fields = [...fields, 'cache-status', ex.cache.relayedStatus()];
    if (down.h2) {
      (down as H2Responder).respond(h2FieldsFromH2(fields, status, via), noBody);
      this.framing = noBody ? BODY_NONE : 1;
    } else {
      // An early answer (request body not all in): the connection closes after it; say so.
      if (!ex.requestDone) ex.closeDownstream = true;
      const res = translationOf(this.session!).h1Head(
        fields,
        status,
        via,
        head.minor === 0,
        noBody,
        ex.closeDownstream,
      );
      if (res === null) {
        ex.fail('upstream_protocol_error');
        return;
      }
      if (head.minor === 0 && res.framing !== BODY_NONE && res.contentLength < 0) ex.closeDownstream = true;
      this.framing = res.framing;
      this.out(res.text);
    }
    ex.status = status;
    this.headSent = true;
  }

  private onInterim(fields: readonly string[], status: number): void {
    if (this.headSent) return;
    const ex = this.ex;
    const down = ex.session;
    if (down.h2) {
      (down as H2Responder).interim(h2FieldsFromH2(fields, status, null));
    } else if (ex.head.minor === 1) {
      const res = h1ResponseHead(fields, status, null, false, true, false);
      if (res !== null) this.out(res.text);
    }
  }

  private onBody(chunk: Buffer): void {
    if (!this.headSent || this.framing === BODY_NONE) return;
    this.arm();
    if (this.ex.tap !== null) this.ex.tap.data(chunk);
    if (this.framing === BODY_CHUNKED) {
      this.out(`${chunk.length.toString(16)}\r\n`);
      this.out(chunk);
      this.out('\r\n');
    } else {
      this.out(chunk);
    }
  }

  onEnd(): void {
    if (this.ended || this.stream === null) return;
    this.ended = true;
    const ex = this.ex;
    if (!this.headSent) {
      ex.fail('upstream_protocol_error');
      return;
    }
    if (ex.session.h2) {
      if (this.trailers !== null) (ex.session as H2Responder).setTrailers(h2TrailerFields(this.trailers));
    } else if (this.framing === BODY_CHUNKED) {
      this.out(chunkedTrailers(this.trailers));
    }
    ex.complete(true);
  }

  /** The stream was reset by the upstream, or the connection went, before the response was complete. */
  private onClose(code: number): void {
    const stream = this.stream;
    if (stream === null || this.ended) return;
    const ex = this.ex;
    const session = this.session!;
    stream.resetCode = code;
    // Never processed by the upstream (REFUSED_STREAM, or above a GOAWAY's last stream): any method
    // may go again, on another session, as long as the body it sent is still here to replay.
    if (
      !this.headSent &&
      session.wasRefused(stream) &&
      this.sent !== null &&
      ++this.refusals <= MAX_REFUSALS &&
      ex.retriesRefused()
    ) {
      this.stream = null;
      stream.sink = null;
      sweeper.delete(this);
      ex.retryH2(session);
      return;
    }
    if (this.headSent) ex.abort('upstream_reset');
    else ex.onUpstreamReset();
  }

  private out(data: Buffer | string): void {
    const ex = this.ex;
    ex.bytesOut += data.length;
    ex.session.ctx.stats.bytesOut += data.length;
    ex.session.queue(data);
  }

  private arm(): void {
    this.deadline = deadlineIn(this.ex.responseTimeoutMs());
    sweeper.add(this);
  }
}

function translationOf(session: H2UpstreamConnection): ResponseTranslation {
  return (session.translation ??= new ResponseTranslation());
}

/** An HTTP/2 response's content-length (flat fields), or -1. */
function contentLengthOf(fields: readonly string[]): number {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'content-length') {
      const n = Number(fields[i + 1]);
      return Number.isSafeInteger(n) && n >= 0 ? n : -1;
    }
  }
  return -1;
}
