import { Buffer } from 'node:buffer';
import { reasonPhrase } from '../core/errors.ts';
import type { Downstream, H2Responder } from './downstream.ts';
import type { RequestHead } from '../http1/request-head.ts';

/** What an answer muxgate writes itself needs of the exchange it answers (forward/exchange.ts). */
export interface LocalAnswerTarget {
  readonly session: Downstream;
  readonly head: RequestHead;
  closeDownstream: boolean;
  readonly requestDone: boolean;
  bytesOut: number;
  /** The answer is complete: the exchange's bookkeeping (stats, access log) and the session's turn. */
  answeredLocally(status: number): void;
  /** The answer cannot be completed (the object being received was cut short): the client sees it truncated. */
  abort(code: 'upstream_reset'): void;
}

/**
 * One response muxgate writes itself to one client, as it comes: a stored object at once (a cache
 * hit, an Idempotency-Key replay), or a coalesced cache miss while the one upstream answer streams
 * in. HTTP/1.1 gets a Content-Length when the length is known, else chunked (HTTP/1.0: the end of
 * the connection); HTTP/2 gets the body unframed.
 */
export class LocalAnswer {
  private readonly ex: LocalAnswerTarget;
  private readonly noBody: boolean;
  private readonly chunked: boolean;
  readonly status: number;
  private ended = false;

  /** `length`: body bytes to come (-1: unknown until the end); `fields`: lower-case, no framing. */
  constructor(ex: LocalAnswerTarget, status: number, fields: readonly (readonly [string, string])[], length: number) {
    this.ex = ex;
    this.status = status;
    const down = ex.session;
    this.noBody = ex.head.method === 'HEAD' || status === 204 || status === 304;
    const sendsLength = length >= 0 && status !== 204 && status !== 304;
    // A request body still coming will not be read: the connection cannot carry another request.
    if (!ex.requestDone) ex.closeDownstream = true;
    if (down.h2) {
      this.chunked = false;
      const flat = [':status', String(status)];
      for (const [n, v] of fields) flat.push(n, v);
      if (sendsLength) flat.push('content-length', String(length));
      (down as H2Responder).respond(flat, this.noBody || length === 0);
      return;
    }
    const http10 = ex.head.minor === 0;
    this.chunked = !this.noBody && !sendsLength && !http10;
    if (!this.noBody && !sendsLength && http10) ex.closeDownstream = true;
    if (down.ctx.draining) ex.closeDownstream = true;
    let h = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
    for (const [n, v] of fields) h += `${n}: ${v}\r\n`;
    if (sendsLength) h += `content-length: ${length}\r\n`;
    if (this.chunked) h += 'transfer-encoding: chunked\r\n';
    if (ex.closeDownstream) h += 'connection: close\r\n';
    else if (http10) h += 'connection: keep-alive\r\n';
    this.write(Buffer.from(`${h}\r\n`, 'latin1'));
  }

  /** Body bytes (owned: kept by the cache or a store, never a view of a shared read buffer). */
  chunk(buf: Buffer): void {
    if (this.noBody || this.ended || buf.length === 0) return;
    if (this.chunked) this.write(`${buf.length.toString(16)}\r\n`);
    this.write(buf);
    if (this.chunked) this.write('\r\n');
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.chunked) this.write('0\r\n\r\n');
    this.ex.answeredLocally(this.status);
  }

  /** The body will not be complete. */
  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.ex.abort('upstream_reset');
  }

  private write(data: Buffer | string): void {
    const ex = this.ex;
    ex.bytesOut += data.length;
    ex.session.ctx.stats.bytesOut += data.length;
    ex.session.queue(data);
  }
}
