import { Buffer } from 'node:buffer';
import { ChunkedScanner } from '../http1/chunked.ts';
import { BARE_LF, findHeadEnd, NEED_MORE, resumeFrom } from '../http1/head-end.ts';
import { copyKeptFields, keptFieldBytes } from '../http1/field-scan.ts';
import { LineMemo, putLatin1, sequential } from '../http1/latin1.ts';
import { parseResponseHead, type ResponseHead } from '../http1/response-head.ts';
import type { H2Responder } from './downstream.ts';
import type { Exchange } from './exchange.ts';
import { h2FieldsFromH1 } from './h2-translate.ts';

const NONE = 0; // no body (HEAD, 1xx, 204, 304)
const LENGTH = 1; // Content-Length
const CHUNKED = 2; // chunked, relayed as is (or decoded for HTTP/1.0 clients)
const CLOSE = 3; // delimited by the upstream closing; re-chunked for HTTP/1.1 clients

/** Field offsets of the response head being relayed (see parseResponseHead's `reuse`). */
const FIELD_OFFSETS: number[] = [];

/** A Content-Length body up to this size that arrived with its head is written with it, in one buffer. */
const INLINE_BODY = 8 * 1024;

/** Upstream response heads larger than this are a protocol error (a sane upstream never comes close). */
const MAX_RESPONSE_HEAD = 64 * 1024;

/**
 * Streams one upstream response to the downstream socket: parses heads (relaying 1xx), rewrites the
 * final head, then relays the body by its framing without buffering it. Decides whether the upstream
 * connection can be reused: only when the body ended exactly where its framing said.
 */
export class ResponseRelay {
  private readonly ex: Exchange;
  private buf: Buffer | null = null;
  private scanned = 0;
  private mode = NONE;
  private remaining = 0;
  private scanner: ChunkedScanner | null = null;
  private rechunk = false;
  headSent = false;
  gotBytes = false;
  private res: ResponseHead | null = null;

  constructor(ex: Exchange) {
    this.ex = ex;
  }

  /** Response bytes `chunk[0, len)` (`chunk` may be the shared read buffer: see ReadSink). */
  onData(chunk: Buffer, len: number): void {
    this.gotBytes = true;
    if (this.headSent) {
      this.relayBody(chunk, 0, len);
      return;
    }
    let buf = chunk;
    if (this.buf !== null) {
      buf = Buffer.concat([this.buf, chunk.subarray(0, len)]);
      len = buf.length;
      this.buf = null;
    }
    let pos = 0;
    for (;;) {
      const end = findHeadEnd(buf, pos, resumeFrom(pos, this.scanned), len);
      if (end === NEED_MORE) {
        if (len - pos > MAX_RESPONSE_HEAD) {
          this.ex.fail('upstream_protocol_error');
          return;
        }
        // A copy: `buf` may be the shared upstream read buffer, reused by the next read.
        this.buf = Buffer.from(buf.subarray(pos, len));
        this.scanned = this.buf.length;
        return;
      }
      // The head's field offsets are used before the next head is parsed: one array serves every relay.
      const res = end === BARE_LF ? null : parseResponseHead(buf, pos, end, FIELD_OFFSETS);
      if (res === null || res.status === 101) {
        this.ex.fail('upstream_protocol_error');
        return;
      }
      this.scanned = 0;
      pos = end;
      if (res.status >= 200) {
        // A status the route retries: the exchange drops this connection and tries elsewhere.
        if (this.ex.retriesStatus(res.status)) return;
        // A 304 to the cache's revalidation, a 5xx the cache answers with a stale object instead.
        // A 304 with nothing after its head in this read leaves the connection reusable.
        const reusable = res.status === 304 && pos === len && res.reusable;
        if (this.ex.cacheTakesOver(res.status, () => h2FieldsFromH1(res, null, false), reusable)) return;
        // A small body that is all here leaves in the head's buffer: one allocation, one copy.
        pos += this.writeHead(res, buf, pos, len);
        break;
      }
      // Interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 and HTTP/2 clients as they come.
      const down = this.ex.session;
      if (down.h2) (down as H2Responder).interim(h2FieldsFromH1(res, down.ctx.via, false));
      else if (this.ex.head.minor === 1) this.write(headBytes(res, viaField(res, down.ctx.via)));
    }
    if (this.mode === NONE || (this.mode === LENGTH && this.remaining === 0)) {
      this.ex.complete(pos === len && this.res!.reusable);
      return;
    }
    if (pos < len) this.relayBody(buf, pos, len);
  }

