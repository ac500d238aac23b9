import type { Cluster } from '../cluster/cluster.ts';
import { CidrSet } from '../core/cidr.ts';
import type { PreambleOptions } from '../listener/l4-preamble.ts';
import { SniRouter } from '../listener/sni-router.ts';
import type { TcpEdge } from '../listener/tcp-listener.ts';
import type { GateLimits } from '../listener/connection-gate.ts';
import type { ClusterConfig, RouteConfig, TcpListenerConfig } from '../config/schema.ts';
import type { AdmissionStores } from '../admission/admission-stores.ts';
import { RouteIdempotency } from '../admission/route-idempotency.ts';
import { RouteRateLimit } from '../admission/route-rate-limit.ts';
import { RetryPolicy } from '../router/retry-policy.ts';
import { RouteCache } from '../cache/route-cache.ts';
import type { CacheZones } from '../cache/cache-zones.ts';
import type { HeaderMatch, PathMatch, Route } from '../router/route.ts';

/** Compiles configured routes: host patterns split into exact names and suffixes, regexes built once. */
export function buildRoute(
  cfg: RouteConfig,
  index: number,
  clusters: ReadonlyMap<string, Cluster>,
  clusterConfigs: Record<string, ClusterConfig>,
  stores: AdmissionStores,
  zones: CacheZones,
  via: string | null,
): Route {
  const cluster = clusters.get(cfg.cluster);
  const clusterCfg = clusterConfigs[cfg.cluster];
  if (cluster === undefined || clusterCfg === undefined) throw new Error(`route to unknown cluster ${cfg.cluster}`);
  const m = cfg.match;
  let hostsExact: Set<string> | null = null;
  const hostSuffixes: string[] = [];
  if (m?.host !== undefined && !m.host.includes('*')) {
    hostsExact = new Set();
    for (const h of m.host) {
      const lower = h.toLowerCase();
      if (lower.startsWith('*.')) hostSuffixes.push(lower.slice(1));
      else hostsExact.add(lower);
    }
  }
  let path: PathMatch | null = null;
  const p = m?.path;
  if (p !== undefined) {
    if ('prefix' in p) path = { kind: 'prefix', value: p.prefix };
    else if ('exact' in p) path = { kind: 'exact', value: p.exact };
    else path = { kind: 'regex', re: new RegExp(p.regex) };
  }
  const headers: HeaderMatch[] = (m?.headers ?? []).map((h) => ({
    name: h.name.toLowerCase(),
    exact: 'exact' in h ? h.exact : undefined,
    regex: 'regex' in h ? new RegExp(h.regex) : undefined,
    present: 'present' in h ? h.present : undefined,
  }));
  const name = cfg.name ?? `route${index}`;
  const rl = cfg.rate_limit;
  const idem = cfg.idempotency;
  const cache = cfg.cache;
  return {
    name,
    hostsExact,
    hostSuffixes,
    path,
    methods: m?.methods === undefined ? null : new Set(m.methods),
    headers,
    cluster,
    hostRewrite: cfg.host_rewrite,
    prefixRewrite: cfg.prefix_rewrite,
    responseTimeoutMs: cfg.response_timeout ?? clusterCfg.response_timeout,
    upgrades: cfg.upgrades === undefined ? null : new Set(cfg.upgrades),
    upgradeIdleTimeoutMs: cfg.upgrade_idle_timeout,
    retry: cfg.retry === undefined ? null : new RetryPolicy(cfg.retry),
    rateLimit: rl === undefined ? null : new RouteRateLimit(rl, name, stores.rateLimit(rl.store)),
    idempotency:
      idem === undefined
        ? null
        : new RouteIdempotency(
            idem,
            name,
            stores.idempotency(idem.store, {
              ttlMs: idem.ttl,
              lockTtlMs: idem.lock_ttl,
              maxBodyBytes: idem.max_body_bytes,
              maxKeys: idem.max_keys,
            }),
          ),
    cache: cache === undefined ? null : new RouteCache(zones.get(cache.zone), cache, via),
  };
}

export function clusterNamed(listener: string, name: string, clusters: ReadonlyMap<string, Cluster>): Cluster {
  const c = clusters.get(name);
  if (c === undefined) throw new Error(`listener ${listener}: unknown cluster ${name}`);
  return c;
}

/** A tcp listener's preamble (PROXY header, ClientHello) and sni routes; rebuilt on reload with the clusters. */
export function tcpEdge(l: TcpListenerConfig, clusters: ReadonlyMap<string, Cluster>): TcpEdge {
  const pp = l.proxy_protocol;
  const routes = l.sni_routes;
  const sni =
    routes === undefined
      ? null
      : new SniRouter<Cluster>(
          routes,
          (name) => clusterNamed(l.name, name, clusters),
          l.cluster === undefined ? null : clusterNamed(l.name, l.cluster, clusters),
        );
  const preamble: PreambleOptions | null =
    pp === undefined && routes === undefined
      ? null
      : {
          proxyProtocol: pp === undefined ? null : { trusted: new CidrSet(pp.trusted), timeoutMs: pp.timeout },
          sni: routes === undefined ? null : { timeoutMs: l.sni_timeout, maxBytes: l.max_client_hello_bytes },
        };
  return { preamble, sni };
}

/** A listener's connection limits, from either listener map. */
export function gateLimits(l: {
  max_connections: number;
  max_connections_per_client: number;
  accept_queue_size: number;
  accept_queue_timeout: number;
}): GateLimits {
  return {
    maxConnections: l.max_connections,
    maxPerClient: l.max_connections_per_client,
    queueSize: l.accept_queue_size,
    queueTimeoutMs: l.accept_queue_timeout,
  };
}
