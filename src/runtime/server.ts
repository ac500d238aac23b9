import type { AddressInfo } from 'node:net';
import { Cluster } from '../cluster/cluster.ts';
import { AdmissionStores } from '../admission/admission-stores.ts';
import { CacheZones } from '../cache/cache-zones.ts';
import { readFileSync } from 'node:fs';
import type { UpstreamSpec } from '../cluster/endpoint.ts';
import { type ClusterTlsConfig, clusterHttp2, listenerHttp2 } from '../config/protocols.ts';
import type { ClusterConfig, Config, HttpListenerConfig, ListenerConfig, TcpListenerConfig } from '../config/schema.ts';
import { type ConnectConfig, connectWarnings } from '../config/tunnels.ts';
import { CidrSet } from '../core/cidr.ts';
import { AccessLog } from '../core/access-log.ts';
import { LogFile } from '../core/log-file.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { type StatsSnapshot, snapshotStats } from '../admin/stats-snapshot.ts';
import { HttpListener, type Passthrough } from '../listener/http-listener.ts';
import { ListenerStats } from '../core/listener-stats.ts';
import { TcpListener } from '../listener/tcp-listener.ts';
import { SniRouter } from '../listener/sni-router.ts';
import { DEFAULT_MAX_CLIENT_HELLO_BYTES } from '../tls/client-hello.ts';
import { Dialer } from '../ports/dialer.ts';
import { PortAllocator, type SourcePlan } from '../ports/port-allocator.ts';
import { Router } from '../router/router.ts';
import {
  DEFAULT_EPHEMERAL_RANGE,
  DEFAULT_FIN_TIMEOUT_S,
  ephemeralPortRange,
  type PortRange,
  readSysctlInt,
} from '../core/sysctl.ts';
import type { UpstreamTls } from '../pool/upstream-tls.ts';
import { CertStore } from '../tls/cert-store.ts';
import { ConnectPolicy } from '../tunnel/connect-policy.ts';
import { buildRoute, clusterNamed, gateLimits, tcpEdge } from './build-routes.ts';
import { MemoryTrim } from '../core/memory-trim.ts';
import { applyReload, pruneRetiredListeners, type ReloadSummary } from './reload.ts';

export interface ServerOptions {
  /** Event logger; default: pino at the config's log_level on stderr. */
  log?: Logger;
  /** Access log; default from the config's access_log; null disables. */
  accessLog?: AccessLog | null;
  /**
   * Listen with SO_REUSEPORT or not, whatever the config's reuse_port says: workers need it (each binds
   * the same address), and must not have it under the node:cluster fallback (the primary shares one).
   */
  reusePort?: boolean | undefined;
  /** This worker's share of every source port range (worker index of count); default: all of it. */
  portSlice?: { index: number; count: number } | undefined;
}

export type Listener = HttpListener | TcpListener;

/**
 * One running muxgate data plane: clusters (with their pools) and listeners built from a validated
 * config. The admin API is separate (it only reads `snapshot()`).
 */
export class MuxgateServer {
  config: Config;
  readonly log: Logger;
  readonly accessLog: AccessLog | null;
  private readonly reusePort: boolean | undefined;
  clusters = new Map<string, Cluster>();
  listeners: Listener[] = [];
  readonly ports: PortAllocator;
  /** The stores behind routes' rate_limit: and idempotency: (kept across reloads). */
  readonly stores: AdmissionStores;
  /** The cache zones routes keep responses in (kept across reloads). */
  readonly cacheZones: CacheZones;
  /** Gives memory back after bursts (process-wide: one per process). */
  readonly memoryTrim: MemoryTrim;

