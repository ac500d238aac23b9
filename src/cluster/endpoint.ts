import type { ConnectObserver, PoolOptions, UpstreamPool } from '../pool/upstream-pool.ts';
import { H1Pool } from '../pool/h1-pool.ts';
import { H2Pool, type H2Options } from '../pool/h2-pool.ts';
import type { PoolWaiter } from '../pool/pool-waiter.ts';
import type { UpstreamTls } from '../pool/upstream-tls.ts';
import { poolKey } from '../pool/pool-key.ts';
import type { Dialer } from '../ports/dialer.ts';
import type { SelectableEndpoint } from './selection/selector.ts';
import { DurationHistogram } from '../core/duration-histogram.ts';
import type { OutlierDetector, OutlierTarget } from './outlier.ts';

/** What the endpoints of a cluster speak, and how to reach them. */
export interface UpstreamSpec {
  protocol: 'http1' | 'http2' | 'auto';
  /** With protocol auto in cleartext: HTTP/2 with prior knowledge. */
  h2c: boolean;
  tls: UpstreamTls | null;
  h2: H2Options;
  /** How WebSockets travel: their own HTTP/1.1 connection, or RFC 8441 streams on the HTTP/2 pool. */
  websocket?: 'http1' | 'h2';
}

/** HTTP/1.1 in cleartext, the default. */
export const HTTP1_CLEARTEXT: UpstreamSpec = {
  protocol: 'http1',
  h2c: false,
  tls: null,
  h2: {
    maxConcurrentStreams: 100,
    initialWindowSize: 1024 * 1024,
    connectionWindowSize: 16 * 1024 * 1024,
    maxHeaderListSize: 256 * 1024,
    stallTimeoutMs: 30_000,
    pingIntervalMs: 30_000,
    pingTimeoutMs: 10_000,
  },
};

/**
 * One resolved upstream address: (IP, port, weight), with its connection pool and passive health.
 * A DNS name in the config becomes one Endpoint per address it resolves to.
 */
export class Endpoint implements SelectableEndpoint, ConnectObserver, OutlierTarget {
  readonly key: string;
  /** The name as configured (a hostname or an IP). */
  readonly host: string;
  readonly address: string;
  readonly port: number;
  /** Set by the config (a reload may change it) or the admin API; the cluster rebuilds its selector after. */
  weight: number;
  /** Drained through the admin API: left out of selection, its open connections finish their work. */
  drained = false;
  readonly pool: H1Pool;
  /**
   * The HTTP/2 session pool when the cluster speaks HTTP/2 (or may: protocol auto over TLS, where
   * ALPN decides; if the endpoint answers http/1.1, the pool falls back and `pool` takes over).
   */
  readonly h2: H2Pool | null;
  /** Ejected by outlier detection (connect failures, 5xx or gateway errors in a row). */
  ejected = false;
  connectFailuresInRow = 0;
  errors5xxInRow = 0;
  gatewayErrorsInRow = 0;
  ejections = 0;
  ejectTimer: NodeJS.Timeout | null = null;
  /** The active health check's verdict (true until a check says otherwise, or without checks). */
  checkedHealthy = true;
  /** Active checks: passes and failures in a row, the last failure's reason, and how many ran. */
  checkPasses = 0;
  checkFailures = 0;
  lastCheckError: string | null = null;
  checksTotal = 0;
  active = 0;
  requests = 0;
  errors = 0;
  /** How long requests waited for a connection or stream slot of this endpoint's pools. */
  readonly poolWait = new DurationHistogram();
  readonly outlier: OutlierDetector;

  constructor(
    host: string,
    address: string,
    port: number,
    weight: number,
    pool: PoolOptions,
    outlier: OutlierDetector,
    dialer: Dialer,
    upstream: UpstreamSpec = HTTP1_CLEARTEXT,
  ) {
    this.key = poolKey(address, port);
    this.host = host;
    this.address = address;
    this.port = port;
    this.weight = weight;
    this.outlier = outlier;
    const tls = upstream.tls === null ? null : { config: upstream.tls, host };
    this.pool = new H1Pool(this.key, address, port, pool, dialer, this, tls);
    const p = upstream.protocol;
    const h2 = p === 'http2' || (p === 'auto' && (upstream.tls !== null || upstream.h2c));
    if (h2) {
      this.h2 = new H2Pool(
        this.key,
        address,
        port,
        {
          ...pool,
          h2: upstream.h2,
          tls: upstream.tls,
          alpn: p === 'http2' ? ['h2'] : ['h2', 'http/1.1'],
          host,
        },
        dialer,
        this,
      );
      this.h2.onFallback = (waiters: PoolWaiter[]) => {
        for (const w of waiters) this.pool.acquire(w);
      };
    } else {
      this.h2 = null;
    }
  }

  /** Selection skips an endpoint that is ejected or failing its active checks. */
  get healthy(): boolean {
    return !this.ejected && this.checkedHealthy;
  }

  /** The pool requests go to: HTTP/2 while the endpoint speaks it, else HTTP/1.1. */
  get upstream(): UpstreamPool {
    const h2 = this.h2;
    return h2 !== null && !h2.fellBack ? h2 : this.pool;
  }

  /** A waiter gave up: drop it from whichever queue holds it. */
  cancel(w: PoolWaiter): void {
    this.pool.cancel(w);
    this.h2?.cancel(w);
  }

  connectSucceeded(): void {
    this.outlier.connectSucceeded(this);
  }

  /** Connect failures in a row eject the endpoint for a while (outlier detection). */
  connectFailed(): void {
    this.outlier.connectFailed(this);
  }

  /** Closes the idle connections of both pools (a drained endpoint keeps none in reserve). */
  closeIdle(): void {
    this.pool.closeIdle();
    this.h2?.closeIdle();
  }

  close(): void {
    if (this.ejectTimer !== null) clearTimeout(this.ejectTimer);
    this.pool.close();
    this.h2?.close();
  }
}
