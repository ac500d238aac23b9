/**
 * The token-bucket arithmetic, with no storage and no clock of its own: a bucket holds up to `burst`
 * tokens and gains `rate` tokens per second; a request takes `cost` tokens or is refused.
 *
 * The Redis store runs the same arithmetic in Lua (redis-rate-limit-store.ts); the two must apply
 * the same operations in the same order so that both stores give the same answers.
 */
import type { RateDecision } from './rate-limit-store.ts';

export interface BucketState {
  /** Tokens in the bucket at `at`; fractional. */
  tokens: number;
  /** Milliseconds, on whatever clock the caller uses for `now`. */
  at: number;
}

/**
 * Tolerance for float rounding: ten refills of 0.1 token sum to 0.9999999999999999, which must count
 * as one whole token, not a refusal with Retry-After: 1.
 */
const EPSILON = 1e-9;

/** A bucket never seen before, or idle long enough to be full. */
export function fullBucket(burst: number, now: number): BucketState {
  return { tokens: burst, at: now };
}

/**
 * Refills `state` up to `now`, then takes `cost` tokens if there are enough. `state` is updated in
 * place (no allocation per request beyond the decision).
 *
 * A clock that went backwards counts as no elapsed time, and `at` keeps the later reading, so the
 * interval is not credited twice when the clock comes forward again. A huge idle gap simply fills
 * the bucket (Infinity * rate is capped at `burst` as well).
 */
export function take(state: BucketState, now: number, rate: number, burst: number, cost = 1): RateDecision {
  // The caller validates rules (ruleProblem); these guard against NaN creeping into stored state.
  if (!(rate > 0 && rate < Infinity)) throw new RangeError(`token bucket rate must be > 0, got ${rate}`);
  if (!(burst > 0 && burst < Infinity)) throw new RangeError(`token bucket burst must be > 0, got ${burst}`);
  if (!(cost >= 0 && cost <= burst)) throw new RangeError(`token bucket cost must be 0-${burst}, got ${cost}`);
  if (Number.isNaN(now)) throw new RangeError('token bucket clock reading is NaN');

  let tokens = state.tokens;
  if (now > state.at) {
    tokens = Math.min(burst, tokens + ((now - state.at) * rate) / 1000);
    state.at = now;
  } else if (tokens > burst) {
    // The rule's burst shrank since the bucket was stored.
    tokens = burst;
  }
  const allowed = tokens + EPSILON >= cost;
  if (allowed) tokens = Math.max(0, tokens - cost);
  state.tokens = tokens;

  const missing = cost - tokens;
  const retryAfterSeconds = missing <= EPSILON ? 0 : Math.max(1, Math.ceil(missing / rate));
  const empty = burst - tokens;
  const resetSeconds = empty <= EPSILON ? 0 : Math.ceil(empty / rate);
  return { allowed, remaining: Math.floor(tokens + EPSILON), retryAfterSeconds, resetSeconds };
}

/**
 * Milliseconds from `now` until the bucket is full again: after that, forgetting the bucket is the
 * same as keeping it, so stores expire it then. 0 when it is already full.
 */
export function msUntilFull(state: BucketState, now: number, rate: number, burst: number): number {
  const empty = burst - state.tokens;
  if (empty <= EPSILON) return 0;
  // `at` may be ahead of `now` after the clock went backwards; the bucket fills from `at`.
  return Math.ceil(Math.max(0, state.at - now) + (empty * 1000) / rate);
}
