/**
 * The limits both stores share (config `idempotency:` of a route: `ttl`, `lock_ttl`, `max_body_bytes`).
 */
export interface StoreLimits {
  /** How long a completed response is replayed (`ttl`). */
  ttlMs: number;
  /**
   * How long a lock lasts without `complete`/`release` (`lock_ttl`): a crashed proxy must not hold a
   * key forever. It should outlast the route's response timeout, or a slow first request loses its
   * lock and a retry runs alongside it.
   */
  lockTtlMs: number;
  /** The largest body a store keeps (`max_body_bytes`); the caller checks first and releases instead. */
  maxBodyBytes: number;
}

export const DEFAULT_STORE_LIMITS: Readonly<StoreLimits> = {
  ttlMs: 24 * 3_600_000,
  lockTtlMs: 60_000,
  maxBodyBytes: 1024 * 1024,
};

/** Fills in the defaults and rejects nonsense early, at construction rather than on a request. */
export function storeLimits(given: Partial<StoreLimits>): StoreLimits {
  const limits: StoreLimits = {
    ttlMs: given.ttlMs ?? DEFAULT_STORE_LIMITS.ttlMs,
    lockTtlMs: given.lockTtlMs ?? DEFAULT_STORE_LIMITS.lockTtlMs,
    maxBodyBytes: given.maxBodyBytes ?? DEFAULT_STORE_LIMITS.maxBodyBytes,
  };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  }
  return limits;
}