  /** The upstream closed. Returns true when that was the end of a close-delimited body. */
  onUpstreamEnd(): boolean {
    if (!this.headSent || this.mode !== CLOSE) return false;
    if (this.rechunk) this.write('0\r\n\r\n');
    this.ex.complete(false);
    return true;
  }

  /**
   * Writes the final head. When the body is framed by Content-Length, is at most INLINE_BODY bytes and
   * is all in `buf[pos, len)`, it is written in the same buffer; returns how many body bytes that took.
   */
  private writeHead(res: ResponseHead, buf: Buffer, pos: number, len: number): number {
    const ex = this.ex;
    const head = ex.head;
    this.res = res;
    const s = res.status;
    const http10 = head.minor === 0;
    // An HTTP/2 client gets the body unframed: chunked is decoded, a close-delimited body just ends.
    const h2 = ex.session.h2;
    if (head.method === 'HEAD' || s === 204 || s === 304) {
      this.mode = NONE;
    } else if (res.chunked) {
      this.mode = CHUNKED;
      this.scanner = new ChunkedScanner(64 * 1024, http10 || h2);
      if (http10) ex.closeDownstream = true; // decoded, so the end of the body is the end of the connection
    } else if (res.contentLength >= 0) {
      this.mode = LENGTH;
      this.remaining = res.contentLength;
    } else {
      this.mode = CLOSE;
      if (http10) ex.closeDownstream = true;
      else if (!h2) this.rechunk = true;
    }
    // The first request with an Idempotency-Key: its response is kept for the repeats.
    const run = ex.tap;
    if (run !== null)
      run.head(h2FieldsFromH1(res, null, false), this.mode === CHUNKED, this.mode === NONE ? 0 : res.contentLength);
    if (h2) {
      const fields = h2FieldsFromH1(res, ex.session.ctx.via, true);
      if (ex.cache !== null) fields.push('cache-status', ex.cache.relayedStatus());
      (ex.session as H2Responder).respond(fields, this.mode === NONE);
      ex.status = s;
      this.headSent = true;
      return 0;
    }
    if (ex.session.ctx.draining) ex.closeDownstream = true;
    // An answer that comes before the request body is all in (an early 413, 401, or a 100-continue
    // that was never sent): the rest of the body will not be read, so the connection cannot carry
    // another request; say so rather than close without a word (RFC 9110 §10.1.1, RFC 9112 §9.6).
    if (!ex.requestDone) ex.closeDownstream = true;
    const via =
      ex.cache === null ? viaField(res, ex.session.ctx.via) : viaField(res, ex.session.ctx.via) + ex.cacheStatusLine();
    const length = res.contentLength >= 0 ? lengthLines.get(res.contentLength) : '';
    // RFC 9112 §6.1: never Transfer-Encoding on a 204; on HEAD and 304 it describes the resource's framing.
    const chunked = ((res.chunked && !http10) || this.rechunk) && s !== 204 ? 'transfer-encoding: chunked\r\n' : '';
    const conn = ex.closeDownstream ? 'connection: close\r\n' : http10 ? 'connection: keep-alive\r\n' : '';
    const inline = this.mode === LENGTH && this.remaining <= INLINE_BODY && this.remaining <= len - pos;
    const body = inline ? this.remaining : 0;
    const out = headBytes(res, via, length, chunked, conn, body);
    if (inline) {
      buf.copy(out, out.length - body, pos, pos + body);
      this.remaining = 0;
      if (run !== null) run.data(buf, pos, pos + body);
    }
    this.write(out);
    ex.status = s;
    this.headSent = true;
    return body;
  }

