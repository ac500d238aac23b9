/**
 * Load balancing end to end: real backends that answer with their own id, requests through the
 * proxy, and the resulting distribution checked per policy.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { RawClient } from '../helpers/client.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { gate, waitUntil } from '../helpers/wait.ts';

interface IdBackend {
  id: string;
  backend: Backend<import('node:http').Server>;
  /** Requests this backend received. */
  count: number;
}

/** Starts `n` backends named b0, b1...; each answers with its id. `slow` paths wait for `hold`. */
async function idBackends(t: TestContext, n: number, hold?: Promise<void>): Promise<IdBackend[]> {
  const out: IdBackend[] = [];
  for (let i = 0; i < n; i++) {
    const id = `b${i}`;
    const entry = { id, count: 0 } as IdBackend;
    entry.backend = await httpBackend(async (req, res) => {
      entry.count++;
      if (hold !== undefined && req.url?.startsWith('/slow')) await hold;
      res.setHeader('x-backend', id);
      res.end(id);
    });
    t.after(() => entry.backend.close());
    out.push(entry);
  }
  return out;
}

/** GET via fetch; returns the id of the backend that answered (asserting a 200). */
async function whoAnswers(proxy: TestProxy, path = '/', headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${proxy.url}${path}`, { headers, signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  return body;
}

/** Runs `total` requests, `concurrency` at a time, and counts answers per backend id. */
async function distribution(
  total: number,
  concurrency: number,
  one: (i: number) => Promise<string>,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const id = await one(next++);
        counts[id] = (counts[id] ?? 0) + 1;
      }
    }),
  );
  return counts;
}

function weighted(backends: IdBackend[], weights: number[]) {
  return backends.map((b, i) => ({ host: '127.0.0.1', port: b.backend.port, weight: weights[i] }));
}

/** Sends `perKey` requests for each key (interleaved) and returns key -> set of backends that served it. */
async function stickiness(keys: string[], perKey: number, one: (key: string) => Promise<string>) {
  const servedBy = new Map<string, Set<string>>(keys.map((k) => [k, new Set()]));
  for (let round = 0; round < perKey; round++) {
    await Promise.all(keys.map(async (k) => servedBy.get(k)!.add(await one(k))));
  }
  return servedBy;
}

function assertStickyAndSpread(servedBy: Map<string, Set<string>>, backends: IdBackend[]): void {
  const usersPer: Record<string, number> = {};
  for (const [key, set] of servedBy) {
    assert.equal(set.size, 1, `${key} was served by ${[...set].join(', ')}`);
    const id = [...set][0]!;
    usersPer[id] = (usersPer[id] ?? 0) + 1;
  }
  // 60 keys over 3 backends: the chance that a backend gets none is (2/3)^60, about 3e-11.
  for (const b of backends) assert.ok((usersPer[b.id] ?? 0) > 0, `${b.id} got keys: ${JSON.stringify(usersPer)}`);
}

describe('load balancing through the proxy', () => {
  test('round_robin with weights 1,2,3 gives exactly 100/200/300 of 600 requests', { timeout: 30_000 }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: { up: { endpoints: weighted(backends, [1, 2, 3]), lb: 'round_robin' } },
    });
    t.after(() => proxy.close());
    const counts = await distribution(600, 10, () => whoAnswers(proxy));
    assert.deepEqual(counts, { b0: 100, b1: 200, b2: 300 });
    assert.deepEqual(
      backends.map((b) => b.count),
      [100, 200, 300],
    );
  });

  test('least_request keeps new requests away from a backend holding a slow one', { timeout: 30_000 }, async (t) => {
    const held = gate();
    t.after(() => held.open());
    const backends = await idBackends(t, 3, held.promise);
    const proxy = await startProxy({
      clusters: { up: { endpoints: backends.map((b) => b.backend.addr), lb: 'least_request' } },
    });
    t.after(() => proxy.close());
    const slow = whoAnswers(proxy, '/slow');
    await waitUntil(() => backends.some((b) => b.count === 1), 'the slow request to reach a backend');
    const busy = backends.find((b) => b.count === 1)!;
    const counts = await distribution(60, 1, () => whoAnswers(proxy, '/fast'));
    assert.equal(counts[busy.id], undefined, `no fast request went to ${busy.id}: ${JSON.stringify(counts)}`);
    // The two idle backends tie, so power-of-two-choices splits between them (1 - 2^-59 likely both).
    for (const b of backends) if (b !== busy) assert.ok((counts[b.id] ?? 0) > 0, JSON.stringify(counts));
    held.open();
    assert.equal(await slow, busy.id);
    // Once the slow request is done, the backend is eligible again.
    const after = await distribution(60, 1, () => whoAnswers(proxy, '/fast'));
    assert.ok((after[busy.id] ?? 0) > 0, JSON.stringify(after));
  });

  test('random with weights 1,1,2 is roughly proportional', { timeout: 30_000 }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: { up: { endpoints: weighted(backends, [1, 1, 2]), lb: 'random' } },
    });
    t.after(() => proxy.close());
    const counts = await distribution(800, 10, () => whoAnswers(proxy));
    t.diagnostic(`random 1,1,2 over 800: ${JSON.stringify(counts)}`);
    // Expected 200/200/400; one standard deviation is 12-14, so ±70 is over 5 of them.
    for (const [id, expected] of [
      ['b0', 200],
      ['b1', 200],
      ['b2', 400],
    ] as const) {
      const got = counts[id] ?? 0;
      assert.ok(Math.abs(got - expected) <= 70, `${id}: ${got} not within 70 of ${expected}`);
    }
  });

  test('ring_hash on a header: each user sticks to one backend, users spread over all', {
    timeout: 30_000,
  }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: {
        up: { endpoints: backends.map((b) => b.backend.addr), lb: 'ring_hash', hash_key: { header: 'x-user' } },
      },
    });
    t.after(() => proxy.close());
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    const servedBy = await stickiness(users, 3, (u) => whoAnswers(proxy, '/', { 'x-user': u }));
    assertStickyAndSpread(servedBy, backends);
  });

  test('maglev on a cookie: each session sticks to one backend, sessions spread over all', {
    timeout: 30_000,
  }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: {
        up: { endpoints: backends.map((b) => b.backend.addr), lb: 'maglev', hash_key: { cookie: 'sid' } },
      },
    });
    t.after(() => proxy.close());
    const sids = Array.from({ length: 60 }, (_, i) => `s${i * 7919}`);
    // Other cookies around the one hashed, varying per request, must not matter.
    let n = 0;
    const servedBy = await stickiness(sids, 3, (sid) =>
      whoAnswers(proxy, '/', { cookie: `theme=${n++ % 2 ? 'dark' : 'light'}; sid=${sid}; lang=en` }),
    );
    assertStickyAndSpread(servedBy, backends);
  });

  test('source_ip hashing: one client sticks to one backend', { timeout: 30_000 }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: {
        up: { endpoints: backends.map((b) => b.backend.addr), lb: 'ring_hash', hash_key: { source_ip: true } },
      },
    });
    t.after(() => proxy.close());
    // New connection each time (so nothing rides on connection reuse), all from 127.0.0.1.
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const c = await RawClient.connect(proxy.port);
      try {
        const r = await c.request(`GET /${i} HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 200);
        seen.add(r.body.toString());
      } finally {
        c.close();
      }
    }
    assert.equal(seen.size, 1, `served by ${[...seen].join(', ')}`);
  });

  test('source_ip hashing: clients from 60 loopback addresses stick and spread', { timeout: 30_000 }, async (t) => {
    const backends = await idBackends(t, 3);
    const proxy = await startProxy({
      clusters: {
        up: { endpoints: backends.map((b) => b.backend.addr), lb: 'ring_hash', hash_key: { source_ip: true } },
      },
    });
    t.after(() => proxy.close());
    // Linux routes all of 127.0.0.0/8 to loopback; elsewhere binding 127.0.0.2 fails.
    try {
      (await RawClient.connect(proxy.port, { localAddress: '127.0.0.2' })).close();
    } catch (e) {
      t.skip(`cannot connect from 127.0.0.2 here (${(e as Error).message})`);
      return;
    }
    const ips = Array.from({ length: 60 }, (_, i) => `127.0.0.${i + 2}`);
    const servedBy = await stickiness(ips, 2, async (ip) => {
      const c = await RawClient.connect(proxy.port, { localAddress: ip });
      try {
        const r = await c.request('GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n');
        assert.equal(r.status, 200);
        return r.body.toString();
      } finally {
        c.close();
      }
    });
    assertStickyAndSpread(servedBy, backends);
  });

  test('a DNS-name endpoint (localhost:PORT) resolves and serves', { timeout: 15_000 }, async (t) => {
    const [b] = await idBackends(t, 1);
    const proxy = await startProxy({ upstreams: [`localhost:${b!.backend.port}`] });
    t.after(() => proxy.close());
    for (let i = 0; i < 3; i++) assert.equal(await whoAnswers(proxy), 'b0');
    const endpoints = proxy.server.snapshot().clusters[0]?.endpoints ?? [];
    t.diagnostic(`localhost resolved to ${endpoints.map((e) => e.key).join(', ')}`);
    assert.ok(endpoints.length >= 1);
    for (const e of endpoints) assert.equal(e.host, 'localhost');
    assert.ok(
      endpoints.some((e) => e.key === `127.0.0.1:${b!.backend.port}`),
      'one resolved address is 127.0.0.1',
    );
    assert.equal(b!.count, 3);
  });
});
