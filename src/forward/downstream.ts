import type { ErrorCode } from '../core/errors.ts';
import type { ListenerStats } from '../core/listener-stats.ts';
import type { AccessLog } from '../core/access-log.ts';
import type { Logger } from '../core/log.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';

/**
 * What forwarding needs from the listener a request came in on: its name, counters, logs and the few
 * settings the exchange reads. A listener's context is one (ListenerContext extends it); the
 * forwarding code depends on this view, not on the listener.
 */
export interface DownstreamContext {
  readonly name: string;
  readonly stats: ListenerStats;
  readonly accessLog: AccessLog | null;
  readonly log: Logger;
  /** "muxgate" (the Via pseudonym) or null when Via is off. */
  readonly via: string | null;
  readonly proto: 'http' | 'https';
  /** Set while draining: every response closes its connection. */
  readonly draining: boolean;
  readonly limits: { readonly maxHeaderBytes: number };
}

/**
 * The client side of one exchange, as the forwarding code sees it: an HTTP/1.1 connection
 * (`H1DownstreamConnection`, which serves its requests one at a time) or one HTTP/2 stream (`H2Stream`).
 * The exchange writes the response through it and tells it when the exchange is over.
 */
export interface Downstream {
  readonly ctx: DownstreamContext;
  /** The client's IP address. */
  readonly peer: string;
  /** The client connection's two ends (for a PROXY header to an upstream). */
  origin(): ClientOrigin;
  /** The response goes out as HTTP/2 frames: the relay hands over heads as header maps, bodies unframed. */
  readonly h2: boolean;
  /** No client: a cache's background revalidation (forward/background-downstream.ts). */
  readonly background?: boolean;
  /** X-Forwarded-*, Forwarded and Via lines for this request (memoised per connection where possible). */
  forwardingFields(head: RequestHead): string;
  /** Response bytes for the client (HTTP/1.1 framing on an HTTP/1.1 connection; body bytes on HTTP/2). */
  queue(data: Buffer | string): void;
  /**
   * Answer with a proxy error when nothing of a response was sent yet; `extra`: more fields, flat as
   * [name, value, ...] (a 429's Retry-After and RateLimit fields).
   */
  sendError(code: ErrorCode, close: boolean, headOnly: boolean, extra?: readonly string[]): void;
  /** Backpressure from the upstream while relaying the request body. */
  pauseForBody(): void;
  resumeForBody(): void;
  /** The exchange is over (response complete, or failed after answering). */
  onExchangeDone(keepAlive: boolean): void;
  /** A response is half-sent and cannot be completed: make the client see the truncation. */
  destroy(): void;
}

/** A downstream HTTP/2 stream: response heads go out as header maps. */
export interface H2Responder extends Downstream {
  readonly h2: true;
  /**
   * The final response head as flat [name, value, ...] (`:status` first, names lower-case);
   * `noBody`: HEAD, 204, 304 (the stream ends with the head).
   */
  respond(fields: string[], noBody: boolean): void;
  /** A 1xx response (100 Continue, 103 Early Hints), flat like `respond`. */
  interim(fields: string[]): void;
  /** Trailers to send when the exchange completes (flat, no pseudo-fields). */
  setTrailers(fields: string[]): void;
}
