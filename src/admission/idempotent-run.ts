import { Buffer } from 'node:buffer';
import type { Logger } from '../core/log.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import type { StoredResponse } from '../idempotency/idempotency-store.ts';
import type { RouteIdempotency } from './route-idempotency.ts';
import type { ResponseTap } from '../forward/response-tap.ts';

/** Trailer bytes the capture's own chunked decoder accepts (what it keeps is the payload only). */
const MAX_TRAILER_BYTES = 64 * 1024;

/**
 * The first request with an Idempotency-Key, while it runs: the lock it holds (scope and token) and a
 * copy of its response as it is relayed (status, fields, decoded body up to max_body_bytes). When the
 * exchange ends, `finish` either stores the response (a complete upstream answer) or releases the key
 * (a proxy-generated error, a response cut short or too large to keep, the client gone) so that a
 * retry may run. The store is told asynchronously; nothing waits for it.
 */
export class IdempotentRun implements ResponseTap {
  private readonly idem: RouteIdempotency;
  private readonly scope: string;
  private readonly token: string;
  private readonly log: Logger;
  private status = 0;
  private fields: [string, string][] = [];
  private body: Buffer[] = [];
  private bytes = 0;
  private tooLarge = false;
  /** Decodes a chunked HTTP/1.1 response body: what is stored is the payload. */
  private dechunk: ChunkedScanner | null = null;
  private finished = false;

  constructor(idem: RouteIdempotency, scope: string, token: string, log: Logger) {
    this.idem = idem;
    this.scope = scope;
    this.token = token;
    this.log = log;
  }

  /** The final response head: flat [':status', s, name, value, ...] (connection-specific fields already out). */
  head(flat: readonly string[], chunked: boolean, _length: number): void {
    this.status = Number(flat[1]);
    const fields: [string, string][] = [];
    for (let i = 2; i + 1 < flat.length; i += 2) {
      const name = flat[i]!;
      // Framing is the replay's own; Via describes this hop's path, and is added again on replay.
      if (name === 'content-length' || name === 'transfer-encoding' || name === 'via') continue;
      fields.push([name, flat[i + 1]!]);
    }
    this.fields = fields;
    if (chunked) this.dechunk = new ChunkedScanner(MAX_TRAILER_BYTES, true);
  }

  /** Response body bytes as relayed (chunked framing included when `head` said chunked). */
  data(buf: Buffer, start = 0, end = buf.length): void {
    if (this.tooLarge) return;
    const d = this.dechunk;
    if (d === null) {
      this.keep(buf, start, end);
      return;
    }
    if (d.feed(buf, start, end) < 0) {
      this.tooLarge = true; // malformed: the exchange aborts; nothing is kept
      return;
    }
    const r = d.ranges!;
    for (let i = 0; i < r.length; i += 2) this.keep(buf, r[i]!, r[i + 1]!);
  }

  private keep(buf: Buffer, start: number, end: number): void {
    this.bytes += end - start;
    if (this.bytes > this.idem.maxBodyBytes) {
      this.tooLarge = true;
      this.body = [];
      return;
    }
    // A copy: `buf` may be the shared read buffer.
    if (end > start) this.body.push(Buffer.from(buf.subarray(start, end)));
  }

  /** The exchange ended: `answered` when the upstream's response was relayed whole. */
  finish(answered: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const { store } = this.idem;
    if (!answered || this.status === 0) {
      store.release(this.scope, this.token).catch(() => {});
      return;
    }
    if (this.tooLarge) {
      this.log.warn(
        { route: this.idem.route, status: this.status, max_body_bytes: this.idem.maxBodyBytes },
        'idempotency: response too large to store; key released (a retry will run again)',
      );
      store.release(this.scope, this.token).catch(() => {});
      return;
    }
    const response: StoredResponse = { status: this.status, headers: this.fields, body: Buffer.concat(this.body) };
    store.complete(this.scope, this.token, response).catch(() => {
      // Not stored (the store went away): let a retry run rather than hold the key until lock_ttl.
      store.release(this.scope, this.token).catch(() => {});
    });
  }
}
