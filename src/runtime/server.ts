import type { AddressInfo } from 'node:net';
import { Cluster } from '../cluster/cluster.ts';
import type { Config } from '../config/schema.ts';
import { CidrSet } from '../core/cidr.ts';
import { createAccessLogger, createLogger, type Logger } from '../core/log.ts';
import { type StatsSnapshot, snapshotStats } from '../core/stats.ts';
import { Http1Listener } from '../listener/http1-listener.ts';
import { ListenerStats } from '../listener/listener-context.ts';
import { Router } from '../router/router.ts';
import { buildRoute } from './build-routes.ts';

export interface ServerOptions {
  /** Event logger; default: pino at the config's log_level on stderr. */
  log?: Logger;
  /** Access logger; default from the config's access_log; null disables. */
  accessLog?: Logger | null;
  /** Listen with SO_REUSEPORT (each worker process binds the same address). */
  reusePort?: boolean;
}

/**
 * One running muxgate data plane: clusters (with their pools) and listeners built from a validated
 * config. The admin API is separate (it only reads `snapshot()`).
 */
export class MuxgateServer {
  readonly config: Config;
  readonly log: Logger;
  private readonly accessLog: Logger | null;
  private readonly reusePort: boolean;
  readonly clusters = new Map<string, Cluster>();
  readonly listeners: Http1Listener[] = [];

  constructor(config: Config, opts: ServerOptions = {}) {
    this.config = config;
    this.log = opts.log ?? createLogger(config.log_level);
    this.accessLog =
      opts.accessLog !== undefined
        ? opts.accessLog
        : config.access_log.enabled
          ? createAccessLogger(config.access_log.path)
          : null;
    this.reusePort = opts.reusePort ?? false;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    for (const [name, c] of Object.entries(cfg.clusters)) {
      const hk = c.hash_key;
      const cluster = new Cluster(
        {
          name,
          endpoints: c.endpoints,
          lb: c.lb,
          hashKey:
            hk === undefined
              ? undefined
              : 'header' in hk
                ? { header: hk.header }
                : 'cookie' in hk
                  ? { cookie: hk.cookie }
                  : { sourceIp: true },
          dnsRefreshMs: c.dns_refresh,
          responseTimeoutMs: c.response_timeout,
          passiveHealth: {
            consecutiveFailures: c.passive_health.consecutive_failures,
            ejectionTimeMs: c.passive_health.ejection_time,
          },
          pool: {
            maxConnections: c.pool.max_connections,
            maxPending: c.pool.max_pending,
            pendingTimeoutMs: c.pool.pending_timeout,
            maxRequestsPerConnection: c.pool.max_requests_per_connection,
            idleTimeoutMs: c.pool.idle_timeout,
            connectTimeoutMs: c.pool.connect_timeout,
          },
        },
        this.log,
      );
      this.clusters.set(name, cluster);
    }
    await Promise.all([...this.clusters.values()].map((c) => c.start()));

    const via = cfg.via === false ? null : cfg.via;
    for (const l of cfg.listeners) {
      const routes = l.routes.map((r, i) => buildRoute(r, i, this.clusters, cfg.clusters));
      const listener = new Http1Listener({
        name: l.name,
        router: new Router(routes),
        limits: {
          maxHeaderBytes: l.max_header_bytes,
          maxHeaders: l.max_headers,
          headerTimeoutMs: l.header_timeout,
          idleTimeoutMs: l.idle_timeout,
          maxRequestsPerConnection: l.max_requests_per_connection,
        },
        trusted: new CidrSet(l.trusted_proxies ?? cfg.trusted_proxies),
        via,
        proto: 'http',
        accessLog: this.accessLog,
        log: this.log,
        stats: new ListenerStats(),
        draining: false,
      });
      const a = await listener.listen(l.address.host, l.address.port, this.reusePort);
      this.listeners.push(listener);
      this.log.info({ listener: l.name, address: `${a.address}:${a.port}` }, 'listening');
    }
  }

  /** The bound address of a listener (useful with port 0). */
  address(listenerName: string): AddressInfo {
    const l = this.listeners.find((x) => x.ctx.name === listenerName);
    const a = l?.address();
    if (a === null || a === undefined) throw new Error(`no listener named ${listenerName}`);
    return a;
  }

  snapshot(): StatsSnapshot {
    return snapshotStats(this.listeners, [...this.clusters.values()]);
  }

  /**
   * Graceful stop: stop accepting, close idle connections, let in-flight exchanges finish for up to
   * `timeoutMs`, then cut what is left. Resolves when nothing remains.
   */
  async drain(timeoutMs: number = this.config.drain_timeout): Promise<void> {
    for (const l of this.listeners) l.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.listeners.some((l) => l.connections > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const left = this.listeners.reduce((n, l) => n + l.connections, 0);
    if (left > 0) this.log.warn({ connections: left }, 'drain timeout: closing remaining connections');
    this.close();
  }

  close(): void {
    for (const l of this.listeners) l.destroyAll();
    for (const c of this.clusters.values()) c.close();
    this.accessLog?.flush();
  }
}
