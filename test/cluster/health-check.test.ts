/**
 * Active health checks against real backends: an endpoint whose check fails `unhealthy_threshold`
 * times in a row leaves selection and comes back after `healthy_threshold` passes; a refused connect
 * and a hung answer (timeout) fail; checks leave from the cluster's source addresses (the same port
 * budget as traffic). Intervals are short; every wait is bounded by a generous deadline, never a
 * fixed sleep that must be just long enough.
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { readFileSync } from 'node:fs';
import { type Backend, blackhole, httpBackend } from '../helpers/backend.ts';
import { makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { type H2Backend, h2cBackend } from '../helpers/h2-backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

const CHECK = { interval: '50ms', jitter: '0ms', timeout: '300ms', healthy_threshold: 2, unhealthy_threshold: 2 };

interface Switchable {
  backend: Backend<import('node:http').Server>;
  /** Status the check path answers with. */
  status: number;
  /** Health check requests seen, with the address they came from. */
  checks: string[];
}

async function switchable(t: TestContext, name: string): Promise<Switchable> {
  const s = { status: 200, checks: [] as string[] } as Switchable;
  s.backend = await httpBackend((req, res) => {
    if (req.url === '/healthz') {
      s.checks.push(`${req.socket.remoteAddress} ${req.headers['user-agent']}`);
      res.writeHead(s.status).end();
      return;
    }
    res.end(name);
  });
  t.after(() => s.backend.close());
  return s;
}

function endpoint(p: TestProxy, key: string) {
  return p.server.snapshot().clusters[0]!.endpoints.find((e) => e.key === key)!;
}

async function answers(p: TestProxy, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await (await fetch(`${p.url}/`, { headers: { connection: 'close' } })).text());
  return out;
}

