/**
 * The Redis store against a real redis-server on a unix socket: the shared behaviours, the data
 * layout, two stores (two proxy processes) racing on one key, and outages: Redis stopped, paused
 * (answers nothing, connection open) or absent at startup must make operations fail fast with
 * `idempotency_store_unavailable`, report `down` once, and recover by themselves with one `up`.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createClient, RESP_TYPES } from 'redis';
import type { StoreState } from '../../src/idempotency/idempotency-store.ts';
import { IdempotencyStoreError } from '../../src/idempotency/idempotency-store-error.ts';
import {
  DEFAULT_KEY_PREFIX,
  RedisIdempotencyStore,
  type RedisIdempotencyStoreOptions,
} from '../../src/idempotency/redis-idempotency-store.ts';
import { type RedisServer, startRedis } from '../helpers/redis.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import {
  assertReplays,
  FP_A,
  FP_B,
  freshKey,
  type StoreHarness,
  sampleResponse,
  storeBehaviours,
  tokenOf,
} from './store-behaviours.ts';

/** Generous, for a loaded 2-core machine: the store's own 200 ms default is for production. */
const TEST_COMMAND_TIMEOUT_MS = 3_000;
/** How long a failing operation may take to reject when Redis is away. */
const FAIL_FAST_MS = 3_000;

type RawClient = ReturnType<typeof createClient>;