  constructor(config: Config, opts: ServerOptions = {}) {
    this.config = config;
    this.log = opts.log ?? createLogger(config.log_level);
    this.accessLog =
      opts.accessLog !== undefined
        ? opts.accessLog
        : config.access_log.enabled
          ? openAccessLog(config, this.log)
          : null;
    this.reusePort = opts.reusePort;
    const kernelRange = ephemeralPortRange();
    if (kernelRange === null) this.log.warn('cannot read net.ipv4.ip_local_port_range: assuming 32768-60999');
    this.kernelRange = kernelRange ?? DEFAULT_EPHEMERAL_RANGE;
    this.stores = new AdmissionStores(this.log);
    // Workers each keep their own disk zones, in a directory of their own under the zone's path.
    this.cacheZones = new CacheZones(this.log, opts.portSlice === undefined ? null : `worker-${opts.portSlice.index}`);
    this.memoryTrim = new MemoryTrim(config.memory_trim, this.log);
    this.ports = new PortAllocator(this.log, () => ephemeralPortRange() ?? DEFAULT_EPHEMERAL_RANGE, opts.portSlice);
  }

  private readonly kernelRange: PortRange;

  /** How a cluster's connections leave: bound to source addresses (muxgate picks ports) or not. */
  private dialerFor(name: string, c: ClusterConfig): Dialer {
    if (c.source_addresses === undefined) return new Dialer(this.ports, null, name, c.budget_warn_ratio);
    const finTimeout = readSysctlInt('net.ipv4.tcp_fin_timeout') ?? DEFAULT_FIN_TIMEOUT_S;
    const plan: SourcePlan = {
      cluster: name,
      sources: c.source_addresses,
      range: c.source_port_range ?? this.kernelRange,
      coolingMs: c.port_cooling ?? finTimeout * 1000,
      warnRatio: c.budget_warn_ratio,
    };
    return new Dialer(this.ports, plan, name, c.budget_warn_ratio);
  }

  async start(): Promise<void> {
    const cfg = this.config;
    this.cacheZones.configure(cfg.cache_zones);
    for (const [name, c] of Object.entries(cfg.clusters)) this.clusters.set(name, this.buildCluster(name, c, cfg));
    await Promise.all([...this.clusters.values()].map((c) => c.start()));
    const built = cfg.listeners.map((l) => [l, this.buildListener(l, cfg, this.clusters)] as const);
    // Routes' Redis stores connect before the first request (a store still down then is logged, and
    // its routes apply on_store_error until it comes up).
    await this.stores.ready(STORE_READY_MS);
    for (const [l, listener] of built) {
      const a = await listener.listen(l.address.host, l.address.port, this.reusesPorts(cfg));
      this.listeners.push(listener);
      this.log.info({ listener: l.name, protocol: l.protocol, address: `${a.address}:${a.port}` }, 'listening');
    }
    this.memoryTrim.apply(cfg.memory_trim);
  }

  /**
   * Swaps in a new config (already validated) without dropping anything: see runtime/reload.ts.
   * Resolves with what changed; rejects (nothing changed) when a new part cannot be built or bound.
   */
  reload(next: Config): Promise<ReloadSummary> {
    // One reload at a time: a second waits for the first.
    const run = this.reloading.then(() => applyReload(this, next));
    this.reloading = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  private reloading: Promise<void> = Promise.resolve();

  /** Clusters replaced or removed by a reload: closed once no request waits in their queues. */
  readonly retiredClusters: Cluster[] = [];

  /** Listeners replaced or removed by a reload, draining: counted until their last connection ends. */
  readonly retiredListeners: Listener[] = [];

  /** The counters of a listener name, shared by every listener object that carries the name across reloads. */
  statsFor(name: string): ListenerStats {
    let s = this.listenerStats.get(name);
    if (s === undefined) {
      s = new ListenerStats();
      this.listenerStats.set(name, s);
    }
    return s;
  }

  private readonly listenerStats = new Map<string, ListenerStats>();

  /** A cluster of `cfg` (not started). */
  buildCluster(name: string, c: ClusterConfig, cfg: Config): Cluster {
    const hk = c.hash_key;
    return new Cluster(
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
        healthCheck: c.health_check,
        sendProxyProtocol: c.send_proxy_protocol,
        breakers: {
          maxRequests: c.circuit_breakers.max_requests,
          maxPending: c.circuit_breakers.max_pending,
          maxRetries: c.circuit_breakers.max_retries,
          maxConnections: c.circuit_breakers.max_connections,
        },
        outlier: {
          consecutiveConnectFailures: c.outlier.consecutive_connect_failures,
          consecutive5xx: c.outlier.consecutive_5xx,
          consecutiveGatewayErrors: c.outlier.consecutive_gateway_errors,
          baseEjectionMs: c.outlier.base_ejection_time,
          maxEjectionMs: c.outlier.max_ejection_time,
          maxEjectionPercent: c.outlier.max_ejection_percent,
        },
        panic: c.outlier.panic,
        dialer: this.dialerFor(name, c),
        upstream: this.upstreamSpec(name, c),
        pool: {
          maxConnections: c.pool.max_connections,
          maxPending: c.pool.max_pending,
          pendingTimeoutMs: c.pool.pending_timeout,
          maxRequestsPerConnection: c.pool.max_requests_per_connection,
          idleTimeoutMs: c.pool.idle_timeout,
          connectTimeoutMs: c.pool.connect_timeout,
          directIo: cfg.direct_io,
        },
      },
      this.log,
    );
  }