describe('active health checks', () => {
  it('an endpoint failing its HTTP check leaves selection, and comes back when it passes again', async (t) => {
    const a = await switchable(t, 'a');
    const b = await switchable(t, 'b');
    const p = await startProxy({
      upstreams: [a.backend.addr, b.backend.addr],
      cluster: { health_check: { ...CHECK, path: '/healthz', expected_statuses: ['200-299'] } },
    });
    t.after(() => p.close());
    await waitUntil(() => a.checks.length >= 2 && b.checks.length >= 2, 'checks of both endpoints', {
      timeoutMs: 10_000,
    });
    assert.match(a.checks[0]!, /muxgate-health-check$/);
    assert.deepEqual((await answers(p, 4)).sort(), ['a', 'a', 'b', 'b']);

    a.status = 503;
    await waitUntil(() => !endpoint(p, a.backend.addr).healthy, 'a to fail its checks', { timeoutMs: 10_000 });
    const down = endpoint(p, a.backend.addr);
    assert.deepEqual(down.health_check?.last_error, 'status 503');
    assert.equal(down.ejected, false, 'active, not passive');
    assert.deepEqual(await answers(p, 4), ['b', 'b', 'b', 'b']);
    assert.ok(p.eventLog.some((l) => l.msg === 'endpoint failed its health checks: out of selection'));

    a.status = 204;
    await waitUntil(() => endpoint(p, a.backend.addr).healthy, 'a to pass again', { timeoutMs: 10_000 });
    assert.ok((await answers(p, 6)).includes('a'));
  });

  it('TCP check: a refused connect fails it', async (t) => {
    const a = await switchable(t, 'a');
    const gone = await new Promise<net.Server>((r) => {
      const s = net.createServer((c) => c.destroy()).listen(0, '127.0.0.1', () => r(s));
    });
    const port = (gone.address() as AddressInfo).port;
    const p = await startProxy({
      upstreams: [a.backend.addr, `127.0.0.1:${port}`],
      cluster: { health_check: { ...CHECK, type: 'tcp' } },
    });
    t.after(() => p.close());
    await waitUntil(() => endpoint(p, `127.0.0.1:${port}`).health_check!.checks >= 2, 'TCP checks', {
      timeoutMs: 10_000,
    });
    assert.equal(endpoint(p, `127.0.0.1:${port}`).healthy, true, 'a listening port passes');
    await new Promise<void>((r) => gone.close(() => r()));
    await waitUntil(() => !endpoint(p, `127.0.0.1:${port}`).healthy, 'the closed port to fail', { timeoutMs: 10_000 });
    assert.match(endpoint(p, `127.0.0.1:${port}`).health_check!.last_error ?? '', /^connect: ECONNREFUSED/);
    assert.deepEqual(await answers(p, 3), ['a', 'a', 'a']);
  });

  it('a check not answered within its timeout fails', async (t) => {
    const a = await switchable(t, 'a');
    const hole = await blackhole();
    t.after(() => hole.close());
    const p = await startProxy({
      upstreams: [a.backend.addr, hole.addr],
      cluster: { health_check: { ...CHECK, path: '/healthz' } },
    });
    t.after(() => p.close());
    await waitUntil(() => !endpoint(p, hole.addr).healthy, 'the silent endpoint to fail', { timeoutMs: 10_000 });
    assert.equal(endpoint(p, hole.addr).health_check!.last_error, 'no answer within 300 ms');
    assert.equal(endpoint(p, a.backend.addr).healthy, true);
  });

  it('checks leave from the source addresses and port range of the cluster', async (t) => {
    const a = await switchable(t, 'a');
    const p = await startProxy({
      upstreams: [a.backend.addr],
      cluster: {
        source_addresses: ['127.0.0.3'],
        source_port_range: '21300-21399',
        health_check: { ...CHECK, path: '/healthz' },
      },
    });
    t.after(() => p.close());
    await waitUntil(() => a.checks.length >= 1, 'a check', { timeoutMs: 10_000 });
    assert.match(a.checks[0]!, /^127\.0\.0\.3 /);
    const budget = p.server.snapshot().ports.budgets.find((b) => b.source === '127.0.0.3');
    assert.ok(budget !== undefined, 'the checks are counted in the budget of 127.0.0.3');
    assert.equal(budget.range, '21300-21399');
  });

  /** An HTTP/2 backend whose /healthz answers `status`; counts the check streams it saw. */
  async function h2Switchable(t: TestContext, tls?: { cert: Buffer; key: Buffer }) {
    const s = { status: 200, checks: 0, b: null as unknown as H2Backend };
    s.b = await h2cBackend({
      tls,
      onStream: (stream, headers) => {
        if (headers[':path'] === '/healthz') {
          s.checks++;
          assert.equal(headers['user-agent'], 'muxgate-health-check');
          stream.respond({ ':status': s.status });
          stream.end();
          return;
        }
        stream.respond({ ':status': 200 });
        stream.end('ok');
      },
    });
    t.after(() => s.b.close());
    return s;
  }

  it('HTTP/2 check (h2c, the cluster speaks http2): over an HTTP/2 stream; 503 takes the endpoint out', async (t) => {
    const s = await h2Switchable(t);
    const p = await startProxy({
      upstreams: [s.b.addr],
      cluster: { protocol: 'http2', health_check: { ...CHECK, path: '/healthz' } },
    });
    t.after(() => p.close());
    await waitUntil(() => s.checks >= 2, 'HTTP/2 checks', { timeoutMs: 10_000 });
    assert.ok(s.b.sessions >= 2, 'each check is an HTTP/2 session of its own');
    s.status = 503;
    await waitUntil(() => !endpoint(p, s.b.addr).healthy, 'the endpoint to fail its checks', { timeoutMs: 10_000 });
    assert.equal(endpoint(p, s.b.addr).health_check?.last_error, 'status 503');
    s.status = 200;
    await waitUntil(() => endpoint(p, s.b.addr).healthy, 'the endpoint to pass again', { timeoutMs: 10_000 });
  });

  it('HTTP/2 check over TLS (protocol auto: ALPN picks h2); protocol http1 is refused by an h2-only endpoint', async (t) => {
    const dir = tmpDir('muxgate-hc-tls-');
    const ca = makeCa(dir);
    const leaf = makeCert(dir, ca, ['localhost']);
    const s = await h2Switchable(t, { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) });
    const tls = { ca: ca.cert, server_name: 'localhost' };
    const p = await startProxy({
      upstreams: [s.b.addr],
      cluster: { protocol: 'auto', tls, health_check: { ...CHECK, path: '/healthz' } },
    });
    t.after(() => p.close());
    await waitUntil(() => s.checks >= 2 && endpoint(p, s.b.addr).health_check?.last_error === null, 'checks over h2', {
      timeoutMs: 10_000,
    });
    // The same endpoint checked as HTTP/1.1 cannot pass: it speaks only h2 (ALPN fails).
    const h1 = await startProxy({
      upstreams: [s.b.addr],
      cluster: { protocol: 'auto', tls, health_check: { ...CHECK, path: '/healthz', protocol: 'http1' } },
    });
    t.after(() => h1.close());
    await waitUntil(() => !endpoint(h1, s.b.addr).healthy, 'the http1 check to fail', { timeoutMs: 10_000 });
  });
});
