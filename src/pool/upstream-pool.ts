import type { PoolWaiter } from './pool-waiter.ts';

/** Limits shared by both kinds of pool (config `pool:` of a cluster). */
export interface PoolOptions {
  maxConnections: number;
  maxPending: number;
  pendingTimeoutMs: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** Plain TCP connections use core/direct-io.ts (config `direct_io`). */
  directIo: boolean;
}

/** Told about every connect attempt's outcome; the endpoint uses it for passive health. */
export interface ConnectObserver {
  connectSucceeded(): void;
  connectFailed(): void;
}

/**
 * What an exchange or a tunnel asks of an endpoint's upstream capacity, whichever protocol carries it
 * (undici's Dispatcher over its client-h1 / client-h2 engines is the model). `H1Pool` lends a
 * connection (`PoolWaiter.onPoolReady`), `H2Pool` reserves a stream slot on a connection
 * (`onSessionReady`); both queue the same way (FIFO, `max_pending`, `pending_timeout`) and report
 * `onPoolError` with a stable code. Exactly one callback per `acquire`, possibly synchronously.
 *
 * The endpoint picks the pool (`Endpoint.upstream`): its HTTP/2 pool while it speaks HTTP/2, else the
 * HTTP/1.1 one; callers do not branch on the protocol to ask.
 */
export interface UpstreamPool {
  acquire(w: PoolWaiter): void;
  /** The waiter gave up: drop it from the queue (no callback follows). */
  cancel(w: PoolWaiter): void;
  /** Waiters queued now. */
  readonly pendingCount: number;
  close(): void;
}
