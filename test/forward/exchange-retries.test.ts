/**
 * ExchangeRetries on its own: the counts it keeps in the route's retry budget and the cluster (they must
 * come back to zero however the exchange ends), the order in which it refuses a retry, and the body it
 * keeps for a replay. The end-to-end behaviour is in test/e2e/retries.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cluster } from '../../src/cluster/cluster.ts';
import { retry } from '../../src/config/retry.ts';
import { ExchangeRetries } from '../../src/forward/exchange-retries.ts';
import { RetryPolicy } from '../../src/router/retry-policy.ts';

/** The part of a Cluster that ExchangeRetries reads and writes, with its max_retries breaker. */
function clusterWith(maxRetries: number) {
  const c = {
    retries: 0,
    retriesActive: 0,
    trips: 0,
    admitRetry(): boolean {
      if (maxRetries === 0 || c.retriesActive < maxRetries) return true;
      c.trips++;
      return false;
    },
  };
  return c;
}

function policy(cfg: Record<string, unknown> = {}): RetryPolicy {
  return new RetryPolicy(retry.parse(cfg));
}

describe('ExchangeRetries', () => {
  it('counts the request in the budget until leave(), and a retrying one in both retry counts; leave() twice is harmless', () => {
    const p = policy();
    const c = clusterWith(0);
    const r = new ExchangeRetries(p, c as unknown as Cluster, true, 0);
    assert.equal(p.requestsActive, 1);
    r.count();
    assert.deepEqual([r.attempt, c.retries, p.retriesActive, c.retriesActive], [2, 1, 1, 1]);
    r.count(); // a second retry of the same exchange: one more try, still one exchange retrying
    assert.deepEqual([r.attempt, c.retries, p.retriesActive, c.retriesActive], [3, 2, 1, 1]);
    r.leave();
    r.leave();
    assert.deepEqual([p.requestsActive, p.retriesActive, c.retriesActive], [0, 0, 0]);
  });

  it('refuses in order: attempts, then what the request allows, then the budget, then the breaker', () => {
    const p = policy({ attempts: 2, budget: { ratio: 0, min_retries: 0 } });
    const c = clusterWith(0);
    const r = new ExchangeRetries(p, c as unknown as Cluster, true, 0);
    assert.equal(r.blocker('reset', false, true), 'not_idempotent');
    assert.equal(r.blocker('reset', true, false), 'body_incomplete');
    // a failed connect sent nothing: the method does not matter, only the budget does
    assert.equal(r.blocker('connect-failure', false, false), 'budget');
    r.count();
    assert.equal(r.blocker('connect-failure', true, true), 'attempts');
    r.leave();

    const open = policy({ budget: { ratio: 1, min_retries: 5 } });
    const full = clusterWith(1);
    full.retriesActive = 1; // another exchange of the cluster is retrying already
    const r2 = new ExchangeRetries(open, full as unknown as Cluster, true, 0);
    assert.equal(r2.blocker('reset', true, true), 'circuit_open');
    assert.equal(full.trips, 1);
    r2.leave();
  });

  it('an exchange already retrying is not held back by the budget or the breaker it counts in', () => {
    const p = policy({ attempts: 5, budget: { ratio: 0, min_retries: 1 } });
    const c = clusterWith(1);
    const r = new ExchangeRetries(p, c as unknown as Cluster, true, 0);
    assert.equal(r.blocker('reset', true, true), null);
    r.count();
    // the budget (1) and max_retries (1) are now full, with this exchange's own retry
    assert.equal(r.blocker('reset', true, true), null);
    const other = new ExchangeRetries(p, c as unknown as Cluster, true, 0);
    assert.equal(other.blocker('reset', true, true), 'budget');
    other.leave();
    r.leave();
  });

  it('keeps copies of the body up to retry_buffer_bytes, then none (body_too_large)', () => {
    const p = policy({ retry_buffer_bytes: 10 });
    const c = clusterWith(0);
    const r = new ExchangeRetries(p, c as unknown as Cluster, false, -1);
    const shared = Buffer.from('hello');
    r.keep(shared);
    shared.fill(0x78); // the caller's buffer is reused: the kept piece must not change
    r.keep(Buffer.from('abc'));
    assert.equal(Buffer.concat(r.replayBody()!).toString(), 'helloabc');
    assert.equal(r.replayLength, 8);
    assert.equal(r.blocker('reset', true, true), null);
    r.keep(Buffer.from('xyz')); // 11 bytes: over the limit, nothing is kept any more
    assert.equal(r.replayBody(), null);
    assert.equal(r.blocker('reset', true, true), 'body_too_large');
    r.leave();

    // a Content-Length over the limit is known at once
    const big = new ExchangeRetries(p, c as unknown as Cluster, false, 11);
    assert.equal(big.blocker('reset', true, true), 'body_too_large');
    assert.equal(big.blocker('connect-failure', true, true), null);
    big.leave();
    assert.equal(p.requestsActive, 0);
  });

  it('leave() cancels a pending backoff', async () => {
    const p = policy({ backoff: { base: '20ms', max: '20ms' } });
    const r = new ExchangeRetries(p, clusterWith(0) as unknown as Cluster, true, 0);
    let ran = false;
    r.count();
    r.afterBackoff(() => {
      ran = true;
    });
    r.leave();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(ran, false);
  });
});
