import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { type RequestHead, requestField, requestFieldValues } from '../http1/request-head.ts';
import type { HealthCheckConfig } from '../config/schema.ts';
import type { PoolOptions } from '../pool/upstream-pool.ts';
import type { UpstreamTls } from '../pool/upstream-tls.ts';
import type { Dialer } from '../ports/dialer.ts';
import { poolKey } from '../pool/pool-key.ts';
import { Endpoint, type UpstreamSpec } from './endpoint.ts';
import { OutlierDetector, type OutlierOptions } from './outlier.ts';
import { HealthChecker } from './health-checker.ts';
import { createSelector } from './selection/index.ts';
import type { LbPolicy, Selector } from './selection/selector.ts';

export interface HashKeySource {
  header?: string | undefined;
  cookie?: string | undefined;
  sourceIp?: boolean | undefined;
}

export interface ClusterOptions {
  name: string;
  endpoints: readonly { host: string; port: number; weight: number }[];
  lb: LbPolicy;
  hashKey: HashKeySource | undefined;
  dnsRefreshMs: number;
  responseTimeoutMs: number;
  outlier: OutlierOptions;
  /** When no endpoint is healthy, spread over all of them (panic) instead of answering 503. */
  panic: boolean;
  pool: PoolOptions;
  /** Protocol and TLS towards the endpoints; default HTTP/1.1 in cleartext. */
  upstream?: UpstreamSpec | undefined;
  /** Opens upstream connections (source addresses, port allocation) for every endpoint of the cluster. */
  dialer: Dialer;
  /** Cluster-wide limits (`circuit_breakers:`); 0 = none. */
  breakers?: { maxRequests: number; maxPending: number; maxRetries: number; maxConnections?: number } | undefined;
  /** Active health checks of the endpoints (`health_check:`); none when undefined. */
  healthCheck?: HealthCheckConfig | undefined;
  /** L4 tunnels to the endpoints start with a PROXY header of this version (the client's address). */
  sendProxyProtocol?: 'v1' | 'v2' | undefined;
  /** Name -> addresses; defaults to the system resolver (getaddrinfo). Injectable for tests. */
  resolve?: (host: string) => Promise<string[]>;
}

const systemResolve = async (host: string): Promise<string[]> =>
  (await lookup(host, { all: true })).map((a) => a.address);

/**
 * A named set of endpoints with a selection policy. Configured names are resolved to addresses at
 * start and again every `dnsRefreshMs`; each address is an Endpoint with its own pool. Endpoints that
 * survive a re-resolution keep their pools; removed ones are closed (in-flight requests finish).
 */
export class Cluster {
  readonly name: string;
  /** The options it was built with; `endpoints` is replaced by a reload that changes only them. */
  opts: ClusterOptions;
  private readonly log: Logger;
  endpoints: Endpoint[] = [];
  private selector: Selector<Endpoint>;
  private refreshTimer: NodeJS.Timeout | null = null;
  readonly dialer: Dialer;
  requests = 0;
  errors = 0;
  readonly errorCodes = new Map<string, number>();

  readonly outlier: OutlierDetector;
  /** Picks made in panic (no healthy endpoint), and whether the cluster is in panic now (logged once per episode). */
  panics = 0;
  private inPanic = false;
  private panicNext = 0;

  constructor(opts: ClusterOptions, log: Logger) {
    this.name = opts.name;
    const maxConnections = opts.breakers?.maxConnections ?? 0;
    // The cluster-wide connection cap is asked by the pools themselves, before each new connection.
    let pool = opts.pool;
    if (maxConnections > 0) {
      pool = {
        ...pool,
        mayConnect: () => this.upstreamConnections() < maxConnections,
        capRefused: () => {
          this.breakerTrips.max_connections++;
        },
      };
    }
    // HTTP/1.1 pools start each connection with a PROXY header and keep it to one client connection.
    if (opts.sendProxyProtocol !== undefined) pool = { ...pool, sendProxyProtocol: opts.sendProxyProtocol };
    this.opts = pool === opts.pool ? opts : { ...opts, pool };
    this.dialer = opts.dialer;
    this.log = log;
    this.outlier = new OutlierDetector(opts.outlier, () => this.endpoints, log, opts.name);
    this.selector = createSelector<Endpoint>(opts.lb, []);
  }

  private checker: HealthChecker | null = null;

  /** The protocol towards the endpoints, as health checks read it (auto over TLS: ALPN chooses). */
  get checkProtocol(): 'http1' | 'http2' | 'auto' {
    const u = this.opts.upstream;
    if (u === undefined) return 'http1';
    if (u.protocol !== 'auto') return u.protocol;
    return u.tls !== null ? 'auto' : u.h2c ? 'http2' : 'http1';
  }