/** A store on its own key prefix, closed after the test, connected before it is returned. */
async function redisStore(
  t: TestContext,
  url: string,
  opts: Partial<RedisIdempotencyStoreOptions> = {},
): Promise<RedisIdempotencyStore> {
  const store = new RedisIdempotencyStore({
    url,
    keyPrefix: `test:${randomUUID()}:`,
    commandTimeoutMs: TEST_COMMAND_TIMEOUT_MS,
    ...opts,
  });
  t.after(() => store.close());
  await withDeadline(store.ready(), 10_000, 'the store connects');
  return store;
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting until ${what}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** The operation rejects with idempotency_store_unavailable, within FAIL_FAST_MS. */
async function assertUnavailableFast(op: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  await assert.rejects(
    withDeadline(op(), FAIL_FAST_MS + 2_000, 'the operation settles'),
    (err) => err instanceof IdempotencyStoreError && err.code === 'idempotency_store_unavailable',
  );
  const took = performance.now() - started;
  assert.ok(took < FAIL_FAST_MS, `rejected after ${Math.round(took)} ms`);
}

function recordStates(store: RedisIdempotencyStore): StoreState[] {
  const states: StoreState[] = [];
  store.onStateChange((s) => states.push(s));
  return states;
}

function count(states: StoreState[], s: StoreState): number {
  return states.filter((x) => x === s).length;
}

/** begin until it answers (after an outage the store may need a moment to reconnect). */
async function beginWhenBack(store: RedisIdempotencyStore, k: string) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await store.begin(k, FP_A);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

describe('redis idempotency store', () => {
  let redis: RedisServer;
  let raw: RawClient;

  before(async () => {
    redis = await startRedis();
    raw = createClient({ url: redis.url });
    raw.on('error', () => {});
    await raw.connect();
  });

  after(async () => {
    raw.destroy();
    await redis.close();
  });

  const harness: StoreHarness = {
    async make(t, limits = {}) {
      const keyPrefix = `test:${randomUUID()}:`;
      const store = await redisStore(t, redis.url, { ...limits, keyPrefix });
      return {
        store,
        // EXISTS also makes Redis drop a key whose time is up (lazy expiry).
        expire: (k) => waitUntilAsync(async () => (await raw.exists(keyPrefix + k)) === 0, `${k} expired`),
      };
    },
  };

  describe('shared behaviours', () => {
    storeBehaviours(harness);
  });

  it('keeps a lock and then the response under one key, with lock_ttl and then ttl', async (t) => {
    const keyPrefix = `test:${randomUUID()}:`;
    const store = await redisStore(t, redis.url, { keyPrefix, lockTtlMs: 60_000, ttlMs: 3_600_000 });
    const k = freshKey();
    const key = keyPrefix + k;
    const token = tokenOf(await store.begin(k, FP_A));
    const lock = await raw.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(key);
    assert.ok(Buffer.isBuffer(lock));
    assert.equal(lock.toString('latin1'), `L${token}`);
    assert.ok(token.startsWith(FP_A), 'the token carries its fingerprint');
    const lockTtl = await raw.pTTL(key);
    assert.ok(lockTtl > 0 && lockTtl <= 60_000, `lock pttl ${lockTtl}`);

    assert.equal(await store.complete(k, token, sampleResponse()), true);
    const stored = await raw.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(key);
    assert.ok(Buffer.isBuffer(stored));
    assert.equal(stored.toString('latin1', 0, 65), `R${FP_A}`);
    // Binary, not base64: the 512 body bytes are stored once, as they are.
    assert.ok(stored.includes(Buffer.from(sampleResponse().body)));
    assert.ok(stored.length < 512 + 300, `${stored.length} bytes stored`);
    const ttl = await raw.pTTL(key);
    assert.ok(ttl > 3_600_000 - 60_000 && ttl <= 3_600_000, `response pttl ${ttl}`);
    assert.deepEqual(await raw.keys(`${keyPrefix}*`), [key], 'one key per scope');

    assert.equal(await store.release(k, token), false);
    assert.equal(await raw.exists(key), 1);
  });

  it(`uses the key prefix ${DEFAULT_KEY_PREFIX} unless told otherwise`, async (t) => {
    const store = new RedisIdempotencyStore({ url: redis.url, commandTimeoutMs: TEST_COMMAND_TIMEOUT_MS });
    t.after(() => store.close());
    await store.ready();
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    assert.equal(await raw.exists(DEFAULT_KEY_PREFIX + k), 1);
    assert.equal(await store.release(k, token), true);
    assert.equal(await raw.exists(DEFAULT_KEY_PREFIX + k), 0);
  });

  it('two stores (two proxy processes) racing 50 begins on one key: exactly one runs', async (t) => {
    const keyPrefix = `test:${randomUUID()}:`;
    const a = await redisStore(t, redis.url, { keyPrefix });
    const b = await redisStore(t, redis.url, { keyPrefix });
    for (let round = 0; round < 5; round++) {
      const k = freshKey();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).begin(k, FP_A)));
      const runs = results.filter((r) => r.kind === 'run');
      assert.equal(runs.length, 1, `round ${round}: ${runs.length} runs`);
      assert.equal(results.filter((r) => r.kind === 'in_flight').length, 49);
      // Whichever store ran it, the other one replays the response and rejects another request.
      const winner = results.indexOf(runs[0]!) % 2 ? a : b;
      const other = winner === a ? b : a;
      assert.equal(await winner.complete(k, tokenOf(runs[0]!), sampleResponse()), true);
      assertReplays(await other.begin(k, FP_A), sampleResponse());
      assert.deepEqual(await other.begin(k, FP_B), { kind: 'mismatch' });
    }
  });

  it("one store cannot complete with another's stale token after the lock passed to it", async (t) => {
    const keyPrefix = `test:${randomUUID()}:`;
    const a = await redisStore(t, redis.url, { keyPrefix, lockTtlMs: 300 });
    const b = await redisStore(t, redis.url, { keyPrefix, lockTtlMs: 60_000 });
    const k = freshKey();
    const stale = tokenOf(await a.begin(k, FP_A));
    await waitUntilAsync(async () => (await raw.exists(keyPrefix + k)) === 0, 'the lock expired');
    const owner = tokenOf(await b.begin(k, FP_A));
    assert.equal(await a.complete(k, stale, { status: 500, headers: [], body: Buffer.from('stale') }), false);
    assert.equal(await a.release(k, stale), false);
    assert.equal(await b.complete(k, owner, sampleResponse()), true);
    assertReplays(await a.begin(k, FP_A), sampleResponse());
  });

  it('works on after the script cache is flushed (EVALSHA falls back to EVAL)', async (t) => {
    const store = await redisStore(t, redis.url);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    await raw.scriptFlush();
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    await raw.scriptFlush();
    assertReplays(await store.begin(k, FP_A), sampleResponse());
    await raw.scriptFlush();
    assert.equal(await store.release(k, 'x'.repeat(100)), false);
  });

  it('a stored value it cannot read rejects as unavailable, without reporting Redis down', async (t) => {
    const keyPrefix = `test:${randomUUID()}:`;
    const store = await redisStore(t, redis.url, { keyPrefix });
    const states = recordStates(store);
    const k = freshKey();
    // A response header that claims more header fields than follow.
    await raw.set(keyPrefix + k, `R${FP_A}\x00\xc8\x00\x05`);
    await assertUnavailableFast(() => store.begin(k, FP_A));
    assert.deepEqual(states, []);
  });

  it('Redis stopped: fails fast, reports down once; started again: recovers by itself, reports up once', async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    const store = await redisStore(t, own.url);
    const states = recordStates(store);
    const before = tokenOf(await store.begin(freshKey(), FP_A));
    assert.ok(before);

    await own.stop();
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    await waitUntil(() => states.length > 0, 'down is reported', { timeoutMs: 5_000 });
    for (let i = 0; i < 5; i++) await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    await assertUnavailableFast(() => store.complete(freshKey(), before, sampleResponse()));
    await assertUnavailableFast(() => store.release(freshKey(), before));
    // Reconnect attempts keep failing meanwhile; none of them is reported again.
    await sleep(1_000);
    assert.deepEqual(states, ['down']);

    await own.start();
    await waitUntil(() => states.length > 1, 'up is reported', { timeoutMs: 15_000 });
    const k = freshKey();
    const token = tokenOf(await beginWhenBack(store, k));
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    assertReplays(await store.begin(k, FP_A), sampleResponse());
    assert.deepEqual(states, ['down', 'up']);
  });

  it('Redis paused (connection open, nothing answered): each operation times out fast; back when resumed', async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    // The production default, 200 ms: this test is about the timeout.
    const store = await redisStore(t, own.url, { commandTimeoutMs: 200 });
    const states = recordStates(store);
    tokenOf(await store.begin(freshKey(), FP_A));

    own.pause();
    t.after(() => own.resume());
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    assert.deepEqual(states, ['down']);

    own.resume();
    // A begin that timed out may still have run once Redis woke up; a fresh key shows the store is back.
    tokenOf(await beginWhenBack(store, freshKey()));
    assert.equal(count(states, 'down'), 1);
    assert.equal(states.at(-1), 'up');
  });

  it('Redis absent at startup: fails fast and reports down; works once Redis appears', async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    await own.kill();
    const store = new RedisIdempotencyStore({ url: own.url, commandTimeoutMs: TEST_COMMAND_TIMEOUT_MS });
    t.after(() => store.close());
    const states = recordStates(store);
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    await waitUntil(() => states.length > 0, 'down is reported', { timeoutMs: 5_000 });

    await own.start();
    await withDeadline(store.ready(), 15_000, 'the store connects');
    tokenOf(await beginWhenBack(store, freshKey()));
    assert.deepEqual(states, ['down', 'up']);
  });

  it('close does not hang on a paused Redis, and operations after close reject', async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    const store = await redisStore(t, own.url, { commandTimeoutMs: 200 });
    own.pause();
    t.after(() => own.resume());
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
    const started = performance.now();
    await withDeadline(store.close(), 5_000, 'close settles');
    assert.ok(performance.now() - started < 3_000, 'closed within 3 s');
    await assertUnavailableFast(() => store.begin(freshKey(), FP_A));
  });

  it('takes redis://, rediss:// and unix:// URLs and refuses others at construction', () => {
    for (const url of ['http://localhost:6379', 'localhost:6379', '/tmp/redis.sock', '']) {
      assert.throws(() => new RedisIdempotencyStore({ url }), TypeError, url);
    }
    assert.throws(() => new RedisIdempotencyStore({ url: redis.url, commandTimeoutMs: 0 }), RangeError);
  });
});

/** waitUntil for an async predicate. */
async function waitUntilAsync(pred: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}
