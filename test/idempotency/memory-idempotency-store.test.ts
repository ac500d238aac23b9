/**
 * The in-process store: the shared behaviours on a hand-moved clock, then its own bounds (max_keys,
 * max_bytes), the exact expiry instants, and its eviction order (the order entries were written).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoredResponse } from '../../src/idempotency/idempotency-store.ts';
import { IdempotencyStoreError } from '../../src/idempotency/idempotency-store-error.ts';
import {
  MemoryIdempotencyStore,
  type MemoryIdempotencyStoreOptions,
} from '../../src/idempotency/memory-idempotency-store.ts';
import { scopeKey } from '../../src/idempotency/scope-key.ts';
import { DEFAULT_STORE_LIMITS } from '../../src/idempotency/store-limits.ts';
import {
  assertReplays,
  FP_A,
  freshKey,
  type StoreHarness,
  sampleResponse,
  storeBehaviours,
  tokenOf,
} from './store-behaviours.ts';

/** A clock that moves only when told. Starts far from 0, as performance.now() would not be 0 either. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

function memoryStore(opts: MemoryIdempotencyStoreOptions = {}) {
  const clock = manualClock();
  return { store: new MemoryIdempotencyStore({ ...opts, now: clock.now }), clock };
}

const memory: StoreHarness = {
  async make(t, limits = {}) {
    const { store, clock } = memoryStore(limits);
    t.after(() => store.close());
    const longest = Math.max(limits.ttlMs ?? DEFAULT_STORE_LIMITS.ttlMs, limits.lockTtlMs ?? 0);
    return {
      store,
      expire: async () => clock.advance(longest + 1),
    };
  },
};

function bodyOf(size: number, fill: number): StoredResponse {
  return { status: 200, headers: [['content-type', 'application/octet-stream']], body: Buffer.alloc(size, fill) };
}

/** begin + complete, asserting both worked. */
async function store1(store: MemoryIdempotencyStore, key: string, response: StoredResponse): Promise<void> {
  const token = tokenOf(await store.begin(key, FP_A));
  assert.equal(await store.complete(key, token, response), true);
}

describe('memory idempotency store: shared behaviours', () => {
  storeBehaviours(memory);
});

describe('memory idempotency store', () => {
  it('replays until exactly ttl after complete, then runs', async () => {
    const { store, clock } = memoryStore({ ttlMs: 10_000, lockTtlMs: 500 });
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    clock.advance(400);
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    // The ttl counts from complete, not from begin; and the lock's ttl no longer applies.
    clock.advance(9_999);
    assertReplays(await store.begin(k, FP_A), sampleResponse());
    clock.advance(1);
    tokenOf(await store.begin(k, FP_A));
  });

  it('holds a lock until exactly lock_ttl after begin', async () => {
    const { store, clock } = memoryStore({ lockTtlMs: 500 });
    const k = freshKey();
    const stale = tokenOf(await store.begin(k, FP_A));
    clock.advance(499);
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
    clock.advance(1);
    // Expired and not yet taken again: the stale token still cannot act on it.
    assert.equal(await store.complete(k, stale, sampleResponse()), false);
    assert.equal(await store.release(k, stale), false);
    tokenOf(await store.begin(k, FP_A));
  });

  it('holds at most max_keys keys, dropping the oldest written', async () => {
    const { store } = memoryStore({ maxKeys: 10 });
    const keys = Array.from({ length: 25 }, (_, i) => scopeKey('r', `key-${i}`));
    for (const k of keys) {
      await store1(store, k, sampleResponse());
      assert.ok(store.keys <= 10, `${store.keys} keys held`);
    }
    for (const k of keys.slice(15)) assertReplays(await store.begin(k, FP_A), sampleResponse());
    for (const k of keys.slice(0, 15)) tokenOf(await store.begin(k, FP_A));
    assert.equal(store.keys, 10);
  });

  it('evicts in write order: a replay does not keep an old entry in', async () => {
    const { store } = memoryStore({ maxKeys: 3 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => scopeKey('r', n)) as [string, string, string, string];
    await store1(store, a, sampleResponse());
    await store1(store, b, sampleResponse());
    await store1(store, c, sampleResponse());
    // Replayed most recently, yet written first: it is the next to expire, so the first to go.
    assertReplays(await store.begin(a, FP_A), sampleResponse());
    await store1(store, d, sampleResponse());
    tokenOf(await store.begin(a, FP_A));
    assertReplays(await store.begin(c, FP_A), sampleResponse());
  });

  it('holds at most max_bytes, dropping the oldest written', async () => {
    const { store } = memoryStore({ maxBytes: 10_000, maxBodyBytes: 2_000 });
    const keys = Array.from({ length: 20 }, (_, i) => scopeKey('r', `key-${i}`));
    for (const [i, k] of keys.entries()) {
      await store1(store, k, bodyOf(1_500, i));
      assert.ok(store.bytes <= 10_000, `${store.bytes} bytes held`);
    }
    // 1500-byte bodies plus overhead: five fit, not six.
    assert.ok(store.keys >= 5 && store.keys < 7, `${store.keys} keys held`);
    assertReplays(await store.begin(keys[19]!, FP_A), bodyOf(1_500, 19));
    tokenOf(await store.begin(keys[0]!, FP_A));
  });

  it('refuses a response that could never fit in max_bytes, leaving the lock held', async () => {
    const { store } = memoryStore({ maxBytes: 2_000, maxBodyBytes: 2_000 });
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    const big: StoredResponse = { status: 200, headers: [['x-pad', 'p'.repeat(500)]], body: Buffer.alloc(1_900) };
    await assert.rejects(
      store.complete(k, token, big),
      (err) => err instanceof IdempotencyStoreError && err.code === 'idempotency_response_too_large',
    );
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
    assert.equal(await store.release(k, token), true);
  });

  it('counts locks against max_bytes too, so a flood of keys stays bounded', async () => {
    const { store } = memoryStore({ maxBytes: 100_000, maxBodyBytes: 1_000 });
    for (let i = 0; i < 5_000; i++) await store.begin(scopeKey('r', `flood-${i}`), FP_A);
    assert.ok(store.bytes <= 100_000, `${store.bytes} bytes held`);
    assert.ok(store.keys < 5_000, `${store.keys} keys held`);
  });

  it('rejects limits that cannot work', () => {
    assert.throws(() => new MemoryIdempotencyStore({ maxKeys: 0 }), RangeError);
    assert.throws(() => new MemoryIdempotencyStore({ maxBytes: 1_000, maxBodyBytes: 2_000 }), RangeError);
    assert.throws(() => new MemoryIdempotencyStore({ ttlMs: 0 }), RangeError);
    assert.throws(() => new MemoryIdempotencyStore({ lockTtlMs: 1.5 }), RangeError);
  });

  it('never reports a state change, and forgets everything on close', async () => {
    const { store } = memoryStore();
    const states: string[] = [];
    store.onStateChange((s) => states.push(s));
    const k = freshKey();
    await store1(store, k, sampleResponse());
    await store.close();
    assert.equal(store.keys, 0);
    assert.deepEqual(states, []);
  });
});
