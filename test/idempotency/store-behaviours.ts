/**
 * What every IdempotencyStore must do, as one table of tests that each store's test file runs against
 * its own store (memory with a hand-moved clock, Redis against a real server). A harness only says how
 * to make a store and how to let time pass for a key.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { it, type TestContext } from 'node:test';
import { fingerprint } from '../../src/idempotency/fingerprint.ts';
import type { BeginResult, IdempotencyStore, StoredResponse } from '../../src/idempotency/idempotency-store.ts';
import { IdempotencyStoreError } from '../../src/idempotency/idempotency-store-error.ts';
import { scopeKey } from '../../src/idempotency/scope-key.ts';
import type { StoreLimits } from '../../src/idempotency/store-limits.ts';

export interface StoreUnderTest {
  readonly store: IdempotencyStore;
  /**
   * Lets whatever `scopeKey` holds expire (a lock after `lock_ttl`, a response after `ttl`): moves the
   * store's clock (memory) or waits, bounded, until Redis dropped the key.
   */
  expire(scopeKey: string): Promise<void>;
}

export interface StoreHarness {
  /** A fresh store, closed after the test. */
  make(t: TestContext, limits?: Partial<StoreLimits>): Promise<StoreUnderTest>;
}

/** Every byte value, both ways, so an encoding that is not binary-safe (UTF-8, NUL-terminated) shows. */
export const ALL_BYTES = Buffer.from(Array.from({ length: 512 }, (_, i) => (i < 256 ? i : 511 - i)));

export function sampleResponse(body: Buffer = ALL_BYTES): StoredResponse {
  return {
    status: 201,
    headers: [
      ['content-type', 'application/octet-stream'],
      ['set-cookie', 'a=1; Path=/'],
      ['set-cookie', 'b=2; Path=/'],
      ['x-latin1', 'caf\u00e9 \u00ff'],
      ['x-unicode', '\u2603 \u{1f600}'],
      ['x-empty', ''],
      ['Location', '/orders/42'],
    ],
    body,
  };
}

export const FP_A = fingerprint('POST', '/orders', [Buffer.from('{"amount":100}')]);
export const FP_B = fingerprint('POST', '/orders', [Buffer.from('{"amount":101}')]);

export function freshKey(): string {
  return scopeKey('orders', randomUUID());
}

export function tokenOf(r: BeginResult): string {
  assert.equal(r.kind, 'run', `expected run, got ${r.kind}`);
  return (r as { token: string }).token;
}

export function assertReplays(r: BeginResult, expected: StoredResponse): void {
  assert.equal(r.kind, 'replay', `expected replay, got ${r.kind}`);
  const got = (r as { response: StoredResponse }).response;
  assert.equal(got.status, expected.status);
  assert.deepEqual(
    got.headers.map(([n, v]) => [n, v]),
    expected.headers.map(([n, v]) => [n, v]),
  );
  assert.ok(Buffer.isBuffer(got.body), 'the body is a Buffer');
  assert.equal(Buffer.compare(got.body, expected.body), 0, 'the body bytes are identical');
}

