/**
 * A route's `rate_limit:` (memory store, in process): a token bucket per client, header value or
 * route; beyond it 429 `rate_limited` with Retry-After, RateLimit-Policy and RateLimit, and nothing
 * forwarded. A rate of 1/h keeps refills out of the test's timing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

async function setup(t: { after(fn: () => unknown): void }, rateLimit: Record<string, unknown>) {
  let seen = 0;
  const b = await httpBackend((_req, res) => {
    seen++;
    res.end('ok');
  });
  t.after(() => b.close());
  const p = await startProxy({
    upstreams: [b.addr],
    routes: [{ name: 'api', cluster: 'up', rate_limit: { rate: '1/h', ...rateLimit } }],
  });
  t.after(() => p.close());
  return { p, seen: () => seen };
}

const get = (p: TestProxy, headers: Record<string, string> = {}) => fetch(`${p.url}/x`, { headers });

describe('rate limits', () => {
  it('per client: the burst passes, the next gets 429 with Retry-After and the RateLimit fields', async (t) => {
    const { p, seen } = await setup(t, { burst: 3 });
    for (let i = 0; i < 3; i++) assert.equal((await get(p)).status, 200);
    const refused = await get(p);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('muxgate-error'), 'rate_limited');
    // One token comes back per 3,600 s; the window is the time to refill the whole burst.
    assert.equal(refused.headers.get('retry-after'), '3600');
    assert.equal(refused.headers.get('ratelimit-policy'), '"api";q=3;w=10800');
    assert.equal(refused.headers.get('ratelimit'), '"api";r=0;t=3600');
    assert.equal(seen(), 3, 'the refused request was not forwarded');
    assert.equal(p.server.snapshot().listeners[0]!.error_codes.rate_limited, 1);
  });

  it('key header:x-api-key: each key has its own bucket; requests without it fall back to the client', async (t) => {
    const { p, seen } = await setup(t, { burst: 1, key: 'header:x-api-key' });
    assert.equal((await get(p, { 'x-api-key': 'a' })).status, 200);
    assert.equal((await get(p, { 'x-api-key': 'a' })).status, 429);
    assert.equal((await get(p, { 'x-api-key': 'b' })).status, 200);
    assert.equal((await get(p)).status, 200);
    assert.equal((await get(p)).status, 429);
    assert.equal(seen(), 3);
  });

  it('key route: one bucket for every client', async (t) => {
    const { p } = await setup(t, { burst: 2, key: 'route' });
    assert.equal((await get(p, { 'x-api-key': 'a' })).status, 200);
    assert.equal((await get(p, { 'x-api-key': 'b' })).status, 200);
    assert.equal((await get(p, { 'x-api-key': 'c' })).status, 429);
  });
});
