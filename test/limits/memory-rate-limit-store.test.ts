/**
 * The memory store on an injected clock: it answers synchronously, keeps one bucket per (rule, key),
 * holds at most maxKeys buckets (least recently used go first), and forgets a bucket once it would
 * be full again, which must be indistinguishable from keeping it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_MAX_KEYS, MemoryRateLimitStore } from '../../src/limits/memory-rate-limit-store.ts';
import type { RateRule } from '../../src/limits/rate-limit-store.ts';
import { fullBucket, take } from '../../src/limits/token-bucket.ts';

function clock(start = 1_000_000) {
  const c = { ms: start, now: () => c.ms };
  return c;
}

const rule: RateRule = { name: 'api', rate: 1, burst: 3 };

describe('MemoryRateLimitStore', () => {
  it('answers synchronously with the token-bucket arithmetic', () => {
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now });
    assert.equal(store.sync, true);
    const first = store.take('a', rule);
    assert.ok(!(first instanceof Promise));
    // The same sequence on a bare bucket gives the same decisions.
    const s = fullBucket(3, c.ms);
    assert.deepEqual(first, take(s, c.ms, 1, 3));
    for (const dt of [0, 0, 0, 400, 700, 5000, 0]) {
      c.ms += dt;
      assert.deepEqual(store.take('a', rule), take(s, c.ms, 1, 3), `after +${dt} ms`);
    }
  });

  it('keeps keys and rules independent', () => {
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now });
    for (let i = 0; i < 3; i++) assert.equal(store.take('a', rule).allowed, true);
    assert.equal(store.take('a', rule).allowed, false);
    assert.deepEqual(store.take('b', rule), { allowed: true, remaining: 2, retryAfterSeconds: 0, resetSeconds: 1 });
    // The same key under another rule has its own bucket.
    const other: RateRule = { name: 'login', rate: 1, burst: 3 };
    assert.equal(store.take('a', other).remaining, 2);
    assert.equal(store.take('a', rule).allowed, false);
  });

  it('holds at most maxKeys buckets, forgetting the least recently used', () => {
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now, maxKeys: 3 });
    for (let i = 0; i < 3; i++) store.take('old', rule);
    assert.equal(store.take('old', rule).allowed, false);
    store.take('k1', rule);
    store.take('k2', rule);
    // 'old' is used again, so k1 is now the least recently used.
    store.take('old', rule);
    store.take('k3', rule);
    assert.equal(store.size, 3);
    assert.equal(store.holds('k1', rule), false);
    assert.equal(store.holds('old', rule), true);
    for (let i = 0; i < 1000; i++) store.take(`flood-${i}`, rule);
    assert.equal(store.size, 3);
    // An evicted key comes back with a full bucket (the documented cost of a too-small maxKeys).
    assert.equal(store.take('old', rule).remaining, 2);
  });

  it('defaults to 100,000 keys', () => {
    assert.equal(DEFAULT_MAX_KEYS, 100_000);
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now });
    for (let i = 0; i < DEFAULT_MAX_KEYS + 10; i++) store.take(`k${i}`, rule);
    assert.equal(store.size, DEFAULT_MAX_KEYS);
    assert.equal(store.holds('k0', rule), false);
    assert.equal(store.holds(`k${DEFAULT_MAX_KEYS + 9}`, rule), true);
  });

  it('forgets a bucket once it would be full again, and not before', () => {
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now });
    const slow: RateRule = { name: 'slow', rate: 0.5, burst: 2 };
    store.take('a', slow);
    store.take('a', slow);
    assert.equal(store.take('a', slow).allowed, false);
    // Empty at 0.5/s: full again in 4 s.
    c.ms += 3999;
    assert.equal(store.holds('a', slow), true);
    c.ms += 2;
    assert.equal(store.holds('a', slow), false);
    assert.deepEqual(store.take('a', slow), { allowed: true, remaining: 1, retryAfterSeconds: 0, resetSeconds: 2 });
    // A fast bucket is forgotten as fast: 1 ms to refill one token at 1000/s.
    const fast: RateRule = { name: 'fast', rate: 1000, burst: 1 };
    store.take('b', fast);
    assert.equal(store.holds('b', fast), true);
    c.ms += 2;
    assert.equal(store.holds('b', fast), false);
  });

  it('survives its clock going backwards', () => {
    const c = clock();
    const store = new MemoryRateLimitStore({ now: c.now });
    for (let i = 0; i < 3; i++) store.take('a', rule);
    c.ms -= 60_000;
    assert.equal(store.take('a', rule).allowed, false);
    assert.equal(store.holds('a', rule), true);
    // Back at the original time plus 1 s: one token, not 61.
    c.ms += 61_000;
    assert.deepEqual(store.take('a', rule), { allowed: true, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    assert.equal(store.take('a', rule).allowed, false);
  });

  it('rejects a bad maxKeys and forgets everything on close', async () => {
    assert.throws(() => new MemoryRateLimitStore({ maxKeys: 0 }), RangeError);
    assert.throws(() => new MemoryRateLimitStore({ maxKeys: 1.5 }), RangeError);
    const store = new MemoryRateLimitStore();
    store.take('a', rule);
    await store.close();
    assert.equal(store.size, 0);
  });
});
