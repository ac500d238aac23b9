/**
 * Outlier detection: counters per kind, ejections that grow with each one (mock timers), the share of
 * endpoints that may be out, and panic when none is healthy (with real backends).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutlierDetector, type OutlierOptions, type OutlierTarget } from '../../src/cluster/outlier.ts';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy } from '../helpers/proxy.ts';
import { closedPort } from '../helpers/wire.ts';

const OPTS: OutlierOptions = {
  consecutiveConnectFailures: 3,
  consecutive5xx: 5,
  consecutiveGatewayErrors: 4,
  baseEjectionMs: 1000,
  maxEjectionMs: 2500,
  maxEjectionPercent: 50,
};

function target(key: string): OutlierTarget {
  return {
    key,
    ejected: false,
    connectFailuresInRow: 0,
    errors5xxInRow: 0,
    gatewayErrorsInRow: 0,
    ejections: 0,
    ejectTimer: null,
  };
}

const silent = { warn() {}, info() {}, error() {}, debug() {} } as unknown as import('../../src/core/log.ts').Logger;

function detector(n: number, opts: Partial<OutlierOptions> = {}): { d: OutlierDetector; eps: OutlierTarget[] } {
  const eps = Array.from({ length: n }, (_, i) => target(`10.0.0.${i + 1}:80`));
  return { d: new OutlierDetector({ ...OPTS, ...opts }, () => eps, silent, 'api'), eps };
}

describe('OutlierDetector', () => {
  it('counts each kind in a row; a success resets the answers, a connect the connect failures', () => {
    const { d, eps } = detector(4);
    const e = eps[0]!;
    for (let i = 0; i < 4; i++) d.responded(e, 500);
    d.responded(e, 200);
    assert.equal(e.errors5xxInRow, 0);
    for (let i = 0; i < 4; i++) d.responded(e, 500);
    assert.equal(e.ejected, false);
    d.responded(e, 500);
    assert.equal(e.ejected, true, '5 answers of 500 in a row');

    const g = eps[1]!;
    d.gatewayError(g);
    d.responded(g, 502);
    d.responded(g, 504);
    assert.equal(g.ejected, false);
    d.gatewayError(g);
    assert.equal(g.ejected, true, '4 gateway errors in a row (resets and 502/504 alike)');

    const c = eps[2]!;
    d.connectFailed(c);
    d.connectFailed(c);
    d.connectSucceeded(c);
    d.connectFailed(c);
    d.connectFailed(c);
    assert.equal(c.ejected, false, 'a connect in between resets the count');
  });

  it('each ejection lasts longer, up to max_ejection_time', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { d, eps } = detector(2);
    const e = eps[0]!;
    const lasts: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) d.connectFailed(e);
      assert.equal(e.ejected, true);
      let ms = 0;
      while (e.ejected) {
        t.mock.timers.tick(100);
        ms += 100;
      }
      lasts.push(ms);
    }
    assert.deepEqual(lasts, [1000, 2000, 2500]);
    assert.equal(e.ejections, 3);
  });

  it('max_ejection_percent keeps the rest serving; one endpoint may always be ejected', () => {
    const { d, eps } = detector(4);
    for (const e of eps) for (let i = 0; i < 3; i++) d.connectFailed(e);
    assert.deepEqual(
      eps.map((e) => e.ejected),
      [true, true, false, false],
    );
    assert.ok(d.refused >= 2);
    const one = detector(1);
    for (let i = 0; i < 3; i++) one.d.connectFailed(one.eps[0]!);
    assert.equal(one.eps[0]!.ejected, true);
  });

  it('0 turns a counter off', () => {
    const { d, eps } = detector(2, { consecutive5xx: 0, consecutiveGatewayErrors: 0 });
    for (let i = 0; i < 50; i++) d.responded(eps[0]!, 503);
    assert.equal(eps[0]!.ejected, false);
  });
});

describe('outlier detection through the proxy', () => {
  it('an endpoint answering 500 is ejected after consecutive_5xx; the other takes the traffic', async (t) => {
    const bad = await httpBackend((_req, res) => res.writeHead(500).end('bad'));
    const good = await httpBackend((_req, res) => res.end('good'));
    t.after(() => Promise.all([bad.close(), good.close()]));
    const p = await startProxy({
      upstreams: [bad.addr, good.addr],
      cluster: { outlier: { consecutive_5xx: 3, base_ejection_time: '30s' } },
    });
    t.after(() => p.close());
    const got: string[] = [];
    for (let i = 0; i < 12; i++) got.push(await (await fetch(`${p.url}/`)).text());
    assert.equal(got.filter((x) => x === 'bad').length, 3, `three 500s, then ejected: ${got}`);
    const snap = p.server.snapshot().clusters[0]!.endpoints.find((e) => e.key === bad.addr)!;
    assert.equal(snap.ejected, true);
    assert.ok(p.eventLog.some((l) => l.msg === 'endpoint ejected' && l.reason === '5xx answers'));
  });

  it('panic: with every endpoint ejected, requests still go to them instead of 503 no_healthy_endpoint', async (t) => {
    const dead = await closedPort();
    const p = await startProxy({
      upstreams: [`127.0.0.1:${dead}`],
      cluster: { outlier: { consecutive_connect_failures: 1, base_ejection_time: '30s' } },
    });
    t.after(() => p.close());
    const first = await fetch(`${p.url}/`);
    assert.equal(first.headers.get('muxgate-error'), 'upstream_connect_failed');
    assert.equal(p.server.snapshot().clusters[0]!.endpoints[0]!.ejected, true);
    const during = await fetch(`${p.url}/`);
    assert.equal(during.headers.get('muxgate-error'), 'upstream_connect_failed', 'tried, not refused');
    assert.ok(p.eventLog.some((l) => l.msg === 'no healthy endpoint: panic, spreading over all of them'));
    assert.ok(p.server.snapshot().clusters[0]!.panics >= 1);
  });
});
