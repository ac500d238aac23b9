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
  /**
   * The cluster-wide cap (`circuit_breakers.max_connections`), asked before a new connection is
   * dialled: false at the cap. A pool with connections of its own then queues behind them; one with
   * none answers `circuit_open` and calls `capRefused`.
   */
  mayConnect?: (() => boolean) | undefined;
  capRefused?: (() => void) | undefined;
  /**
   * The cluster's send_proxy_protocol (HTTP/1.1 pools): each connection starts with a PROXY header
   * naming one client connection, and carries that client connection's requests only.
   */
  sendProxyProtocol?: 'v1' | 'v2' | undefined;
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
  close(): void;
  // What is lent is given back to where it came from: `H1UpstreamConnection.pool.release(conn)`,
  // `H2UpstreamConnection.releaseSlot()` (a stream slot), so the contract has no `release` of its own.

  // --- stats every pool keeps the same way (the snapshot adds each protocol's own) ---
  /** Waiters queued now. */
  readonly pendingCount: number;
  /** Connections being dialled (TCP, TLS, and for HTTP/2 the SETTINGS exchange). */
  readonly connecting: number;
  readonly connectsTotal: number;
  readonly connectFailures: number;
  /** Waiters refused because `max_pending` were queued. */
  readonly queueFull: number;
  /** Waiters that waited `pending_timeout`. */
  readonly queueTimeouts: number;
}

/** The counters of `UpstreamPool` as the stats snapshot shows them. */
export interface PoolCounters {
  pending: number;
  connecting: number;
  connects_total: number;
  connect_failures: number;
  queue_full: number;
  queue_timeouts: number;
}

export function poolCounters(p: UpstreamPool): PoolCounters {
  return {
    pending: p.pendingCount,
    connecting: p.connecting,
    connects_total: p.connectsTotal,
    connect_failures: p.connectFailures,
    queue_full: p.queueFull,
    queue_timeouts: p.queueTimeouts,
  };
}