  /** A listener of `cfg` (not bound), routing to `clusters`. */
  buildListener(l: ListenerConfig, cfg: Config, clusters: ReadonlyMap<string, Cluster>): Listener {
    return l.protocol === 'tcp' ? this.tcpListener(l, cfg, clusters) : this.httpListener(l, cfg, clusters);
  }

  /** The routes of an HTTP listener, compiled against `clusters`. */
  router(l: HttpListenerConfig, cfg: Config, clusters: ReadonlyMap<string, Cluster>): Router {
    return new Router(
      l.routes.map((r, i) =>
        buildRoute(r, i, clusters, cfg.clusters, this.stores, this.cacheZones, cfg.via === false ? null : cfg.via),
      ),
    );
  }

  /** Whether listeners bind with SO_REUSEPORT (workers share the address; reloads and upgrades overlap). */
  reusesPorts(cfg: Config): boolean {
    return this.reusePort ?? cfg.reuse_port;
  }

  /** Protocol and TLS towards a cluster's endpoints; TLS files are read now (a bad file fails start, named). */
  private upstreamSpec(name: string, c: ClusterConfig): UpstreamSpec {
    const h = c.http2 ?? clusterHttp2.parse({});
    let tls: UpstreamTls | null = null;
    if (c.tls !== undefined) {
      tls = upstreamTls(name, c.tls);
      if (c.tls.insecure_skip_verify) {
        this.log.warn(
          { cluster: name },
          'INSECURE: tls.insecure_skip_verify is set; upstream certificates are NOT verified (anyone on the path can impersonate the upstream)',
        );
      }
    }
    return {
      protocol: c.protocol,
      h2c: c.h2c,
      tls,
      websocket: c.websocket,
      h2: {
        maxConcurrentStreams: h.max_concurrent_streams,
        initialWindowSize: h.initial_window_size,
        connectionWindowSize: h.connection_window_size,
        maxHeaderListSize: h.max_header_list_size,
        stallTimeoutMs: h.stall_timeout,
        pingIntervalMs: h.ping_interval,
        pingTimeoutMs: h.ping_timeout,
      },
    };
  }

