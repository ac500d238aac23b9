import type { RetryConfig, RetryOn } from '../config/retry.ts';

/** Why a retry that was wanted did not happen (the access log's `retry_skipped`, /stats, metrics). */
export type RetrySkip =
  | 'attempts'
  | 'not_idempotent'
  | 'body_incomplete'
  | 'body_too_large'
  | 'budget'
  | 'circuit_open';

/**
 * A route's compiled `retry:` map, and its retry budget: retries in flight are held to a share of the
 * route's requests in flight (with a floor), so that an upstream in trouble gets at most that much
 * extra load (Envoy's retry budgets, Finagle's RetryBudget).
 */
export class RetryPolicy {
  readonly attempts: number;
  private readonly on: ReadonlySet<RetryOn>;
  /** Upstream statuses that are retried (gateway-error adds 502, 503, 504). */
  readonly statuses: ReadonlySet<number>;
  /** 0: the route's response timeout. */
  readonly perTryTimeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly bufferBytes: number;
  private readonly budgetRatio: number;
  private readonly budgetMin: number;
  /** Requests of this route in flight, and retries among them (an exchange counts as retrying from its first retry on). */
  requestsActive = 0;
  retriesActive = 0;

  constructor(cfg: RetryConfig) {
    this.attempts = cfg.attempts;
    this.on = new Set(cfg.on);
    const statuses = new Set(cfg.statuses);
    if (this.on.has('gateway-error')) for (const s of [502, 503, 504]) statuses.add(s);
    this.statuses = statuses;
    this.perTryTimeoutMs = cfg.per_try_timeout ?? 0;
    this.backoffBaseMs = cfg.backoff.base;
    this.backoffMaxMs = cfg.backoff.max;
    this.bufferBytes = cfg.retry_buffer_bytes;
    this.budgetRatio = cfg.budget.ratio;
    this.budgetMin = cfg.budget.min_retries;
  }

  retries(on: RetryOn): boolean {
    return this.on.has(on);
  }

  /** One more retry fits the budget (the caller counts it in `retriesActive` when it goes ahead). */
  budgetAllows(): boolean {
    return this.retriesActive < Math.max(this.budgetMin, this.budgetRatio * this.requestsActive);
  }

  /** Full jitter: a random delay up to base × 2^(retry − 1), capped (retry counts from 1). */
  backoffMs(retry: number): number {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (retry - 1));
    return Math.random() * ceiling;
  }
}
