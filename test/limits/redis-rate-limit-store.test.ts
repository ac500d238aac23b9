/**
 * The Redis store against a real redis-server on a unix socket (test/helpers/redis.ts): two stores
 * (two connections, as two proxy processes) share one bucket without ever over-admitting, answers
 * match the memory store's, keys carry the prefix and expire when full, the script survives SCRIPT
 * FLUSH, and outages (server stopped, killed, paused, absent at start) make takes fail fast with
 * rate_limit_store_unavailable, report 'down' once and 'up' once, and heal without a new store.
 *
 * Timing: no assertion depends on a tight bound. Fail-fast is "settles within 3 s" (the command
 * timeout is 200 ms), waits for state changes are bounded at 10 s, and the over-admission bound
 * uses the client-measured elapsed time, which can only exceed the server's.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it, type TestContext } from 'node:test';
import { createClient } from 'redis';
import { MemoryRateLimitStore } from '../../src/limits/memory-rate-limit-store.ts';
import {
  type RateDecision,
  RateLimitStoreUnavailable,
  type RateRule,
  STORE_UNAVAILABLE,
} from '../../src/limits/rate-limit-store.ts';
import {
  BUCKET_SCRIPT_SHA,
  type RedisRateLimitStoreOptions,
  RedisRateLimitStore,
  redisTarget,
} from '../../src/limits/redis-rate-limit-store.ts';
import { type RedisServer, skipWithoutRedis, startRedis } from '../helpers/redis.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const SETTLE_MS = 3000;
const WAIT = { timeoutMs: 10_000 };

async function server(t: TestContext): Promise<RedisServer> {
  const redis = await startRedis();
  t.after(() => redis.close());
  return redis;
}

/** A store closed after the test; waits until it is connected unless told not to. */
async function store(
  t: TestContext,
  redis: RedisServer,
  opts: Partial<RedisRateLimitStoreOptions> = {},
  connected = true,
): Promise<RedisRateLimitStore> {
  const s = new RedisRateLimitStore({ url: redis.url, reconnectMinMs: 20, reconnectMaxMs: 100, ...opts });
  t.after(() => s.close());
  if (connected) await waitUntil(() => s.state === 'up', 'the store is connected', WAIT);
  return s;
}

/** A plain client to look at what the store wrote. */
async function inspector(t: TestContext, redis: RedisServer) {
  const c = createClient({ socket: { path: redis.socketPath, tls: false } });
  c.on('error', () => {});
  await c.connect();
  t.after(() => c.destroy());
  return c;
}

/**
 * The rejection of `p`, checked to be the store's fail-fast error, and how long it took. A take
 * still pending after SETTLE_MS fails the test instead of hanging it.
 */
