import { Buffer } from 'node:buffer';
import type { ErrorCode } from '../core/errors.ts';
import { h2ResponseStatus } from '../forward/h2-translate.ts';
import { NO_ERROR } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import type { H2Pool } from '../pool/h2-pool.ts';
import type { H2UpstreamConnection } from '../pool/h2-upstream-connection.ts';
import type { PoolWaiter } from '../pool/pool-waiter.ts';
import type { H1UpstreamConnection } from '../pool/h1-upstream-connection.ts';
import type { Fields } from './tunnel-downstream.ts';

const MAX_DECLINED_BODY = 64 * 1024;

export interface H2ConnectOwner {
  /** 2xx: the stream is the tunnel now (paused until spliced; the owner becomes its sink). */
  onStreamUp(stream: Http2Stream, fields: Fields): void;
  /** Any other final status, with its body. */
  onDeclined(status: number, fields: Fields, body: Buffer): void;
  onLegFailed(code: ErrorCode, detail: string): void;
  /**
   * The endpoint cannot take this as an HTTP/2 stream: no SETTINGS_ENABLE_CONNECT_PROTOCOL for an
   * extended CONNECT, or ALPN settled on HTTP/1.1. The owner falls back to an HTTP/1.1 Upgrade.
   */
  onNoH2(): void;
}

/**
 * A tunnel as one stream of a pooled upstream HTTP/2 session: CONNECT (RFC 9113 §8.5) or extended
 * CONNECT (RFC 8441 `:protocol`). It waits for a stream slot like any request, so thousands of
 * tunnels share the endpoint's few sessions, `max_concurrent_streams` each.
 */
export class H2ConnectLeg implements PoolWaiter, StreamSink {
  queuedAt = 0;
  queuePrev: PoolWaiter | null = null;
  queueNext: PoolWaiter | null = null;
  queued = false;
  queueOwner: object | null = null;

  private readonly pool: H2Pool;
  /** The request head, flat [name, value, ...], pseudo-fields first. */
  private readonly headers: string[];
  private readonly extended: boolean;
  private readonly owner: H2ConnectOwner;
  private stream: Http2Stream | null = null;
  private done = false;
  /** The status of a refusal whose body is being read; 0 before the answer. */
  private declinedStatus = 0;
  private declinedFields: Fields = [];
  private body: Buffer[] = [];
  private bodyBytes = 0;

  constructor(pool: H2Pool, headers: string[], owner: H2ConnectOwner) {
    this.pool = pool;
    this.headers = headers;
    this.extended = headers.some((v, i) => i % 2 === 0 && v === ':protocol');
    this.owner = owner;
    pool.acquire(this);
  }

  cancel(): void {
    if (this.done) return;
    this.done = true;
    if (this.queued) this.pool.cancel(this);
    this.stream?.reset(NO_ERROR);
  }

  onPoolReady(conn: H1UpstreamConnection): void {
    // The endpoint's ALPN said http/1.1 and the pool handed us a pooled HTTP/1.1 connection: not for
    // a tunnel (it would leave the pool for good). Give it back untouched.
    conn.user = NO_USER;
    conn.pool.release(conn, true);
    if (!this.done) {
      this.done = true;
      this.owner.onNoH2();
    }
  }

  onSessionReady(session: H2UpstreamConnection): void {
    if (this.done) {
      session.releaseSlot();
      return;
    }
    if (this.extended && !session.connectProtocol) {
      session.releaseSlot();
      this.done = true;
      this.owner.onNoH2();
      return;
    }
    const h2 = session.request(this.headers, false, this);
    if (h2 === null) {
      this.done = true;
      this.owner.onLegFailed('upstream_reset', 'the upstream connection went away');
      return;
    }
    // Paused until spliced: nothing is read before the owner is ready (DATA waits in the record).
    h2.pause();
    this.stream = h2;
  }

  onPoolError(code: ErrorCode): void {
    if (this.done) return;
    this.done = true;
    this.owner.onLegFailed(code, 'no upstream stream');
  }

  // --- StreamSink, until the answer ---

  onHeaders(raw: readonly string[], endStream: boolean): void {
    const stream = this.stream;
    if (this.done || stream === null || this.declinedStatus !== 0) return;
    const status = h2ResponseStatus(raw, stream.fieldsClean);
    if (status === -1) {
      this.done = true;
      stream.reset(NO_ERROR);
      this.owner.onLegFailed('upstream_protocol_error', 'malformed response head');
      return;
    }
    if (status < 200) return; // interim
    const fields = fieldsOf(raw);
    if (status >= 200 && status < 300) {
      this.done = true;
      this.owner.onStreamUp(stream, fields);
      return;
    }
    // A refusal: read its (small) body, then relay it.
    this.declinedStatus = status;
    this.declinedFields = fields;
    if (endStream) this.onEnd();
    else stream.resume();
  }

  onData(buf: Buffer, start: number, end: number): void {
    if (this.done || this.declinedStatus === 0) return;
    this.bodyBytes += end - start;
    if (this.bodyBytes > MAX_DECLINED_BODY) {
      this.done = true;
      this.stream?.reset(NO_ERROR);
      this.owner.onLegFailed('upstream_protocol_error', 'refusal body too large to relay');
      return;
    }
    this.body.push(Buffer.from(buf.subarray(start, end)));
  }

  onEnd(): void {
    if (this.done || this.declinedStatus === 0) return;
    this.done = true;
    this.owner.onDeclined(this.declinedStatus, this.declinedFields, Buffer.concat(this.body));
  }

  onReset(code: number): void {
    if (this.done) return;
    this.done = true;
    this.owner.onLegFailed('upstream_reset', `stream closed before a response (code ${code})`);
  }

  onWritable(): void {}
}

/** Response fields without pseudo-headers and framing, for relaying. */
export function fieldsOf(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.charCodeAt(0) === 0x3a || n === 'content-length') continue;
    out.push([n, raw[i + 1]!]);
  }
  return out;
}

const NO_USER = {
  onUpstreamData(): void {},
  onUpstreamClose(): void {},
  onUpstreamDrain(): void {},
  onUpstreamTimeout(): void {},
};
