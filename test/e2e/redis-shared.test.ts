/**
 * Two muxgate processes sharing one real redis-server (on a unix socket in a temporary directory):
 * a POST with an Idempotency-Key sent to one and repeated through the other gets the first response
 * and the backend counts one request; a rate limit holds across both; Redis stopped mid-test is
 * survived as configured (idempotency fail_closed: 503; rate limit fail_open: passes), logged once
 * per outage, and both work again when Redis is back, without a restart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { portOf, type RunningMuxgate, startMuxgate } from '../helpers/cli.ts';
import { skipWithoutRedis, startRedis } from '../helpers/redis.ts';

describe('Redis shared by two muxgate processes', () => {
  it('Idempotency-Key and rate limits hold across instances; a Redis outage is survived as configured', async (t) => {
    if (skipWithoutRedis(t)) return;
    const redis = await startRedis();
    t.after(() => redis.close());
    let seen = 0;
    const b = await httpBackend((req, res) => {
      req.resume();
      req.on('end', () => {
        seen++;
        res.statusCode = 201;
        res.end(`order ${seen}`);
      });
    });
    t.after(() => b.close());
    const dir = mkdtempSync(join(tmpdir(), 'muxgate-redis-e2e-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'muxgate.yaml');
    writeFileSync(
      file,
      `log_level: info
access_log: { enabled: false }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - name: limited
        match: { path: { prefix: /limited } }
        cluster: app
        rate_limit: { rate: 1/h, burst: 4, key: route, store: "${redis.url}", on_store_error: fail_open }
      - name: orders
        cluster: app
        idempotency: { store: "${redis.url}", on_store_error: fail_closed }
clusters:
  app:
    endpoints: ["${b.addr}"]
`,
    );
    const procs: RunningMuxgate[] = [];
    t.after(() => Promise.all(procs.map((m) => m.stop())));
    const urls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const m = startMuxgate(['start', '-c', file]);
      procs.push(m);
      urls.push(`http://127.0.0.1:${portOf(await m.waitFor((l) => l.msg === 'listening', 20_000))}`);
    }
    const [one, two] = urls as [string, string];
    const post = (base: string, key: string) =>
      fetch(`${base}/orders`, { method: 'POST', headers: { 'idempotency-key': key }, body: 'buy' });

    // A key's first answer is the answer, whichever instance the repeat goes through.
    const first = await post(one, 'order-a');
    assert.equal(first.status, 201);
    assert.equal(await first.text(), 'order 1');
    const repeat = await post(two, 'order-a');
    assert.equal(repeat.status, 201);
    assert.equal(repeat.headers.get('idempotent-replayed'), 'true');
    assert.equal(await repeat.text(), 'order 1');
    assert.equal(seen, 1);

    // One bucket of 4 for the route, shared: 4 pass in all, over both instances.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${i % 2 === 0 ? one : two}/limited`)).status);
    assert.deepEqual(statuses, [201, 201, 201, 201, 429, 429]);
    const beforeOutage = seen;

    // Redis goes away: keyed requests are refused (fail_closed), the rate limit lets requests through (fail_open).
    await redis.stop();
    const refused = await post(one, 'order-b');
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('muxgate-error'), 'idempotency_store_unavailable');
    assert.equal((await fetch(`${two}/limited`)).status, 201);
    assert.equal(seen, beforeOutage + 1, 'only the rate-limited route reached the backend');
    for (const m of procs) await m.waitFor((l) => String(l.msg).includes('store unavailable'), 10_000);

    // Back: both instances recover by themselves (their clients reconnect with a bounded backoff).
    await redis.start();
    // Each instance reconnects on its own backoff: wait for both, not just the first to come back.
    const deadline = Date.now() + 20_000;
    for (const [name, base] of [
      ['one', one],
      ['two', two],
    ] as const) {
      for (let i = 0; ; i++) {
        if ((await post(base, `probe-${name}-${i}`)).status === 201) break;
        assert.ok(Date.now() < deadline, `${name}: keyed requests accepted again within 20 s of Redis coming back`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const after = await post(one, 'order-c');
    assert.equal(after.status, 201);
    assert.equal((await post(two, 'order-c')).headers.get('idempotent-replayed'), 'true');
    for (const m of procs) {
      await m.waitFor((l) => String(l.msg).includes('store available again'), 20_000);
      // One warning per outage per use, however many requests failed meanwhile.
      const downs = m.lines.filter((l) => String(l.msg).includes('store unavailable') && l.use === 'idempotency');
      assert.ok(downs.length <= 1, `idempotency outage logged once, got ${downs.length}`);
    }
  });
});
