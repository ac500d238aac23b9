/**
 * The access log: exactly one line per request, with what an operator needs to account for it. Byte
 * counts are checked against the exact bytes the client sent and received.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy, type ProxyOptions, type TestProxy } from '../helpers/proxy.ts';
import { closedPort, connect, deferred, rawHttpBackend } from '../helpers/wire.ts';

async function proxyTo(t: TestContext, o: ProxyOptions): Promise<TestProxy> {
  const proxy = await startProxy(o);
  t.after(() => proxy.close());
  return proxy;
}

/** Waits (bounded) until the access log has `n` lines, and a little more for any extra line, then returns them all. */
async function logLines(proxy: TestProxy, n: number): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 3000;
  while (proxy.accessLog.length < n && Date.now() < deadline) await sleep(10);
  await sleep(30);
  return proxy.accessLog;
}

function assertTimings(line: Record<string, unknown>): void {
  assert.equal(typeof line.duration_ms, 'number');
  assert.ok((line.duration_ms as number) >= 0);
  assert.equal(typeof line.pool_wait_ms, 'number');
  assert.ok((line.pool_wait_ms as number) >= 0);
  assert.ok((line.pool_wait_ms as number) <= (line.duration_ms as number) + 0.01, 'pool wait is part of the duration');
}

describe('access log', () => {
  it('writes one line per request with method, host, path, status, bytes, timings and upstream', async (t) => {
    const up = await httpBackend((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url?.startsWith('/created')) res.writeHead(201, { 'content-length': 7 }).end('created');
        else res.end(`hello from ${req.url}`);
      });
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr] });
    const c = await connect(proxy.port, t);
    const requests = [
      { method: 'GET', raw: 'GET /a/b?query=1 HTTP/1.1\r\nHost: app.test\r\n\r\n' },
      { method: 'POST', raw: 'POST /created HTTP/1.1\r\nHost: App.Test:8080\r\nContent-Length: 11\r\n\r\nhello world' },
      {
        method: 'PUT',
        raw: 'PUT /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      },
      { method: 'HEAD', raw: 'HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n' },
    ];
    const received: number[] = [];
    for (const r of requests) {
      c.write(r.raw);
      received.push((await c.readResponse({ method: r.method })).raw.length);
    }
    const lines = await logLines(proxy, requests.length);
    assert.equal(lines.length, requests.length, 'one line per request');
    const expected = [
      { method: 'GET', host: 'app.test', path: '/a/b', status: 200 },
      { method: 'POST', host: 'App.Test:8080', path: '/created', status: 201 },
      { method: 'PUT', host: 'app.test', path: '/chunked', status: 200 },
      { method: 'HEAD', host: 'app.test', path: '/head', status: 200 },
    ];
    lines.forEach((line, i) => {
      assert.deepEqual(
        {
          method: line.method,
          host: line.host,
          path: line.path,
          status: line.status,
          bytes_in: line.bytes_in,
          bytes_out: line.bytes_out,
          upstream: line.upstream,
          listener: line.listener,
          client: line.client,
          error: line.error,
        },
        {
          ...expected[i],
          bytes_in: Buffer.byteLength(requests[i]!.raw, 'latin1'),
          bytes_out: received[i],
          upstream: up.addr,
          listener: 'test',
          client: '127.0.0.1',
          error: undefined,
        },
        `line ${i}`,
      );
      assertTimings(line);
    });
  });

  it('records the time spent waiting for a pooled connection', async (t) => {
    const release = deferred();
    const up = await httpBackend(async (req, res) => {
      if (req.url === '/hold') await release.promise;
      res.end('done');
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr], cluster: { pool: { max_connections: 1 } } });
    const a = await connect(proxy.port, t);
    a.write('GET /hold HTTP/1.1\r\nHost: app\r\n\r\n');
    // Once /hold is upstream, the second request has to queue for the only connection.
    const pool = proxy.server.clusters.get('up')!.endpoints[0]!.pool;
    while (pool.busy < 1) await sleep(5);
    const b = await connect(proxy.port, t);
    b.write('GET /queued HTTP/1.1\r\nHost: app\r\n\r\n');
    while (pool.pendingCount < 1) await sleep(5);
    await sleep(150);
    release.resolve();
    assert.equal((await a.readResponse()).status, 200);
    assert.equal((await b.readResponse()).status, 200);
    const lines = await logLines(proxy, 2);
    const queued = lines.find((l) => l.path === '/queued');
    assert.ok(queued, 'a line for the queued request');
    assert.ok((queued.pool_wait_ms as number) >= 140, `pool_wait_ms ${queued.pool_wait_ms} covers the wait`);
    assertTimings(queued);
  });

  it('records the error code of a 502 (connect failure), with the endpoint tried', async (t) => {
    const port = await closedPort();
    const proxy = await proxyTo(t, { upstreams: [`127.0.0.1:${port}`] });
    const c = await connect(proxy.port, t);
    const req = 'GET /down HTTP/1.1\r\nHost: app\r\n\r\n';
    c.write(req);
    const r = await c.readResponse();
    assert.equal(r.status, 502);
    const [line, ...more] = await logLines(proxy, 1);
    assert.equal(more.length, 0);
    assert.ok(line);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/down');
    assert.equal(line.status, 502);
    assert.equal(line.error, 'upstream_connect_failed');
    assert.equal(line.upstream, `127.0.0.1:${port}`);
    assert.equal(line.bytes_in, req.length);
    assert.equal(line.bytes_out, r.raw.length, 'the error response counts as bytes sent');
    assertTimings(line);
  });

  it('records no_route, without an upstream', async (t) => {
    const up = await httpBackend((_req, res) => res.end());
    t.after(() => up.close());
    const proxy = await proxyTo(t, {
      upstreams: [up.addr],
      routes: [{ match: { host: 'only.test' }, cluster: 'up' }],
    });
    const c = await connect(proxy.port, t);
    c.write('GET /x?y HTTP/1.1\r\nHost: other.test\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 404);
    const lines = await logLines(proxy, 1);
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line.status, 404);
    assert.equal(line.error, 'no_route');
    assert.equal(line.host, 'other.test');
    assert.equal(line.path, '/x');
    assert.equal('upstream' in line, false);
    assert.equal(line.bytes_out, r.raw.length);
    assert.equal(up.accepted, 0);
  });

  it('records a 504 when the upstream does not answer in time', async (t) => {
    const up = await httpBackend(() => {
      // Never answers.
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr], cluster: { response_timeout: '200ms' } });
    const c = await connect(proxy.port, t);
    c.write('GET /slow HTTP/1.1\r\nHost: app\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 504);
    const lines = await logLines(proxy, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 504);
    assert.equal(lines[0]!.error, 'upstream_timeout');
    assert.equal(lines[0]!.upstream, up.addr);
  });

  it('records an upstream reset mid-body with the status already sent and the bytes relayed', async (t) => {
    const up = await rawHttpBackend((_req, r) => {
      r.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      setTimeout(() => r.destroy(), 20);
      return false;
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr] });
    const c = await connect(proxy.port, t);
    c.write('GET /partial HTTP/1.1\r\nHost: app\r\n\r\n');
    await c.readUntil('\r\n\r\n');
    await c.waitBuffered(10);
    assert.equal(await c.waitEnded(3000), true, 'the truncated response ends with the connection');
    const lines = await logLines(proxy, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 200);
    assert.equal(lines[0]!.error, 'upstream_reset');
    const headLen = (lines[0]!.bytes_out as number) - 10;
    assert.ok(headLen > 0 && headLen < 200, `bytes_out ${lines[0]!.bytes_out} = head + the 10 body bytes`);
  });

  it('records a client that goes away mid-request as 499 downstream_closed', async (t) => {
    const got = deferred();
    const up = await httpBackend((req) => {
      req.once('data', () => got.resolve());
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr] });
    const c = await connect(proxy.port, t);
    c.write('POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\npartial');
    await got.promise;
    c.destroy();
    const lines = await logLines(proxy, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 499);
    assert.equal(lines[0]!.error, 'downstream_closed');
    assert.equal(
      lines[0]!.bytes_in,
      'POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\npartial'.length,
    );
  });

  it('records a malformed request it rejects', async (t) => {
    const up = await httpBackend((_req, res) => res.end());
    t.after(() => up.close());
    const proxy = await proxyTo(t, { upstreams: [up.addr] });
    const c = await connect(proxy.port, t);
    c.write('GET / HTTP/1.1\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 400);
    const lines = await logLines(proxy, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 400);
    assert.equal(lines[0]!.error, 'missing_host');
    assert.equal(lines[0]!.client, '127.0.0.1');
    assert.equal(up.accepted, 0);
  });
});
