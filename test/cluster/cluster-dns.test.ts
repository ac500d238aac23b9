import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { Cluster, type ClusterOptions } from '../../src/cluster/cluster.ts';
import { Dialer } from '../../src/ports/dialer.ts';
import { PortAllocator } from '../../src/ports/port-allocator.ts';

const quiet = pino({ level: 'silent' });

function options(resolve: (host: string) => Promise<string[]>): ClusterOptions {
  return {
    name: 'c',
    endpoints: [
      { host: 'api.test', port: 8080, weight: 2 },
      { host: '127.0.0.9', port: 9000, weight: 1 },
    ],
    lb: 'round_robin',
    hashKey: undefined,
    dnsRefreshMs: 30,
    responseTimeoutMs: 1000,
    outlier: {
      consecutiveConnectFailures: 5,
      consecutive5xx: 5,
      consecutiveGatewayErrors: 5,
      baseEjectionMs: 1000,
      maxEjectionMs: 1000,
      maxEjectionPercent: 50,
    },
    panic: true,
    pool: {
      maxConnections: 1,
      maxPending: 1,
      pendingTimeoutMs: 100,
      maxRequestsPerConnection: 0,
      idleTimeoutMs: 100,
      connectTimeoutMs: 100,
      directIo: true,
    },
    dialer: new Dialer(new PortAllocator(quiet, () => ({ first: 32768, last: 60999 })), null, 'c', 0.8),
    resolve,
  };
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
};

test('a DNS name becomes one endpoint per address and is re-resolved on dns_refresh', async (t) => {
  let answer = ['10.1.0.1'];
  const asked: string[] = [];
  const cluster = new Cluster(
    options(async (h) => {
      asked.push(h);
      return answer;
    }),
    quiet,
  );
  t.after(() => cluster.close());
  await cluster.start();
  assert.deepEqual(
    cluster.endpoints.map((e) => [e.key, e.host, e.weight]),
    [
      ['10.1.0.1:8080', 'api.test', 2],
      ['127.0.0.9:9000', '127.0.0.9', 1],
    ],
  );
  assert.deepEqual(asked, ['api.test'], 'IP literals are not resolved');
  const kept = cluster.endpoints[0]!;

  answer = ['10.1.0.1', '10.1.0.2'];
  await until(() => cluster.endpoints.length === 3, 'the new address became an endpoint');
  assert.equal(cluster.endpoints[0], kept, 'an address that stays keeps its endpoint and pool');
  assert.equal(cluster.endpoints[1]!.key, '10.1.0.2:8080');

  answer = ['10.1.0.2'];
  await until(() => cluster.endpoints.length === 2, 'the vanished address was removed');
  assert.deepEqual(
    cluster.endpoints.map((e) => e.key),
    ['10.1.0.2:8080', '127.0.0.9:9000'],
  );
  assert.ok(cluster.endpoints.every((e) => e !== kept));
  // Selection only ever sees current endpoints.
  const picked = new Set(Array.from({ length: 9 }, () => cluster.pick(undefined)?.key));
  assert.deepEqual([...picked].sort(), ['10.1.0.2:8080', '127.0.0.9:9000']);
});

test('a failed re-resolution keeps the previous addresses', async (t) => {
  let fail = false;
  let calls = 0;
  const cluster = new Cluster(
    options(async () => {
      calls++;
      if (fail) throw new Error('SERVFAIL');
      return ['10.2.0.1'];
    }),
    quiet,
  );
  t.after(() => cluster.close());
  await cluster.start();
  fail = true;
  const before = calls;
  await until(() => calls >= before + 2, 'resolution retried');
  assert.deepEqual(
    cluster.endpoints.map((e) => e.key),
    ['10.2.0.1:8080', '127.0.0.9:9000'],
  );
});

test('a name that never resolves leaves the cluster with its other endpoints', async (t) => {
  const cluster = new Cluster(
    options(async () => {
      throw new Error('NXDOMAIN');
    }),
    quiet,
  );
  t.after(() => cluster.close());
  await cluster.start();
  assert.deepEqual(
    cluster.endpoints.map((e) => e.key),
    ['127.0.0.9:9000'],
  );
});