  private httpListener(l: HttpListenerConfig, cfg: Config, clusters: ReadonlyMap<string, Cluster>): HttpListener {
    const via = cfg.via === false ? null : cfg.via;
    const h = l.http2 ?? listenerHttp2.parse({});
    const t = l.tls;
    const certs =
      t === undefined
        ? null
        : CertStore.load(
            t.certificates.map((c) => ({ cert: c.cert, key: c.key, serverNames: c.server_names, default: c.default })),
            {
              minVersion: t.min_version,
              alpn: l.protocol === 'http1' ? ['http/1.1'] : l.protocol === 'http2' ? ['h2'] : ['h2', 'http/1.1'],
              reloadIntervalMs: t.reload_interval,
            },
            this.log,
          );
    const h2 = {
      maxConcurrentStreams: h.max_concurrent_streams,
      initialWindowSize: h.initial_window_size,
      connectionWindowSize: h.connection_window_size,
      maxHeaderListSize: h.max_header_list_size,
      maxHeaderBlockBytes: h.max_header_block_size,
      headerTableSize: h.header_table_size,
      settingsTimeoutMs: h.settings_timeout,
      stallTimeoutMs: h.stall_timeout,
      floods: {
        intervalMs: h.floods.interval,
        maxResets: h.rapid_reset.max_resets,
        resetIntervalMs: h.rapid_reset.interval,
        maxSettings: h.floods.max_settings,
        maxPings: h.floods.max_pings,
        maxEmptyFrames: h.floods.max_empty_frames,
        maxWindowUpdates: h.floods.max_window_updates,
        maxPriority: h.floods.max_priority,
      },
    };
    return new HttpListener(
      {
        name: l.name,
        router: this.router(l, cfg, clusters),
        limits: {
          maxHeaderBytes: l.max_header_bytes,
          maxHeaders: l.max_headers,
          headerTimeoutMs: l.header_timeout,
          idleTimeoutMs: l.idle_timeout,
          maxRequestsPerConnection: l.max_requests_per_connection,
          drainIdleGraceMs: cfg.drain_idle_grace,
        },
        trusted: new CidrSet(l.trusted_proxies ?? cfg.trusted_proxies),
        proxyProtocol:
          l.proxy_protocol === undefined
            ? null
            : { trusted: new CidrSet(l.proxy_protocol.trusted), timeoutMs: l.proxy_protocol.timeout },
        via,
        proto: certs === null ? 'http' : 'https',
        accessLog: this.accessLog,
        log: this.log,
        stats: this.statsFor(l.name),
        connect: l.connect === undefined ? null : this.connectPolicy(l.name, l.connect),
        draining: false,
        directIo: cfg.direct_io,
      },
      l.protocol,
      h2,
      certs,
      gateLimits(l),
      this.passthrough(l, clusters),
    );
  }

  /** A TLS listener's `passthrough:` names, their clusters, and what their tunnels report to (the listener's stats and log). */
  passthrough(l: HttpListenerConfig, clusters: ReadonlyMap<string, Cluster>): Passthrough | null {
    if (l.passthrough === undefined) return null;
    return {
      router: new SniRouter<Cluster>(l.passthrough, (name) => clusterNamed(l.name, name, clusters), null),
      maxHelloBytes: DEFAULT_MAX_CLIENT_HELLO_BYTES,
      tunnelCtx: {
        name: l.name,
        cluster: null,
        idleTimeoutMs: PASSTHROUGH_IDLE_TIMEOUT_MS,
        connectTimeoutMs: 5000,
        connectAttempts: 3,
        accessLog: this.accessLog,
        log: this.log,
        stats: this.statsFor(l.name),
        draining: false,
        tunnel: null,
      },
    };
  }

  private tcpListener(l: TcpListenerConfig, cfg: Config, clusters: ReadonlyMap<string, Cluster>): TcpListener {
    const cluster = l.cluster === undefined ? null : clusterNamed(l.name, l.cluster, clusters);
    return new TcpListener(
      {
        name: l.name,
        cluster,
        idleTimeoutMs: l.idle_timeout,
        connectTimeoutMs:
          cluster?.opts.pool.connectTimeoutMs ?? cfg.clusters[l.cluster ?? '']?.pool.connect_timeout ?? 5000,
        connectAttempts: l.connect_attempts,
        accessLog: this.accessLog,
        log: this.log,
        stats: this.statsFor(l.name),
        draining: false,
        tunnel:
          l.tunnel === 'h2' && l.tunnel_target !== undefined
            ? {
                authority: l.tunnel_target.host.includes(':')
                  ? `[${l.tunnel_target.host}]:${l.tunnel_target.port}`
                  : `${l.tunnel_target.host}:${l.tunnel_target.port}`,
              }
            : null,
      },
      gateLimits(l),
      tcpEdge(l, clusters),
    );
  }

