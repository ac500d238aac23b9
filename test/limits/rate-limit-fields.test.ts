/**
 * The RateLimit, RateLimit-Policy and Retry-After values (draft-ietf-httpapi-ratelimit-headers-11),
 * and the rule check the config loader uses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policyItem, rateLimitItem, rateLimitPolicy, retryAfter } from '../../src/limits/rate-limit-fields.ts';
import { type RateDecision, type RateRule, ruleProblem } from '../../src/limits/rate-limit-store.ts';
import { fullBucket, take } from '../../src/limits/token-bucket.ts';

const api: RateRule = { name: 'api', rate: 10, burst: 100 };

describe('RateLimit fields', () => {
  it('describes each rule as a quota per window of ceil(burst / rate) seconds', () => {
    assert.equal(policyItem(api), '"api";q=100;w=10');
    assert.equal(policyItem({ name: 'slow', rate: 0.5, burst: 1 }), '"slow";q=1;w=2');
    assert.equal(policyItem({ name: 'odd', rate: 3, burst: 10 }), '"odd";q=10;w=4');
    assert.equal(policyItem({ name: 'fast', rate: 1000, burst: 5 }), '"fast";q=5;w=1');
    assert.equal(
      rateLimitPolicy([api, { name: 'login', rate: 1 / 60, burst: 5 }]),
      '"api";q=100;w=10, "login";q=5;w=300',
    );
  });

  it('reports what is left and for how long', () => {
    const s = fullBucket(100, 0);
    const d = take(s, 0, 10, 100);
    assert.equal(rateLimitItem(api, d), '"api";r=99;t=1');
    for (let i = 0; i < 99; i++) take(s, 0, 10, 100);
    const refused = take(s, 0, 10, 100);
    assert.equal(refused.allowed, false);
    // On a refusal t is the Retry-After (1 s), not the 10 s until full: Retry-After must not end
    // before the effective window.
    assert.equal(rateLimitItem(api, refused), '"api";r=0;t=1');
    assert.equal(retryAfter([refused]), '1');
    assert.equal(retryAfter([d]), null);
  });

  it('gives the longest wait when several rules refuse', () => {
    const ok: RateDecision = { allowed: true, remaining: 3, retryAfterSeconds: 0, resetSeconds: 4 };
    const short: RateDecision = { allowed: false, remaining: 0, retryAfterSeconds: 2, resetSeconds: 9 };
    const long: RateDecision = { allowed: false, remaining: 0, retryAfterSeconds: 30, resetSeconds: 60 };
    assert.equal(retryAfter([ok, short, long]), '30');
    assert.equal(retryAfter([]), null);
  });

  it('writes names as structured-field strings, escaping quotes and refusing control characters', () => {
    const d: RateDecision = { allowed: true, remaining: 1, retryAfterSeconds: 0, resetSeconds: 1 };
    assert.equal(rateLimitItem({ name: 'a "b" \\c', rate: 1, burst: 2 }, d), '"a \\"b\\" \\\\c";r=1;t=1');
    assert.throws(() => rateLimitItem({ name: 'a\nb', rate: 1, burst: 2 }, d), TypeError);
    assert.throws(() => policyItem({ name: 'é', rate: 1, burst: 2 }), TypeError);
  });

  it('keeps integers within the 15 digits of a structured-field Integer', () => {
    assert.equal(
      policyItem({ name: 'huge', rate: 1e-9, burst: 1e15 - 1 }),
      '"huge";q=999999999999999;w=999999999999999',
    );
  });
});

describe('ruleProblem', () => {
  it('accepts config names, positive rates and whole bursts', () => {
    assert.equal(ruleProblem(api), null);
    assert.equal(ruleProblem({ name: 'per-ip_2', rate: 0.5, burst: 1 }), null);
  });

  it('names what is wrong', () => {
    assert.match(ruleProblem({ name: 'a:b', rate: 1, burst: 1 }) ?? '', /a-z, 0-9/);
    assert.match(ruleProblem({ name: '', rate: 1, burst: 1 }) ?? '', /a-z, 0-9/);
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      assert.match(ruleProblem({ name: 'r', rate, burst: 1 }) ?? '', /rate must be/, `rate ${rate}`);
    for (const burst of [0, 1.5, 1e16, Number.NaN])
      assert.match(ruleProblem({ name: 'r', rate: 1, burst }) ?? '', /burst must be/, `burst ${burst}`);
  });
});
