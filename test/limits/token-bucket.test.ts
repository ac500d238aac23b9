/**
 * The token-bucket arithmetic on an explicit clock: a burst then refusals, refill over time, exact
 * Retry-After and reset values, fractional rates, a clock that goes backwards, huge idle gaps,
 * invalid parameters, and random sequences checked against the promises the decision makes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BucketState, fullBucket, msUntilFull, take } from '../../src/limits/token-bucket.ts';
import { prng } from '../helpers/prng.ts';

describe('token bucket', () => {
  it('passes a burst, then refuses until a token is back', () => {
    const s = fullBucket(3, 0);
    assert.deepEqual(take(s, 0, 1, 3), { allowed: true, remaining: 2, retryAfterSeconds: 0, resetSeconds: 1 });
    assert.deepEqual(take(s, 0, 1, 3), { allowed: true, remaining: 1, retryAfterSeconds: 0, resetSeconds: 2 });
    // The last token: allowed, but the next take would have to wait a second.
    assert.deepEqual(take(s, 0, 1, 3), { allowed: true, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    assert.deepEqual(take(s, 0, 1, 3), { allowed: false, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    assert.deepEqual(take(s, 999, 1, 3), { allowed: false, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    assert.deepEqual(take(s, 1000, 1, 3), { allowed: true, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    assert.equal(take(s, 1000, 1, 3).allowed, false);
  });

  it('refills at the rate and never beyond the burst', () => {
    const s = fullBucket(10, 0);
    for (let i = 0; i < 10; i++) assert.equal(take(s, 0, 2, 10).allowed, true);
    // 2.5 s at 2/s: 5 tokens, one taken.
    assert.deepEqual(take(s, 2500, 2, 10), { allowed: true, remaining: 4, retryAfterSeconds: 0, resetSeconds: 3 });
    // A huge idle gap fills the bucket exactly to the burst.
    assert.deepEqual(take(s, 1e15, 2, 10), { allowed: true, remaining: 9, retryAfterSeconds: 0, resetSeconds: 1 });
    assert.equal(s.tokens, 9);
    take(s, Number.MAX_VALUE, 2, 10);
    assert.equal(s.tokens, 9);
  });

  it('gives exact Retry-After values for slow and fractional rates', () => {
    // 0.5 token/s: an empty bucket needs 2 s for one token.
    const half = fullBucket(1, 0);
    assert.equal(take(half, 0, 0.5, 1).allowed, true);
    assert.deepEqual(take(half, 0, 0.5, 1), { allowed: false, remaining: 0, retryAfterSeconds: 2, resetSeconds: 2 });
    // 0.25 token after 0.5 s: 0.75 missing = 1.5 s, rounded up.
    assert.equal(take(half, 500, 0.5, 1).retryAfterSeconds, 2);
    // 0.75 token after 1.5 s: 0.5 s to go, still at least 1.
    assert.equal(take(half, 1500, 0.5, 1).retryAfterSeconds, 1);
    assert.equal(take(half, 2000, 0.5, 1).allowed, true);

    // 10 tokens/s: the next token is 0.1 s away, and Retry-After is never 0 on a refusal.
    const fast = fullBucket(1, 0);
    take(fast, 0, 10, 1);
    assert.deepEqual(take(fast, 0, 10, 1), { allowed: false, remaining: 0, retryAfterSeconds: 1, resetSeconds: 1 });

    // One token per 100 s, burst 2.
    const slow = fullBucket(2, 0);
    take(slow, 0, 0.01, 2);
    take(slow, 0, 0.01, 2);
    assert.deepEqual(take(slow, 0, 0.01, 2), {
      allowed: false,
      remaining: 0,
      retryAfterSeconds: 100,
      resetSeconds: 200,
    });
    assert.equal(take(slow, 99_999, 0.01, 2).allowed, false);
    assert.equal(take(slow, 100_000, 0.01, 2).allowed, true);

    // 1/3 token/s: 3 s give one whole token despite float rounding.
    const third = fullBucket(1, 0);
    take(third, 0, 1 / 3, 1);
    assert.equal(take(third, 0, 1 / 3, 1).retryAfterSeconds, 3);
    assert.equal(take(third, 3000, 1 / 3, 1).allowed, true);

    // 0.1 token/s credited in ten steps of a second sums to 0.9999999999999999 in floats: that is
    // one token, not a refusal with Retry-After: 1.
    const tenth = fullBucket(1, 0);
    take(tenth, 0, 0.1, 1);
    for (let ms = 1000; ms < 10_000; ms += 1000) assert.equal(take(tenth, ms, 0.1, 1).allowed, false);
    assert.deepEqual(take(tenth, 10_000, 0.1, 1), {
      allowed: true,
      remaining: 0,
      retryAfterSeconds: 10,
      resetSeconds: 10,
    });
  });

  it('treats a clock going backwards as no elapsed time, and credits the interval once', () => {
    const s = fullBucket(2, 10_000);
    take(s, 10_000, 1, 2);
    take(s, 10_000, 1, 2);
    // Back 5 s: nothing refills, nothing breaks.
    assert.deepEqual(take(s, 5_000, 1, 2), { allowed: false, remaining: 0, retryAfterSeconds: 1, resetSeconds: 2 });
    assert.equal(s.at, 10_000);
    assert.equal(s.tokens, 0);
    // Forward again: only the time since the latest reading counts (0.5 s, not 5.5 s).
    assert.equal(take(s, 10_500, 1, 2).allowed, false);
    assert.equal(s.tokens, 0.5);
    assert.equal(take(s, 11_000, 1, 2).allowed, true);
    // The bucket expires when full, measured from its own (later) reading.
    assert.equal(msUntilFull(s, 11_000, 1, 2), 2000);
    assert.equal(msUntilFull({ tokens: 1, at: 12_000 }, 11_000, 1, 2), 2000);
    assert.equal(msUntilFull({ tokens: 2, at: 0 }, 0, 1, 2), 0);
  });

  it('clamps a bucket stored under a larger burst', () => {
    const s: BucketState = { tokens: 50, at: 0 };
    assert.deepEqual(take(s, 0, 1, 5), { allowed: true, remaining: 4, retryAfterSeconds: 0, resetSeconds: 1 });
  });

  it('takes costs other than 1, and cost 0 only looks', () => {
    const s = fullBucket(10, 0);
    assert.deepEqual(take(s, 0, 1, 10, 4), { allowed: true, remaining: 6, retryAfterSeconds: 0, resetSeconds: 4 });
    assert.deepEqual(take(s, 0, 1, 10, 4), { allowed: true, remaining: 2, retryAfterSeconds: 2, resetSeconds: 8 });
    assert.deepEqual(take(s, 0, 1, 10, 4), { allowed: false, remaining: 2, retryAfterSeconds: 2, resetSeconds: 8 });
    assert.deepEqual(take(s, 0, 1, 10, 0), { allowed: true, remaining: 2, retryAfterSeconds: 0, resetSeconds: 8 });
  });

  it('rejects a zero, negative or non-finite rate, a bad burst or cost, and a NaN clock', () => {
    const s = fullBucket(1, 0);
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      assert.throws(() => take(s, 0, rate, 1), RangeError, `rate ${rate}`);
    for (const burst of [0, -1, Number.NaN]) assert.throws(() => take(s, 0, 1, burst), RangeError, `burst ${burst}`);
    assert.throws(() => take(s, 0, 1, 1, 2), RangeError);
    assert.throws(() => take(s, 0, 1, 1, -1), RangeError);
    assert.throws(() => take(s, Number.NaN, 1, 1), RangeError);
    assert.deepEqual(s, { tokens: 1, at: 0 });
  });

  it('keeps its promises over random sequences', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = prng(seed);
      const rate = [0.1, 0.5, 1, 3, 1 / 3, 50][Math.floor(rnd() * 6)]!;
      const burst = 1 + Math.floor(rnd() * 20);
      const s = fullBucket(burst, 0);
      let now = 0;
      let allowed = 0;
      for (let i = 0; i < 200; i++) {
        now += Math.floor(rnd() * 3) === 0 ? Math.floor(rnd() * 5000) : 0;
        const d = take(s, now, rate, burst);
        if (d.allowed) allowed++;
        const where = `seed ${seed} step ${i}`;
        // Never more than the burst plus what the elapsed time refilled.
        assert.ok(allowed <= burst + (now * rate) / 1000 + 1e-6, where);
        assert.ok(Number.isInteger(d.remaining) && d.remaining >= 0, where);
        assert.ok(d.allowed ? d.remaining <= burst - 1 : d.remaining === 0, where);
        if (!d.allowed) assert.ok(d.retryAfterSeconds >= 1, where);
        // Waiting Retry-After is enough, and waiting the reset time fills the bucket (checked on a copy).
        if (d.retryAfterSeconds > 0)
          assert.equal(take({ ...s }, now + d.retryAfterSeconds * 1000, rate, burst).allowed, true, where);
        const full = { ...s };
        take(full, now + d.resetSeconds * 1000, rate, burst, 0);
        assert.ok(full.tokens >= burst - 1e-9, where);
        assert.ok(d.resetSeconds >= d.retryAfterSeconds, where);
      }
    }
  });
});