  /** TLS towards the endpoints (health checks use it too). */
  get tls(): UpstreamTls | null {
    return this.opts.upstream?.tls ?? null;
  }

  /** Resolve every endpoint; names that fail to resolve are logged and retried on the refresh interval. */
  async start(): Promise<void> {
    await this.resolve();
    if (this.opts.healthCheck !== undefined) {
      this.checker = new HealthChecker(this, this.opts.healthCheck, this.log);
      this.checker.start();
    }
    if (this.opts.endpoints.some((e) => isIP(e.host) === 0)) {
      this.refreshTimer = setInterval(() => void this.resolve(), this.opts.dnsRefreshMs);
      this.refreshTimer.unref();
    }
  }

  /**
   * A reload changed only the endpoint list: endpoints that stay keep their pools and connections,
   * removed ones drain, weights are updated.
   */
  async updateEndpoints(endpoints: ClusterOptions['endpoints']): Promise<void> {
    this.opts = { ...this.opts, endpoints };
    if (this.refreshTimer === null && endpoints.some((e) => isIP(e.host) === 0)) {
      this.refreshTimer = setInterval(() => void this.resolve(), this.opts.dnsRefreshMs);
      this.refreshTimer.unref();
    }
    await this.resolve();
  }

  /** Sets an endpoint's weight at runtime (admin API); false when no endpoint has that key. */
  setWeight(key: string, weight: number): boolean {
    const e = this.endpoints.find((x) => x.key === key);
    if (e === undefined) return false;
    e.weight = weight;
    this.rebuildSelector();
    return true;
  }

  /**
   * Drains an endpoint (admin API): no new request or tunnel picks it; its idle connections close;
   * requests and tunnels on it finish. `false` puts it back. False when no endpoint has that key.
   */
  setDrained(key: string, drained: boolean): boolean {
    const e = this.endpoints.find((x) => x.key === key);
    if (e === undefined) return false;
    e.drained = drained;
    if (drained) e.closeIdle();
    this.rebuildSelector();
    return true;
  }

  /** Upstream connections of the pools, open or being dialled, over every endpoint (HTTP/1.1 and HTTP/2). */
  upstreamConnections(): number {
    let n = 0;
    for (const e of this.endpoints) n += e.pool.open + (e.h2 === null ? 0 : e.h2.sessions + e.h2.connecting);
    return n;
  }

  /** Requests queued for a connection or a stream slot on any endpoint. */
  get pending(): number {
    let n = 0;
    for (const e of this.endpoints) n += e.pool.pendingCount + (e.h2?.pendingCount ?? 0);
    return n;
  }

  private rebuildSelector(): void {
    this.selector = createSelector<Endpoint>(
      this.opts.lb,
      this.endpoints.filter((e) => !e.drained),
    );
  }

  /** Requests refused by a circuit breaker, by breaker (in /stats). */
  readonly breakerTrips = { max_requests: 0, max_pending: 0, max_retries: 0, max_connections: 0 };
  /** Requests sent again after a failed attempt, and retries a route allowed that did not happen, by reason. */
  retries = 0;
  readonly retriesSkipped = new Map<string, number>();
  /** Exchanges of this cluster that are retrying now (held to `max_retries`). */
  retriesActive = 0;

  /** Whether the max_retries breaker lets one more exchange start retrying (a refusal is counted). */
  admitRetry(): boolean {
    const max = this.opts.breakers?.maxRetries ?? 0;
    if (max === 0 || this.retriesActive < max) return true;
    this.breakerTrips.max_retries++;
    return false;
  }

  recordRetrySkipped(reason: string): void {
    this.retriesSkipped.set(reason, (this.retriesSkipped.get(reason) ?? 0) + 1);
  }

  /**
   * An endpoint for the next attempt of a retried request: another than `avoid` where one is healthy
   * (a hash policy keeps answering the same one, so the list is walked from it), else `avoid` itself.
   */
  pickOther(hashKey: string | undefined, avoid: Endpoint): Endpoint | undefined {
    for (let i = 0; i < 3; i++) {
      const e = this.pick(hashKey);
      if (e === undefined || e !== avoid) return e;
    }
    const all = this.endpoints;
    const at = all.indexOf(avoid);
    for (let i = 1; i < all.length; i++) {
      const e = all[(at + i) % all.length]!;
      if (e.healthy && !e.drained) return e;
    }
    return this.pick(hashKey);
  }