async function rejection(p: Promise<unknown>): Promise<{ err: RateLimitStoreUnavailable; ms: number }> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the take did not settle within ${SETTLE_MS} ms`)), SETTLE_MS);
  });
  const err = await Promise.race([
    p.then(
      (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
      (e: unknown) => e,
    ),
    hung,
  ]).finally(() => clearTimeout(timer));
  const ms = performance.now() - t0;
  assert.ok(err instanceof RateLimitStoreUnavailable, `unexpected error ${String(err)}`);
  assert.equal(err.code, STORE_UNAVAILABLE);
  assert.ok(ms < SETTLE_MS, `the take took ${ms} ms to fail`);
  return { err, ms };
}

/** Records state changes from now on. */
function record(s: RedisRateLimitStore): string[] {
  const seen: string[] = [];
  s.onStateChange((state) => seen.push(state));
  return seen;
}

describe('RedisRateLimitStore', { timeout: 60_000 }, () => {
  it('shares one bucket between two connections and never admits more than it refilled', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    // Generous timeouts: this test is about atomicity, not speed.
    const a = await store(t, redis, { commandTimeoutMs: 5000 });
    const b = await store(t, redis, { commandTimeoutMs: 5000 });
    const rule: RateRule = { name: 'shared', rate: 2, burst: 50 };
    const t0 = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).take('client-1', rule)),
    );
    const elapsedS = (performance.now() - t0) / 1000;
    const decisions = results.map((r) => {
      assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '');
      return (r as PromiseFulfilledResult<RateDecision>).value;
    });
    const allowed = decisions.filter((d) => d.allowed).length;
    // The bucket starts full, so the first 50 pass; beyond that only what 2/s refilled meanwhile.
    assert.ok(allowed >= rule.burst, `only ${allowed} allowed`);
    assert.ok(
      allowed <= rule.burst + Math.floor(rule.rate * elapsedS),
      `${allowed} allowed in ${elapsedS.toFixed(3)} s: more than ${rule.burst} + ${rule.rate}/s`,
    );
    for (const d of decisions.filter((d) => !d.allowed)) {
      assert.equal(d.remaining, 0);
      assert.ok(d.retryAfterSeconds >= 1);
    }
    // Both connections see the same empty bucket; another prefix is another namespace.
    const [fromA, fromB] = await Promise.all([a.take('client-1', rule), b.take('client-1', rule)]);
    assert.ok(!fromA.allowed && !fromB.allowed);
    const other = await store(t, redis, { prefix: 'other:' });
    assert.equal((await other.take('client-1', rule)).remaining, rule.burst - 1);
  });

  it('answers exactly like the memory store', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    const s = await store(t, redis, { commandTimeoutMs: 5000 });
    const memory = new MemoryRateLimitStore({ now: () => 0 });
    // Rates of at most 1/s: Redis's clock moves during the takes, but less than the one second that
    // could change a rounded-up value, since each rule's takes are sent in one batch.
    const rules: RateRule[] = [
      { name: 'a', rate: 1, burst: 1 },
      { name: 'b', rate: 0.5, burst: 3 },
      { name: 'c', rate: 1 / 3, burst: 2 },
      { name: 'd', rate: 0.001, burst: 10 },
    ];
    for (const rule of rules) {
      const n = rule.burst + 3;
      const fromRedis = await Promise.all(Array.from({ length: n }, () => s.take('k', rule)));
      const fromMemory = Array.from({ length: n }, () => memory.take('k', rule));
      assert.deepEqual(fromRedis, fromMemory, rule.name);
      assert.ok(fromRedis.some((d) => !d.allowed));
    }
  });

  it('keeps each bucket under the prefix, on Redis time, expiring when it would be full', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    const s = await store(t, redis);
    const c = await inspector(t, redis);
    const rule: RateRule = { name: 'api', rate: 0.01, burst: 5 };
    await s.take('203.0.113.7', rule);
    await s.take('203.0.113.7', rule);
    const key = 'muxgate:rl:api:203.0.113.7';
    assert.deepEqual(await c.keys('*'), [key]);
    // Three tokens left, two missing at 0.01/s: full again in 200 s.
    const pttl = await c.pTTL(key);
    assert.ok(pttl > 190_000 && pttl <= 200_000, `PTTL ${pttl}`);
    const fields = await c.hGetAll(key);
    // Plus what 0.01/s refilled between the two takes (0.05 would take 5 s).
    assert.ok(Number(fields.t) >= 3 && Number(fields.t) < 3.05, `tokens ${fields.t}`);
    const [sec, usec] = await c.time();
    const redisNowMs = Number(sec) * 1000 + Number(usec) / 1000;
    assert.ok(Math.abs(Number(fields.a) - redisNowMs) < 10_000, `stamped ${fields.a}, Redis time ${redisNowMs}`);
  });

  it('runs the script again after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    const s = await store(t, redis);
    const c = await inspector(t, redis);
    const rule: RateRule = { name: 'api', rate: 0.01, burst: 5 };
    assert.equal((await s.take('k', rule)).remaining, 4);
    await c.scriptFlush();
    assert.deepEqual(await c.scriptExists(BUCKET_SCRIPT_SHA), [0]);
    assert.equal((await s.take('k', rule)).remaining, 3);
    // EVAL cached the script again, so the next take is an EVALSHA hit.
    assert.deepEqual(await c.scriptExists(BUCKET_SCRIPT_SHA), [1]);
    assert.equal((await s.take('k', rule)).remaining, 2);
  });

  it('fails fast while Redis is stopped or killed, reports down and up once each, and heals', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    const s = await store(t, redis);
    const seen = record(s);
    const rule: RateRule = { name: 'api', rate: 100, burst: 100 };
    assert.equal((await s.take('k', rule)).allowed, true);

    for (const [how, down] of [
      ['stop', () => redis.stop()],
      ['kill', () => redis.kill()],
    ] as const) {
      await down();
      await waitUntil(() => s.state === 'down', `the store notices the ${how}`, WAIT);
      // Many takes and many failed reconnects (backoff capped at 100 ms) over ~0.5 s: one 'down'.
      for (let i = 0; i < 20; i++) {
        const { err } = await rejection(s.take('k', rule));
        assert.match(err.message, /not connected/);
        await sleep(25);
      }
      assert.equal(seen.filter((x) => x === 'down').length, how === 'stop' ? 1 : 2, `${how}: ${seen}`);
      await redis.start();
      await waitUntil(() => s.state === 'up', `the store reconnects after the ${how}`, WAIT);
      assert.equal((await s.take('k', rule)).allowed, true);
    }
    assert.deepEqual(seen, ['down', 'up', 'down', 'up']);
  });

  it('times out takes while Redis does not answer, and heals when it answers again', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    const s = await store(t, redis, { commandTimeoutMs: 200 });
    const seen = record(s);
    const rule: RateRule = { name: 'api', rate: 100, burst: 100 };
    assert.equal((await s.take('k', rule)).allowed, true);
    redis.pause();
    const failures = await Promise.all(Array.from({ length: 5 }, () => rejection(s.take('k', rule))));
    for (const { err } of failures) assert.match(err.message, /timed out/i);
    assert.equal((await rejection(s.take('k', rule))).err.code, STORE_UNAVAILABLE);
    assert.deepEqual(seen, ['down']);
    redis.resume();
    // The connection never dropped, so only a take can tell that Redis answers again. The late
    // replies of the timed-out takes are discarded; this take gets its own.
    const d = await s.take('k', rule);
    assert.equal(d.allowed, true);
    assert.ok(d.remaining >= 90 && d.remaining <= 98, `remaining ${d.remaining}`);
    assert.deepEqual(seen, ['down', 'up']);
  });

  it('starts without Redis, rejects at once, and connects when Redis appears', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await server(t);
    await redis.stop();
    // A long command timeout, to tell "rejected at once" from "rejected when the timeout fired".
    const s = await store(t, redis, { commandTimeoutMs: 10_000 }, false);
    const seen = record(s);
    await waitUntil(() => s.state === 'down', 'the store reports Redis absent', WAIT);
    const rule: RateRule = { name: 'api', rate: 1, burst: 1 };
    assert.match((await rejection(s.take('k', rule))).err.message, /not connected/);
    await redis.start();
    await waitUntil(() => s.state === 'up', 'the store connects', WAIT);
    assert.equal((await s.take('k', rule)).allowed, true);
    assert.deepEqual(seen, ['down', 'up']);
    // Closing is quick even with Redis gone again, says nothing, and later takes reject.
    await redis.kill();
    await waitUntil(() => s.state === 'down', 'the store notices the kill', WAIT);
    const t0 = performance.now();
    await s.close();
    assert.ok(performance.now() - t0 < SETTLE_MS);
    await rejection(s.take('k', rule));
    assert.deepEqual(seen, ['down', 'up', 'down']);
  });
});

describe('redisTarget', () => {
  it('maps unix:// URLs to a socket path and leaves redis:// to node-redis', () => {
    assert.deepEqual(redisTarget('unix:///run/redis/redis.sock'), {
      options: { socket: { path: '/run/redis/redis.sock', tls: false } },
      where: 'unix:/run/redis/redis.sock',
    });
    assert.deepEqual(redisTarget('unix:///tmp/a%20b.sock?db=2').options, {
      socket: { path: '/tmp/a b.sock', tls: false },
      database: 2,
    });
    assert.deepEqual(redisTarget('redis://user:secret@cache.internal:6380/1'), {
      options: { url: 'redis://user:secret@cache.internal:6380/1' },
      where: 'redis://cache.internal:6380',
    });
    assert.equal(redisTarget('rediss://cache.internal').where, 'rediss://cache.internal');
    for (const bad of ['http://x', 'unix://host/x.sock', 'unix:///', 'unix:///x?db=-1', 'not a url'])
      assert.throws(() => redisTarget(bad), TypeError, bad);
  });

  it('refuses timeouts that are not whole positive milliseconds, before connecting', () => {
    const url = 'unix:///nonexistent/redis.sock';
    for (const opts of [
      { commandTimeoutMs: 0 },
      { commandTimeoutMs: 0.5 },
      { connectTimeoutMs: -1 },
      { reconnectMaxMs: Number.NaN },
    ])
      assert.throws(() => new RedisRateLimitStore({ url, ...opts }), RangeError, JSON.stringify(opts));
  });
});