  /** A listener's CONNECT policy; rules that look broader than they are get a warning at start and reload. */
  private connectPolicy(listener: string, c: ConnectConfig): ConnectPolicy {
    for (const w of connectWarnings(listener, c)) this.log.warn({ code: 'connect_catch_all' }, w);
    return new ConnectPolicy(c);
  }

  /** The bound address of a listener (useful with port 0). */
  address(listenerName: string): AddressInfo {
    const l = this.listeners.find((x) => x.ctx.name === listenerName);
    const a = l?.address();
    if (a === null || a === undefined) throw new Error(`no listener named ${listenerName}`);
    return a;
  }

  snapshot(): StatsSnapshot {
    pruneRetiredListeners(this);
    return snapshotStats(
      this.listeners,
      [...this.clusters.values()],
      this.ports,
      this.accessLog,
      this.memoryTrim.counters,
      this.cacheZones.all(),
    );
  }

  /**
   * Graceful stop: stop accepting, close idle connections, let in-flight exchanges finish for up to
   * `timeoutMs`, then cut what is left. Resolves when nothing remains.
   */
  async drain(timeoutMs: number = this.config.drain_timeout): Promise<void> {
    for (const l of this.listeners) l.drain();
    const all = () => [...this.listeners, ...this.retiredListeners];
    const deadline = Date.now() + timeoutMs;
    while (all().some((l) => l.connections > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const left = all().reduce((n, l) => n + l.connections, 0);
    if (left > 0) this.log.warn({ connections: left }, 'drain timeout: closing remaining connections');
    await this.accessLog?.sink.flush();
    this.close();
  }

  close(): void {
    this.memoryTrim.stop();
    for (const l of [...this.listeners, ...this.retiredListeners]) l.destroyAll();
    void this.stores.close();
    this.cacheZones.close();
    for (const c of [...this.clusters.values(), ...this.retiredClusters]) c.close();
    // The last lines (those of the connections just cut included) go out before the process exits.
    this.accessLog?.sink.closeSync();
  }
}

/** A passed-through TLS connection with no byte either way for this long is closed (as a tcp listener's default). */
const PASSTHROUGH_IDLE_TIMEOUT_MS = 3_600_000;

/** How long start waits for the Redis stores of rate_limit: and idempotency: to connect. */
const STORE_READY_MS = 3000;

/** The configured access log: its file (or stdout/stderr) written in batches; trouble goes to the event log. */
function openAccessLog(config: Config, log: Logger): AccessLog {
  const c = config.access_log;
  const file = new LogFile(c.path, {
    bufferBytes: c.buffer,
    flushIntervalMs: c.flush_interval,
    maxBufferBytes: c.max_buffer,
    onTrouble: (what, d) => {
      if (what === 'lost') log.error({ path: c.path, error: d.error }, 'access log: lines are being lost');
      else log.warn({ path: c.path, lost: d.lost }, 'access log: writing again after losing lines');
    },
  });
  return new AccessLog(file, { errorsOnly: c.errors_only, sample: c.sample });
}

/** Reads a cluster's TLS files; an unreadable one fails start with the cluster and file named. */
function upstreamTls(cluster: string, t: ClusterTlsConfig): UpstreamTls {
  const read = (what: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(
        `cluster ${cluster}: cannot read tls.${what} file "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  };
  return {
    servername: t.server_name,
    ca: read('ca', t.ca),
    cert: read('cert', t.cert),
    key: read('key', t.key),
    rejectUnauthorized: !t.insecure_skip_verify,
    minVersion: t.min_version,
  };
}
