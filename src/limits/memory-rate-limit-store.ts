/**
 * Token buckets in this process's memory, for a single proxy instance (or per-instance limits).
 *
 * The buckets sit in an LRU bounded by `maxKeys`, and each entry expires when its bucket would be
 * full again: a forgotten bucket and a full one are the same, so an idle key costs nothing after
 * that. When more than `maxKeys` keys are active at once, the least recently used bucket is
 * forgotten early and its key starts again with a full bucket; size `maxKeys` above the number of
 * clients expected to be limited at the same time.
 */
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { bucketId, type RateDecision, type RateRule, type SyncRateLimitStore } from './rate-limit-store.ts';
import { type BucketState, fullBucket, msUntilFull, take } from './token-bucket.ts';

export interface MemoryRateLimitStoreOptions {
  /** Most buckets kept at once (default 100,000). */
  maxKeys?: number;
  /** Milliseconds; only differences matter. Default `performance.now()` (monotonic). Tests inject one. */
  now?: () => number;
}

export const DEFAULT_MAX_KEYS = 100_000;

export class MemoryRateLimitStore implements SyncRateLimitStore {
  readonly sync = true;
  private readonly buckets: LRUCache<string, BucketState>;
  private readonly now: () => number;

  constructor(opts: MemoryRateLimitStoreOptions = {}) {
    const maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) throw new RangeError(`maxKeys must be an integer >= 1`);
    this.now = opts.now ?? (() => performance.now());
    this.buckets = new LRUCache<string, BucketState>({
      max: maxKeys,
      // The cache reads the same clock as the buckets, so expiry and refill agree (and tests can
      // move both). ttlResolution 0: read it on every check instead of caching the reading behind
      // a timer that lru-cache would re-arm every millisecond.
      perf: { now: this.now },
      ttlResolution: 0,
    });
  }

  take(key: string, rule: RateRule): RateDecision {
    const id = bucketId(key, rule);
    const now = this.now();
    const state = this.buckets.get(id) ?? fullBucket(rule.burst, now);
    const decision = take(state, now, rule.rate, rule.burst);
    const ttl = msUntilFull(state, now, rule.rate, rule.burst);
    // ttl 0 would mean "never expires" to lru-cache; a full bucket is simply not stored.
    if (ttl > 0) this.buckets.set(id, state, { ttl });
    else this.buckets.delete(id);
    return decision;
  }

  /** Buckets held right now, expired ones included until they are next looked at or evicted. */
  get size(): number {
    return this.buckets.size;
  }

  /** Whether the bucket of (key, rule) is held and not expired; for tests and diagnostics. */
  holds(key: string, rule: RateRule): boolean {
    return this.buckets.has(bucketId(key, rule));
  }

  async close(): Promise<void> {
    this.buckets.clear();
  }
}
