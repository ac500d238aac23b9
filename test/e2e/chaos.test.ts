/**
 * Chaos under load (h2load, HTTP/1.1, idempotent GETs, retries on): of four endpoints one answers,
 * one is killed (connects refused), one resets every connection and one hangs. After a settling run
 * (the documented window in which ejection has not happened yet; its failures are not counted), a
 * second run must see no failed request and no non-2xx; the bad endpoints are ejected; the one that
 * reset connections is re-admitted once it recovers and its ejection ends.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { MetricsExporter } from '../../src/admin/metrics.ts';
import { startProxy } from '../helpers/proxy.ts';

const H2LOAD = '/usr/bin/h2load';

interface LoadResult {
  succeeded: number;
  failed: number;
  errored: number;
  status2xx: number;
  output: string;
}

function h2load(url: string, requests: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(H2LOAD, ['--h1', '-n', String(requests), '-c', '8', '-t', '1', url]);
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
        output,
      );
      const codes = /status codes: (\d+) 2xx/.exec(output);
      if (req === null || codes === null) {
        reject(new Error(`unexpected h2load output: ${output}`));
        return;
      }
      resolve({
        succeeded: Number(req[4]),
        failed: Number(req[5]),
        errored: Number(req[6]),
        status2xx: Number(codes[1]),
        output,
      });
    });
  });
}

describe('chaos under load', () => {
  it('killed, resetting and hanging endpoints: no failed request once ejection settles; recovery re-admits', async (t) => {
    if (!existsSync(H2LOAD)) {
      t.skip(`h2load not installed: ${H2LOAD} is missing (Debian package nghttp2-client)`);
      return;
    }
    let goodServed = 0;
    const good = await httpBackend((_req, res) => {
      goodServed++;
      res.end('ok');
    });
    t.after(() => good.close());
    let recovered = false;
    let resetterServed = 0;
    const resetter = await httpBackend((req, res) => {
      if (!recovered) {
        req.socket.destroy();
        return;
      }
      resetterServed++;
      res.end('ok again');
    });
    t.after(() => resetter.close());
    const hung: http.ServerResponse[] = [];
    const hanger = await httpBackend((_req, res) => hung.push(res));
    t.after(async () => {
      for (const r of hung) r.destroy();
      await hanger.close();
    });
    // Killed: a backend that was there and is gone (its port now refuses connections).
    const killed = await httpBackend((_req, res) => res.end('never'));
    const killedAddr = killed.addr;
    for (const s of (killed as unknown as { sockets?: Set<net.Socket> }).sockets ?? []) s.destroy();
    await killed.close();

    const p = await startProxy({
      clusters: {
        up: {
          endpoints: [good.addr, killedAddr, resetter.addr, hanger.addr],
          lb: 'round_robin',
          outlier: {
            consecutive_connect_failures: 2,
            consecutive_gateway_errors: 2,
            base_ejection_time: '12s',
            max_ejection_percent: 75,
          },
        },
      },
      routes: [
        {
          cluster: 'up',
          retry: {
            attempts: 4,
            on: ['connect-failure', 'reset'],
            per_try_timeout: '500ms',
            backoff: { base: '1ms', max: '5ms' },
          },
        },
      ],
    });
    t.after(() => p.close());
    const url = `${p.url}/`;

    // Settling: the bad endpoints fail until they are ejected (failures allowed here).
    await h2load(url, 300);
    const ejected = () =>
      p.server
        .snapshot()
        .clusters[0]!.endpoints.filter((e) => e.ejected)
        .map((e) => e.key)
        .sort();
    assert.deepEqual(ejected(), [killedAddr, resetter.addr, hanger.addr].sort(), 'the three bad endpoints are out');

    const run = await h2load(url, 3000);
    assert.equal(run.failed, 0, run.output);
    assert.equal(run.errored, 0, run.output);
    assert.equal(run.succeeded, 3000, run.output);
    assert.equal(run.status2xx, 3000, run.output);
    assert.ok(goodServed >= 3000);

    // The resetter recovers; when its ejection ends it is picked again and serves.
    recovered = true;
    const deadline = Date.now() + 30_000;
    while (resetterServed === 0) {
      assert.ok(Date.now() < deadline, 'the recovered endpoint is re-admitted within 30 s');
      await new Promise((r) => setTimeout(r, 250));
      const r = await fetch(url);
      assert.equal(r.status, 200);
      await r.text();
    }
    assert.ok(!ejected().includes(resetter.addr), 'the recovered endpoint is back in selection');
    const snap = p.server.snapshot().clusters[0]!;
    assert.ok(snap.retries > 0, 'the settling run retried');
  });
});

describe('a flapping endpoint', () => {
  it('is ejected for longer each time, while retries keep every answer a 200', async (t) => {
    const good = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => good.close());
    const flapping = await httpBackend((_req, res) => {
      res.statusCode = 502;
      res.end('bad gateway');
    });
    t.after(() => flapping.close());
    const p = await startProxy({
      clusters: {
        up: {
          endpoints: [good.addr, flapping.addr],
          outlier: { consecutive_gateway_errors: 1, base_ejection_time: '200ms', max_ejection_time: '10s' },
        },
      },
      routes: [{ cluster: 'up', retry: { on: ['gateway-error'], backoff: { base: '1ms', max: '1ms' } } }],
    });
    t.after(() => p.close());
    const ejections = () => p.eventLog.filter((l) => l.msg === 'endpoint ejected' && l.endpoint === flapping.addr);
    const deadline = Date.now() + 30_000;
    while (ejections().length < 3) {
      assert.ok(Date.now() < deadline, `three ejections within 30 s (saw ${ejections().length})`);
      const r = await fetch(`${p.url}/`);
      assert.equal(r.status, 200, 'the retry hides the bad answer');
      await r.text();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(
      ejections()
        .slice(0, 3)
        .map((l) => l.ejection_ms),
      [200, 400, 600],
    );
    const e = p.server.snapshot().clusters[0]!.endpoints.find((x) => x.key === flapping.addr)!;
    assert.ok(e.ejections >= 3);
    const text = await new MetricsExporter().render(p.server.snapshot());
    assert.match(
      text,
      new RegExp(`muxgate_endpoint_ejections_total\\{cluster="up",endpoint="${flapping.addr}"\\} [3-9]`),
    );
  });
});
