import type { Cluster } from '../cluster/cluster.ts';
import type { RetryPolicy } from './retry-policy.ts';
import type { RouteIdempotency } from '../admission/route-idempotency.ts';
import type { RouteRateLimit } from '../admission/route-rate-limit.ts';
import type { RouteCache } from '../cache/route-cache.ts';

export type PathMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'regex'; re: RegExp };

export interface HeaderMatch {
  name: string;
  exact?: string | undefined;
  regex?: RegExp | undefined;
  present?: boolean | undefined;
}

/** A compiled route: matchers plus what to do with a match. */
export interface Route {
  name: string;
  /** null = any host. Exact names, and suffixes from "*.example.com" (stored as ".example.com"). */
  hostsExact: Set<string> | null;
  hostSuffixes: string[];
  path: PathMatch | null;
  methods: Set<string> | null;
  headers: HeaderMatch[];
  cluster: Cluster;
  hostRewrite: string | undefined;
  prefixRewrite: string | undefined;
  /** Overrides the cluster's response timeout when set. */
  responseTimeoutMs: number;
  /** Upgrade tokens passed through ("websocket", ...), null = none: Upgrade is dropped. */
  upgrades: ReadonlySet<string> | null;
  /** An upgraded connection with no byte either way for this long is closed. */
  upgradeIdleTimeoutMs: number;
  /** `retry:`; null = only the retries that are always safe (a connect that failed, a refused stream, a keep-alive race). */
  retry: RetryPolicy | null;
  /** `rate_limit:`, checked before anything else; null = none. */
  rateLimit: RouteRateLimit | null;
  /** `idempotency:`: requests with an Idempotency-Key run once, repeats get the first answer; null = off. */
  idempotency: RouteIdempotency | null;
  /** `cache:`: GET and HEAD answered from a zone, misses coalesced and stored; null = off. */
  cache: RouteCache | null;
}
