import type { RateLimitConfig } from '../config/admission.ts';
import { type RequestHead, requestField } from '../http1/request-head.ts';
import { policyItem, rateLimitItem } from '../limits/rate-limit-fields.ts';
import type { RateDecision, RateLimitStore, RateRule } from '../limits/rate-limit-store.ts';

/**
 * A route's compiled `rate_limit:`: the bucket rule, whose bucket a request takes from, and the
 * fields a refusal carries (RateLimit-Policy is fixed per route, so it is built once).
 */
export class RouteRateLimit {
  readonly rule: RateRule;
  readonly store: RateLimitStore;
  readonly failOpen: boolean;
  /** null: the client address; '' : one bucket for the route; else a request header's value. */
  private readonly header: string | null;
  private readonly policy: string;

  constructor(cfg: RateLimitConfig, routeName: string, store: RateLimitStore) {
    const burst = cfg.burst ?? Math.max(1, Math.ceil(cfg.rate));
    this.rule = { name: cfg.name ?? routeName.toLowerCase().replace(/[^a-z0-9_-]/g, '_'), rate: cfg.rate, burst };
    this.store = store;
    this.failOpen = cfg.on_store_error === 'fail_open';
    this.header = cfg.key === 'client' ? null : cfg.key === 'route' ? '' : cfg.key.slice('header:'.length);
    this.policy = policyItem(this.rule);
  }

  /** The bucket key of a request (a header that is absent falls back to the client address). */
  keyOf(head: RequestHead, peer: string): string {
    const h = this.header;
    if (h === null) return `c:${peer}`;
    if (h === '') return 'r';
    const v = requestField(head, h);
    return v === undefined || v === '' ? `c:${peer}` : `h:${v}`;
  }

  /** The fields of a 429: Retry-After, RateLimit-Policy and RateLimit, flat as [name, value, ...]. */
  refusalFields(d: RateDecision): string[] {
    return [
      'retry-after',
      String(Math.max(1, d.retryAfterSeconds)),
      'ratelimit-policy',
      this.policy,
      'ratelimit',
      rateLimitItem(this.rule, d),
    ];
  }
}
