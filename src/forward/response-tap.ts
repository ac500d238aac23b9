import type { Buffer } from 'node:buffer';

/**
 * Something that keeps a copy of the response an exchange relays: the first request with an
 * Idempotency-Key (admission/idempotent-run.ts), a cache miss filling its zone (cache/cache-fill.ts).
 * The relay (HTTP/1.1 upstream) and the HTTP/2 leg call it as the response goes by; the exchange calls
 * `finish` when it ends.
 */
export interface ResponseTap {
  /**
   * The final response head: flat [':status', s, name, value, ...] (connection-specific fields out);
   * `chunked`: the body bytes to come carry HTTP/1.1 chunked framing; `length`: its Content-Length (-1: none).
   */
  head(flat: readonly string[], chunked: boolean, length: number): void;
  /** Body bytes as relayed; `buf` may be a view of a shared read buffer, valid only during the call. */
  data(buf: Buffer, start?: number, end?: number): void;
  /** The exchange ended: `answered` when the upstream's response was relayed whole. */
  finish(answered: boolean): void;
}