  /** Body bytes `buf[pos, len)`. */
  private relayBody(buf: Buffer, pos: number, len: number): void {
    const ex = this.ex;
    switch (this.mode) {
      case LENGTH: {
        const avail = len - pos;
        const take = Math.min(avail, this.remaining);
        if (ex.tap !== null) ex.tap.data(buf, pos, pos + take);
        this.write(take === buf.length ? buf : buf.subarray(pos, pos + take));
        this.remaining -= take;
        if (this.remaining === 0) ex.complete(pos + take === len && this.res!.reusable);
        return;
      }
      case CHUNKED: {
        const scanner = this.scanner!;
        const n = scanner.feed(buf, pos, len);
        if (n < 0) {
          ex.abort('upstream_protocol_error');
          return;
        }
        if (ex.tap !== null) ex.tap.data(buf, pos, pos + n);
        const ranges = scanner.ranges;
        if (ranges === null) this.write(n === buf.length ? buf : buf.subarray(pos, pos + n));
        else for (let i = 0; i < ranges.length; i += 2) this.write(buf.subarray(ranges[i], ranges[i + 1]));
        if (scanner.done) ex.complete(pos + n === len && this.res!.reusable);
        return;
      }
      case CLOSE: {
        const data = pos === 0 && len === buf.length ? buf : buf.subarray(pos, len);
        if (data.length === 0) return;
        if (ex.tap !== null) ex.tap.data(data);
        if (this.rechunk) this.write(`${data.length.toString(16)}\r\n`);
        this.write(data);
        if (this.rechunk) this.write('\r\n');
        return;
      }
      default:
        // Bytes after a body-less response: the upstream is out of sync; the connection is not reused.
        ex.complete(false);
    }
  }

  private write(data: Buffer | string): void {
    const ex = this.ex;
    ex.bytesOut += data.length;
    ex.session.ctx.stats.bytesOut += data.length;
    ex.session.queue(data);
  }
}

/**
 * The head sent downstream, written straight into one buffer: our status line, the upstream's relayed
 * field lines as they came, then the fields the proxy states itself and the empty line. `room` bytes
 * are left free at the end (for a body the caller copies in).
 */
function headBytes(res: ResponseHead, a: string, b = '', c = '', d = '', room = 0): Buffer {
  const status = statusLine(res.status, res.reason);
  const out = Buffer.allocUnsafe(
    status.length + keptFieldBytes(res.fields) + a.length + b.length + c.length + d.length + 2 + room,
  );
  let off = putLatin1(out, 0, status);
  off = copyKeptFields(res.buf, res.fields, out, off);
  if (a.length > 0) off = putLatin1(out, off, a);
  if (b.length > 0) off = putLatin1(out, off, b);
  if (c.length > 0) off = putLatin1(out, off, c);
  if (d.length > 0) off = putLatin1(out, off, d);
  out[off] = 0x0d;
  out[off + 1] = 0x0a;
  return out;
}

const lengthLines = new LineMemo((n: number) => `content-length: ${n}\r\n`);

// The last status line built: nearly every response is "200 OK", so this saves a string per response.
let lastStatus = 0;
let lastReason = '';
let lastStatusLine = '';

function statusLine(status: number, reason: string): string {
  if (status !== lastStatus || reason !== lastReason) {
    lastStatus = status;
    lastReason = reason;
    lastStatusLine = sequential(`HTTP/1.1 ${status} ${reason}\r\n`);
  }
  return lastStatusLine;
}

// The last Via line built: without an upstream Via it depends only on our pseudonym and the version.
let lastVia: string | null = null;
let lastViaMinor = -1;
let lastViaLine = '';

function viaField(res: ResponseHead, via: string | null): string {
  const prev = res.via;
  if (via === null) return prev === null ? '' : `via: ${prev}\r\n`;
  if (prev === null) {
    if (via !== lastVia || res.minor !== lastViaMinor) {
      lastVia = via;
      lastViaMinor = res.minor;
      lastViaLine = sequential(`via: 1.${res.minor} ${via}\r\n`);
    }
    return lastViaLine;
  }
  return `via: ${prev}, 1.${res.minor} ${via}\r\n`;
}
