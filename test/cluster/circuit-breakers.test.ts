/**
 * Circuit breakers: a cluster with max_requests in flight (or max_pending waiting) answers the next
 * request 503 circuit_open without touching an endpoint, counts it in /stats and the metrics, and
 * serves again once the work drains. TCP tunnels through an L4 listener are refused the same way.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { MetricsExporter } from '../../src/admin/metrics.ts';
import { echoBackend, httpBackend } from '../helpers/backend.ts';
import { startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('circuit breakers', () => {
  it('max_requests: the request beyond it gets 503 circuit_open; after the work drains, requests pass', async (t) => {
    const release: (() => void)[] = [];
    let seen = 0;
    const b = await httpBackend((_req, res) => {
      seen++;
      release.push(() => res.end('done'));
    });
    t.after(() => b.close());
    const p = await startProxy({ upstreams: [b.addr], cluster: { circuit_breakers: { max_requests: 2 } } });
    t.after(() => p.close());
    const held = [fetch(`${p.url}/1`), fetch(`${p.url}/2`)];
    await waitUntil(() => seen === 2, 'two requests at the backend', { timeoutMs: 10_000 });
    const third = await fetch(`${p.url}/3`);
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('muxgate-error'), 'circuit_open');
    assert.equal(seen, 2, 'the refused request never reached the backend');
    for (const r of release.splice(0)) r();
    for (const r of await Promise.all(held)) assert.equal(await r.text(), 'done');
    const again = fetch(`${p.url}/4`);
    await waitUntil(() => release.length === 1, 'the next request at the backend', { timeoutMs: 10_000 });
    release[0]!();
    assert.equal((await again).status, 200);
    const snap = p.server.snapshot();
    assert.deepEqual(snap.clusters[0]!.circuit_open, {
      max_requests: 1,
      max_pending: 0,
      max_retries: 0,
      max_connections: 0,
    });
    assert.equal(snap.listeners[0]!.error_codes.circuit_open, 1);
    const text = await new MetricsExporter().render(snap);
    assert.match(text, /muxgate_circuit_open_total\{cluster="up",breaker="max_requests"\} 1/);
  });

  it('max_pending: requests beyond it while others wait for a connection get circuit_open', async (t) => {
    const release: (() => void)[] = [];
    const b = await httpBackend((_req, res) => {
      release.push(() => res.end('done'));
    });
    t.after(() => b.close());
    // One connection: the 2nd and 3rd requests wait in the pool's queue; the 4th is refused.
    const p = await startProxy({
      upstreams: [b.addr],
      cluster: { pool: { max_connections: 1 }, circuit_breakers: { max_pending: 2 } },
    });
    t.after(() => p.close());
    const held = [fetch(`${p.url}/1`)];
    await waitUntil(() => release.length === 1, 'the first request at the backend', { timeoutMs: 10_000 });
    held.push(fetch(`${p.url}/2`), fetch(`${p.url}/3`));
    await waitUntil(() => p.server.clusters.get('up')!.pending === 2, 'two waiting', { timeoutMs: 10_000 });
    const fourth = await fetch(`${p.url}/4`);
    assert.equal(fourth.headers.get('muxgate-error'), 'circuit_open');
    for (let i = 0; i < 3; i++) {
      await waitUntil(() => release.length > 0, 'a request at the backend', { timeoutMs: 10_000 });
      release.shift()!();
    }
    for (const r of await Promise.all(held)) assert.equal(r.status, 200);
  });

  it('max_connections: pooled connections across the cluster stay at the cap; an endpoint with none gets circuit_open', async (t) => {
    const release: (() => void)[] = [];
    const mk = async () => {
      const b = await httpBackend((_req, res) => {
        release.push(() => res.end('done'));
      });
      t.after(() => b.close());
      return b;
    };
    const a = await mk();
    const b = await mk();
    // Two endpoints, a cluster cap of 2: requests pinned to endpoint a by the hash key take both.
    const p = await startProxy({
      clusters: {
        up: {
          endpoints: [a.addr, b.addr],
          lb: 'ring_hash',
          hash_key: { header: 'x-user' },
          circuit_breakers: { max_connections: 2 },
        },
      },
    });
    t.after(() => p.close());
    const cluster = p.server.clusters.get('up')!;
    // Find a user that hashes to each endpoint.
    const requestFieldFor = (u: string) => ({ 'x-user': u });
    const target = new Map<string, string>();
    for (let i = 0; target.size < 2 && i < 200; i++) {
      const u = `u${i}`;
      const e = cluster.pick(u);
      if (e !== undefined && !target.has(e.key)) target.set(e.key, u);
    }
    const userA = target.get(a.addr)!;
    const userB = target.get(b.addr)!;
    const held = [1, 2, 3].map((i) => fetch(`${p.url}/${i}`, { headers: requestFieldFor(userA) }));
    await waitUntil(() => release.length === 2, 'two requests at a, on two connections', { timeoutMs: 10_000 });
    assert.equal(a.open, 2);
    assert.equal(cluster.upstreamConnections(), 2);
    // b has no connection and the cluster is at its cap: refused at once.
    const refused = await fetch(`${p.url}/b`, { headers: requestFieldFor(userB) });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('muxgate-error'), 'circuit_open');
    assert.equal(p.server.snapshot().clusters[0]!.circuit_open.max_connections, 1);
    // The third request to a waited for one of a's connections instead of opening a third.
    for (let i = 0; i < 3; i++) {
      await waitUntil(() => release.length > 0, 'a request at a backend', { timeoutMs: 10_000 });
      release.shift()!();
    }
    for (const r of await Promise.all(held)) assert.equal(await r.text(), 'done');
    assert.equal(a.accepted, 2, 'never more than two connections');
  });

  it('an L4 listener closes a client the breaker refuses', async (t) => {
    const echo = await echoBackend();
    t.after(() => echo.close());
    const p = await startProxy({
      tcp: {},
      clusters: {
        up: { endpoints: [echo.addr], circuit_breakers: { max_requests: 1 } },
      },
    });
    t.after(() => p.close());
    const first = net.connect(p.port, '127.0.0.1');
    t.after(() => first.destroy());
    first.write('one');
    await new Promise((r) => first.once('data', r));
    const second = net.connect(p.port, '127.0.0.1');
    second.on('error', () => {});
    await new Promise((r) => second.once('close', r));
    assert.equal(p.server.snapshot().clusters[0]!.circuit_open.max_requests, 1);
  });
});
