import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterConfig, RouteConfig } from '../config/schema.ts';
import type { AdmissionStores } from '../admission/admission-stores.ts';
import { RouteIdempotency } from '../admission/route-idempotency.ts';
import { RouteRateLimit } from '../admission/route-rate-limit.ts';
import { RetryPolicy } from '../router/retry-policy.ts';
import type { HeaderMatch, PathMatch, Route } from '../router/route.ts';

/** Compiles configured routes: host patterns split into exact names and suffixes, regexes built once. */
export function buildRoute(
  cfg: RouteConfig,
  index: number,
  clusters: ReadonlyMap<string, Cluster>,
  clusterConfigs: Record<string, ClusterConfig>,
  stores: AdmissionStores,
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
  };
}