  /**
   * Whether the circuit breakers let one more request or tunnel in: false (counted) when the cluster
   * already has max_requests in flight or max_pending waiting. Costs nothing without breakers; with
   * them, a walk over the endpoints (clusters are small).
   */
  admit(): boolean {
    const b = this.opts.breakers;
    if (b === undefined || (b.maxRequests === 0 && b.maxPending === 0)) return true;
    if (b.maxRequests > 0) {
      let active = 0;
      for (const e of this.endpoints) active += e.active;
      if (active >= b.maxRequests) {
        this.breakerTrips.max_requests++;
        return false;
      }
    }
    if (b.maxPending > 0 && this.pending >= b.maxPending) {
      this.breakerTrips.max_pending++;
      return false;
    }
    return true;
  }

  pick(hashKey: string | undefined): Endpoint | undefined {
    const e = this.selector.pick(hashKey);
    if (e !== undefined) {
      if (this.inPanic) {
        this.inPanic = false;
        this.log.info({ cluster: this.name }, 'a healthy endpoint is back: panic over');
      }
      return e;
    }
    return this.opts.panic ? this.panicPick() : undefined;
  }

  /**
   * No endpoint is healthy (every one ejected or failing its checks): rather than answer 503 to
   * everything, spread over all of them (drained ones excepted), round robin. Logged once per episode.
   */
  private panicPick(): Endpoint | undefined {
    const all = this.endpoints;
    for (let i = 0; i < all.length; i++) {
      const e = all[this.panicNext++ % all.length]!;
      if (e.drained) continue;
      if (!this.inPanic) {
        this.inPanic = true;
        this.log.warn(
          { cluster: this.name, endpoints: all.length },
          'no healthy endpoint: panic, spreading over all of them',
        );
      }
      this.panics++;
      return e;
    }
    return undefined;
  }

  /** The ring_hash / maglev key of a request, or undefined when the policy needs none or it is absent. */
  hashKeyOf(head: RequestHead, peerAddress: string): string | undefined {
    const src = this.opts.hashKey;
    if (src === undefined) return undefined;
    if (src.sourceIp === true) return peerAddress;
    if (src.header !== undefined) return requestField(head, src.header);
    if (src.cookie !== undefined) return cookieValue(requestFieldValues(head, 'cookie'), src.cookie);
    return undefined;
  }

  recordError(code: ErrorCode): void {
    this.errors++;
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
  }

  close(): void {
    this.checker?.stop();
    if (this.refreshTimer !== null) clearInterval(this.refreshTimer);
    for (const e of this.endpoints) e.close();
  }

  private async resolve(): Promise<void> {
    const next: Endpoint[] = [];
    let weightChanged = false;
    const byKey = new Map(this.endpoints.map((e) => [e.key, e]));
    const keep = new Set<Endpoint>();
    for (const cfg of this.opts.endpoints) {
      let addresses: string[];
      if (isIP(cfg.host) !== 0) {
        addresses = [cfg.host];
      } else {
        try {
          addresses = await (this.opts.resolve ?? systemResolve)(cfg.host);
        } catch (err) {
          // Keep the previous addresses of this name, if any: a DNS blip must not empty the cluster.
          const prev = this.endpoints.filter((e) => e.host === cfg.host && e.port === cfg.port);
          this.log.warn({ cluster: this.name, host: cfg.host, err: (err as Error).message }, 'dns resolution failed');
          for (const e of prev) {
            if (keep.has(e)) continue;
            keep.add(e);
            next.push(e);
          }
          continue;
        }
      }
      for (const address of addresses) {
        const kept = byKey.get(poolKey(address, cfg.port));
        if (kept !== undefined && kept.weight !== cfg.weight) {
          kept.weight = cfg.weight;
          weightChanged = true;
        }
        const ep =
          kept ??
          new Endpoint(
            cfg.host,
            address,
            cfg.port,
            cfg.weight,
            this.opts.pool,
            this.outlier,
            this.dialer,
            this.opts.upstream,
          );
        if (keep.has(ep)) continue;
        keep.add(ep);
        next.push(ep);
      }
    }
    const changed = next.length !== this.endpoints.length || next.some((e, i) => e !== this.endpoints[i]);
    if (!changed && !weightChanged) return;
    for (const e of this.endpoints) if (!keep.has(e)) e.close();
    this.endpoints = next;
    this.rebuildSelector();
    this.log.debug({ cluster: this.name, endpoints: next.map((e) => e.key) }, 'endpoints updated');
  }
}

function cookieValue(cookieFields: readonly string[], name: string): string | undefined {
  for (const field of cookieFields) {
    for (const part of field.split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}
