/**
 * HTTP clusters with source_addresses: pooled upstream connections leave from the configured source
 * IPs on ports muxgate picks, and a used-up budget answers 503 upstream_ports_exhausted without
 * ejecting the endpoint. (127.0.0.0/8 is all on loopback, so no root is needed.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { curl } from '../helpers/wire.ts';
import { startProxy } from '../helpers/proxy.ts';
import { gate, waitUntil } from '../helpers/wait.ts';

test('pooled connections leave from the source addresses, on ports from source_port_range', async (t) => {
  const seen: string[] = [];
  const backend = await httpBackend((req, res) => {
    seen.push(`${req.socket.remoteAddress}:${req.socket.remotePort}`);
    res.end('ok');
  });
  t.after(() => backend.close());
  const proxy = await startProxy({
    upstreams: [backend.addr],
    cluster: { source_addresses: ['127.0.0.2', '127.0.0.3'], source_port_range: '21400-21419' },
  });
  t.after(() => proxy.close());
  const results = await Promise.all(
    Array.from({ length: 8 }, () => curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${proxy.url}/x`])),
  );
  assert.deepEqual(
    results.map((r) => r.stdout.toString()),
    Array(8).fill('200'),
  );
  for (const peer of seen) {
    const [ip = '', port = '0'] = peer.split(':');
    assert.ok(['127.0.0.2', '127.0.0.3'].includes(ip), `source ${ip}`);
    assert.ok(Number(port) >= 21400 && Number(port) <= 21419, `port ${port}`);
  }
  const budgets = proxy.server.snapshot().ports.budgets;
  assert.deepEqual(budgets.map((b) => b.source).sort(), ['127.0.0.2', '127.0.0.3']);
  const inUse = budgets.reduce((n, b) => n + b.in_use, 0);
  assert.equal(inUse, proxy.server.snapshot().clusters[0]?.endpoints[0]?.pool.open, 'one port per pooled connection');
});

test('a used-up budget answers 503 upstream_ports_exhausted and the endpoint stays healthy', async (t) => {
  const hold = gate();
  const backend = await httpBackend((_req, res) => {
    void hold.promise.then(() => res.end('done'));
  });
  t.after(() => backend.close());
  const proxy = await startProxy({
    upstreams: [backend.addr],
    cluster: {
      source_addresses: ['127.0.0.8'],
      source_port_range: '21500-21502',
      pool: { max_connections: 10 },
      outlier: { consecutive_connect_failures: 1 },
    },
  });
  t.after(() => proxy.close());
  // Three requests hold the three ports; a fourth needs a fourth connection.
  const held = Array.from({ length: 3 }, () => curl(['-s', '-w', '%{http_code}', `${proxy.url}/held`]));
  await waitUntil(() => proxy.server.snapshot().ports.budgets[0]?.in_use === 3, 'three connections up');
  const r = await curl(['-s', '-D', '-', '-o', '/dev/null', `${proxy.url}/fourth`]);
  assert.match(r.stdout.toString(), /^HTTP\/1\.1 503 /);
  assert.match(r.stdout.toString(), /muxgate-error: upstream_ports_exhausted/i);
  const snap = proxy.server.snapshot();
  assert.equal(snap.clusters[0]?.endpoints[0]?.healthy, true, 'running out of ports is not the endpoint failing');
  assert.ok((snap.ports.exhausted ?? 0) >= 1);
  assert.equal(proxy.eventLog.filter((l) => l.msg === 'upstream ports exhausted').length, 1);
  hold.open();
  for (const h of held) assert.equal((await h).stdout.toString(), 'done200');
  // The held connections are idle in the pool now: the next request reuses one.
  const again = await curl(['-s', `${proxy.url}/again`]);
  assert.equal(again.stdout.toString(), 'done');
});