export function storeBehaviours(h: StoreHarness): void {
  it('the first begin runs; a repeat while it runs is in_flight', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const first = await store.begin(k, FP_A);
    assert.equal(first.kind, 'run');
    assert.ok(tokenOf(first).length > 0);
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
  });

  it('the same key with another request is a mismatch, while running and once done', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    assert.deepEqual(await store.begin(k, FP_B), { kind: 'mismatch' });
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    assert.deepEqual(await store.begin(k, FP_B), { kind: 'mismatch' });
    // The mismatch changed nothing: the first request's response is still there.
    assertReplays(await store.begin(k, FP_A), sampleResponse());
  });

  it('after complete, every repeat replays the same status, header fields and body bytes', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    for (let i = 0; i < 3; i++) assertReplays(await store.begin(k, FP_A), sampleResponse());
  });

  it('an empty body and no header fields replay as such', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    const empty: StoredResponse = { status: 204, headers: [], body: Buffer.alloc(0) };
    assert.equal(await store.complete(k, token, empty), true);
    assertReplays(await store.begin(k, FP_A), empty);
  });

  it('keeps the response as it was at complete, whatever the caller does with its buffers after', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    const body = Buffer.from(ALL_BYTES);
    const headers: [string, string][] = [['x-a', '1']];
    assert.equal(await store.complete(k, token, { status: 200, headers, body }), true);
    body.fill(0);
    headers[0]![1] = 'changed';
    headers.push(['x-b', '2']);
    assertReplays(await store.begin(k, FP_A), { status: 200, headers: [['x-a', '1']], body: ALL_BYTES });
  });

  it('after release, the next request runs, with a new token', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const first = tokenOf(await store.begin(k, FP_A));
    assert.equal(await store.release(k, first), true);
    const second = tokenOf(await store.begin(k, FP_A));
    assert.notEqual(second, first);
    // Released, the key is free for any request, another fingerprint included.
    assert.equal(await store.release(k, second), true);
    tokenOf(await store.begin(k, FP_B));
  });

  it('a token acts once: no second complete, no release of a stored response', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    assert.equal(await store.complete(k, token, { status: 500, headers: [], body: Buffer.from('other') }), false);
    assert.equal(await store.release(k, token), false);
    assertReplays(await store.begin(k, FP_A), sampleResponse());
  });

  it("a token does nothing to another key's lock", async (t) => {
    const { store } = await h.make(t);
    const k1 = freshKey();
    const k2 = freshKey();
    const t1 = tokenOf(await store.begin(k1, FP_A));
    const t2 = tokenOf(await store.begin(k2, FP_A));
    assert.equal(await store.complete(k2, t1, sampleResponse()), false);
    assert.equal(await store.release(k2, t1), false);
    assert.equal(await store.release(k2, 'not-a-token'), false);
    assert.equal(await store.complete(k2, 'not-a-token', sampleResponse()), false);
    assert.deepEqual(await store.begin(k2, FP_A), { kind: 'in_flight' });
    // Each key's own token still works, and the keys stay apart.
    assert.equal(await store.complete(k1, t1, sampleResponse()), true);
    assert.equal(await store.release(k2, t2), true);
    assertReplays(await store.begin(k1, FP_A), sampleResponse());
    tokenOf(await store.begin(k2, FP_A));
  });

  it('a stale token cannot complete or release the lock another request took after it expired', async (t) => {
    const { store, expire } = await h.make(t, { lockTtlMs: 300 });
    const k = freshKey();
    const stale = tokenOf(await store.begin(k, FP_A));
    await expire(k);
    // The first request's lock is gone: a retry runs and owns the key now.
    const owner = tokenOf(await store.begin(k, FP_A));
    assert.equal(await store.complete(k, stale, { status: 500, headers: [], body: Buffer.from('stale') }), false);
    assert.equal(await store.release(k, stale), false);
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
    assert.equal(await store.complete(k, owner, sampleResponse()), true);
    assertReplays(await store.begin(k, FP_A), sampleResponse());
  });

  it('a stored response expires after ttl; then the key runs again', async (t) => {
    const { store, expire } = await h.make(t, { ttlMs: 300 });
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    assert.equal(await store.complete(k, token, sampleResponse()), true);
    await expire(k);
    // Expired, the key no longer binds its fingerprint either.
    tokenOf(await store.begin(k, FP_B));
  });

  it('refuses a body over max_body_bytes with its own code, and leaves the lock held', async (t) => {
    const { store } = await h.make(t, { maxBodyBytes: 1000 });
    const k = freshKey();
    const token = tokenOf(await store.begin(k, FP_A));
    await assert.rejects(
      store.complete(k, token, sampleResponse(Buffer.alloc(1001, 7))),
      (err) => err instanceof IdempotencyStoreError && err.code === 'idempotency_response_too_large',
    );
    assert.deepEqual(await store.begin(k, FP_A), { kind: 'in_flight' });
    // Exactly the limit is stored.
    const atLimit = sampleResponse(Buffer.alloc(1000, 7));
    assert.equal(await store.complete(k, token, atLimit), true);
    assertReplays(await store.begin(k, FP_A), atLimit);
  });

  it('begin refuses a fingerprint that fingerprint() did not make', async (t) => {
    const { store } = await h.make(t);
    await assert.rejects(store.begin(freshKey(), 'POST /orders'), TypeError);
    await assert.rejects(store.begin(freshKey(), FP_A.toUpperCase()), TypeError);
    await assert.rejects(store.begin(freshKey(), `${FP_A}0`), TypeError);
  });

  it('of 50 concurrent begins on one key exactly one runs', async (t) => {
    const { store } = await h.make(t);
    const k = freshKey();
    const results = await Promise.all(Array.from({ length: 50 }, () => store.begin(k, FP_A)));
    assert.equal(results.filter((r) => r.kind === 'run').length, 1);
    assert.equal(results.filter((r) => r.kind === 'in_flight').length, 49);
  });
}
