/**
 * What the proxy asks a rate-limit store: take one token from the bucket of (rule, key) and say
 * whether the request may pass. Two stores answer it: the memory store (one process) and the Redis
 * store (buckets shared by every proxy instance).
 *
 * Sync or async: the memory store answers synchronously, so the hot path does not allocate and
 * await a promise per request. Each store carries a literal `sync` flag that narrows the type of
 * `take`, so callers branch once on the flag instead of testing `instanceof Promise` per call:
 *
 *   const d = store.sync ? store.take(key, rule) : await store.take(key, rule);
 */
import { NAME } from '../config/addresses.ts';

export interface RateRule {
  /** Names the policy in the RateLimit fields and, with the key, the bucket. */
  readonly name: string;
  /** Tokens added per second (> 0; fractions such as 0.5 allowed). */
  readonly rate: number;
  /** Capacity of the bucket: how many requests may pass at once after an idle period. */
  readonly burst: number;
}

export interface RateDecision {
  readonly allowed: boolean;
  /** Whole tokens left after this take. */
  readonly remaining: number;
  /**
   * Seconds until a take would be allowed again: 0 when it would be now, otherwise ceil and >= 1
   * (the Retry-After of a refusal).
   */
  readonly retryAfterSeconds: number;
  /** Seconds (ceil) until the bucket is full again; 0 when it is full. */
  readonly resetSeconds: number;
}

export interface SyncRateLimitStore {
  readonly sync: true;
  take(key: string, rule: RateRule): RateDecision;
  close(): Promise<void>;
}

export interface AsyncRateLimitStore {
  readonly sync: false;
  /** Rejects with a `RateLimitStoreUnavailable` when no decision could be had in time. */
  take(key: string, rule: RateRule): Promise<RateDecision>;
  close(): Promise<void>;
}

export type RateLimitStore = SyncRateLimitStore | AsyncRateLimitStore;

/** The code every store failure carries; whether to fail open or closed is the caller's choice. */
export const STORE_UNAVAILABLE = 'rate_limit_store_unavailable';

export class RateLimitStoreUnavailable extends Error {
  readonly code = STORE_UNAVAILABLE;
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RateLimitStoreUnavailable';
  }
}

/** Largest quota the RateLimit-Policy field can carry (a structured-field Integer has 15 digits). */
export const MAX_BURST = 999_999_999_999_999;

/**
 * Why a rule cannot be used, or null. The config loader calls this; the stores do not re-check
 * names per request. Names follow the config's NAME so they need no escaping in a header and
 * cannot contain the ':' that separates name and key in a bucket id.
 */
export function ruleProblem(rule: RateRule): string | null {
  if (!NAME.test(rule.name)) return `rule name ${JSON.stringify(rule.name)} must be made of a-z, 0-9, _ and -`;
  if (!(Number.isFinite(rule.rate) && rule.rate > 0)) return `rule ${rule.name}: rate must be a number > 0`;
  if (!(Number.isInteger(rule.burst) && rule.burst >= 1 && rule.burst <= MAX_BURST))
    return `rule ${rule.name}: burst must be an integer 1-${MAX_BURST}`;
  return null;
}

/** The bucket of `key` under `rule`: one per (rule, key), so one client key may sit under several rules. */
export function bucketId(key: string, rule: RateRule): string {
  return `${rule.name}:${key}`;
}
