/**
 * Every upstream failure end to end: the status and `muxgate-error` code the client gets (or, once a
 * response is half-sent, the dropped connection), what happens to the upstream connection, and the
 * per-code counts in the stats snapshot.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { blackhole, httpBackend, rawBackend, readHead } from '../helpers/backend.ts';
import { RawClient } from '../helpers/client.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { closedPort } from '../helpers/wire.ts';

function get(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: errors.test\r\n\r\n`;
}

/** GET through the proxy with Node's fetch; returns the status, error code header and body. */
async function fetchFrom(proxy: TestProxy, path = '/'): Promise<{ status: number; code: string | null; body: string }> {
  const res = await fetch(`${proxy.url}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, code: res.headers.get('muxgate-error'), body: await res.text() };
}

/** The listener's and the clusters' per-code error counts must both be exactly `expected`. */
function assertErrorCounts(proxy: TestProxy, expected: Record<string, number>): void {
  const snap = proxy.server.snapshot();
  assert.deepEqual(snap.listeners[0]?.error_codes, expected, 'listener error_codes');
  const clusters: Record<string, number> = {};
  for (const c of snap.clusters) {
    for (const [code, n] of Object.entries(c.error_codes)) clusters[code] = (clusters[code] ?? 0) + n;
  }
  assert.deepEqual(clusters, expected, 'cluster error_codes');
}

function endpointSnap(proxy: TestProxy, port: number) {
  const e = proxy.server.snapshot().clusters[0]?.endpoints.find((x) => x.key.endsWith(`:${port}`));
  assert.ok(e, `endpoint on port ${port}`);
  return e;
}

/** Sends one request on a raw connection and returns everything received until the proxy closes it. */
async function truncatedResponse(proxy: TestProxy, path: string): Promise<string> {
  const c = await RawClient.connect(proxy.port);
  try {
    c.send(get(path));
    await assert.rejects(c.response(), /connection closed before a complete response/);
    assert.equal(c.ended, true);
    return c.unread.toString('latin1');
  } finally {
    c.close();
  }
}

describe('connect failures', () => {
  test('nothing listening: 502 upstream_connect_failed', { timeout: 15_000 }, async (t) => {
    const port = await closedPort();
    const proxy = await startProxy({ upstreams: [`127.0.0.1:${port}`] });
    t.after(() => proxy.close());
    const r = await fetchFrom(proxy);
    assert.equal(r.status, 502);
    assert.equal(r.code, 'upstream_connect_failed');
    assert.match(r.body, /upstream_connect_failed/);
    assertErrorCounts(proxy, { upstream_connect_failed: 1 });
    const e = endpointSnap(proxy, port);
    assert.equal(e.errors, 1);
    // The only endpoint is still healthy, so the one connect retry went to it again.
    assert.equal(e.pool.connect_failures, 2);
  });

  test('connect_timeout: a connect that hangs gets 502 upstream_connect_failed', { timeout: 15_000 }, async (t) => {
    // 10.255.255.1-style blackholes are unusable where outbound connects are intercepted (they
    // connect at once), so the hanging connect is made locally: see `blackhole`.
    const hole = await blackhole();
    t.after(() => hole.close());
    if (!hole.hangs) {
      t.skip('connects to a full accept queue do not hang on this kernel, so no connect can be made to time out');
      return;
    }
    const CONNECT_TIMEOUT_MS = 300;
    const proxy = await startProxy({
      upstreams: [hole.addr],
      cluster: { pool: { connect_timeout: `${CONNECT_TIMEOUT_MS}ms` } },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    const sentAt = performance.now();
    c.send(get('/'));
    // This poll runs on the proxy's own event loop, and the connect it looks for lasts at least
    // connect_timeout (then the retry as long again): it cannot slip between two polls.
    await waitUntil(() => endpointSnap(proxy, hole.port).pool.connecting === 1, 'a connect in progress');
    const r = await c.response(10_000);
    const elapsed = performance.now() - sentAt;
    assert.equal(r.status, 502);
    assert.equal(r.headers['muxgate-error'], 'upstream_connect_failed');
    // Each attempt began after the request was sent and was given up at its deadline, never before
    // (deadlines run on performance.now(), this clock): a lower bound no loaded machine can break,
    // that a connect failing fast (refused, or a deadline cut short) does.
    assert.ok(
      elapsed >= 2 * CONNECT_TIMEOUT_MS,
      `the 502 came ${elapsed.toFixed(0)} ms after the request: two ${CONNECT_TIMEOUT_MS} ms connect timeouts take longer`,
    );
    const e = endpointSnap(proxy, hole.port);
    assert.equal(e.pool.connect_failures, 2, 'both attempts timed out');
    assert.equal(e.pool.connecting, 0, 'no connect left pending');
    assert.equal(e.pool.open, 0);
    assertErrorCounts(proxy, { upstream_connect_failed: 1 });
  });

  test('a failed connect is retried once on another endpoint when one is healthy', { timeout: 15_000 }, async (t) => {
    const dead = await closedPort();
    const backend = await httpBackend((_req, res) => res.end('alive'));
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${dead}`, backend.addr],
      cluster: { outlier: { consecutive_connect_failures: 100 } },
    });
    t.after(() => proxy.close());
    for (let i = 0; i < 6; i++) {
      const r = await fetchFrom(proxy);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'alive');
    }
    // Each request tried the dead endpoint at most once, then moved on to the live one.
    const failures = endpointSnap(proxy, dead).pool.connect_failures;
    assert.ok(failures >= 1 && failures <= 6, `dead endpoint connect failures: ${failures}`);
    t.diagnostic(`connect failures on the dead endpoint over 6 requests: ${failures}`);
    assert.equal(endpointSnap(proxy, dead).errors, 0);
    assert.equal(endpointSnap(proxy, backend.port).requests, 6);
    assert.equal(backend.accepted, 1, 'the live endpoint reused one connection');
    assertErrorCounts(proxy, {});
  });
});

describe('passive health', () => {
  test('after consecutive_connect_failures the endpoint is ejected (503 no_healthy_endpoint without panic), after the ejection tried again', {
    timeout: 15_000,
  }, async (t) => {
    const port = await closedPort();
    // ejection_time is long next to a loaded machine's delays: the requests made while ejected must
    // all fall inside it.
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${port}`],
      // panic off: with every endpoint ejected, the cluster answers 503 instead of trying them all.
      cluster: { outlier: { consecutive_connect_failures: 3, base_ejection_time: '2s', panic: false } },
    });
    t.after(() => proxy.close());
    // Request 1: two failed connects (the retry goes to the same, still healthy, endpoint).
    let r = await fetchFrom(proxy);
    assert.deepEqual([r.status, r.code], [502, 'upstream_connect_failed']);
    assert.equal(endpointSnap(proxy, port).healthy, true);
    assert.equal(endpointSnap(proxy, port).pool.connect_failures, 2);
    // Request 2: the third failure in a row ejects it; nothing is left to retry on.
    r = await fetchFrom(proxy);
    assert.deepEqual([r.status, r.code], [502, 'upstream_connect_failed']);
    assert.equal(endpointSnap(proxy, port).healthy, false);
    assert.equal(endpointSnap(proxy, port).pool.connect_failures, 3);
    // While ejected: refused without a connect attempt.
    r = await fetchFrom(proxy);
    assert.deepEqual([r.status, r.code], [503, 'no_healthy_endpoint']);
    assert.equal(endpointSnap(proxy, port).pool.connects_total, 3);
    await waitUntil(() => endpointSnap(proxy, port).healthy, 'the ejection to end', { timeoutMs: 5000 });
    r = await fetchFrom(proxy);
    assert.deepEqual([r.status, r.code], [502, 'upstream_connect_failed'], 'tried again after ejection_time');
    assert.ok(endpointSnap(proxy, port).pool.connects_total > 3);
    assertErrorCounts(proxy, { upstream_connect_failed: 3, no_healthy_endpoint: 1 });
  });

  test('an ejected endpoint is routed around while a healthy one serves, then tried again', {
    timeout: 15_000,
  }, async (t) => {
    const dead = await closedPort();
    const backend = await httpBackend((_req, res) => res.end('alive'));
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${dead}`, backend.addr],
      // Long enough that the 8 requests below all fall inside the ejection, even on a loaded machine.
      cluster: { outlier: { consecutive_connect_failures: 2, base_ejection_time: '2s' } },
    });
    t.after(() => proxy.close());
    for (let i = 0; i < 8; i++) assert.equal((await fetchFrom(proxy)).status, 200);
    assert.equal(endpointSnap(proxy, dead).healthy, false);
    assert.equal(endpointSnap(proxy, dead).pool.connect_failures, 2, 'no connects to it once ejected');
    await waitUntil(() => endpointSnap(proxy, dead).healthy, 'the ejection to end', { timeoutMs: 5000 });
    for (let i = 0; i < 4; i++) assert.equal((await fetchFrom(proxy)).status, 200);
    assert.ok(endpointSnap(proxy, dead).pool.connect_failures > 2, 'tried again after ejection_time');
    assertErrorCounts(proxy, {});
  });
});

describe('upstream resets', () => {
  for (const how of ['reset', 'fin'] as const) {
    test(`the upstream closes (${how}) before responding: 502 upstream_reset`, { timeout: 15_000 }, async (t) => {
      const backend = await rawBackend(async (s) => {
        s.on('error', () => {});
        s.on('end', () => s.end());
        await readHead(s);
        if (how === 'reset') s.resetAndDestroy();
        else s.end();
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr] });
      t.after(() => proxy.close());
      const r = await fetchFrom(proxy);
      assert.deepEqual([r.status, r.code], [502, 'upstream_reset']);
      // A fresh connection that fails is not the keep-alive race: no retry.
      assert.equal(backend.accepted, 1);
      assertErrorCounts(proxy, { upstream_reset: 1 });
    });
  }

  const midBody: Record<string, string> = {
    'content-length': 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789',
    chunked: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n',
    'close-delimited': 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789',
  };
  for (const [framing, bytes] of Object.entries(midBody)) {
    test(`a reset mid-body (${framing}) drops the client connection with the body truncated`, {
      timeout: 15_000,
    }, async (t) => {
      const backend = await rawBackend(async (s) => {
        s.on('error', () => {});
        s.on('end', () => s.end());
        await readHead(s);
        s.write(bytes);
        setTimeout(() => s.resetAndDestroy(), 50);
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr] });
      t.after(() => proxy.close());

      const got = await truncatedResponse(proxy, '/');
      assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(got.includes('0123456789'), 'the bytes received before the reset were relayed');
      assert.ok(!got.includes('\r\n0\r\n\r\n'), 'no terminating chunk: the body does not look complete');

      // Node's fetch, too, must see a failed body rather than a complete 200.
      const res = await fetch(proxy.url, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      await assert.rejects(res.text());
      assertErrorCounts(proxy, { upstream_reset: 2 });
    });
  }
});

describe('protocol errors', () => {
  const bad: Record<string, string> = {
    'a garbage status line': 'HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok',
    'not HTTP at all': 'SSH-2.0-OpenSSH_9.6\r\n\r\n',
    'bare LF line endings': 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
    'both Content-Length and Transfer-Encoding':
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'conflicting Content-Lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok',
    'a 101 nobody asked for': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  };
  for (const [what, response] of Object.entries(bad)) {
    test(`${what}: 502 upstream_protocol_error, upstream connection not reused`, { timeout: 15_000 }, async (t) => {
      const backend = await rawBackend(async (s) => {
        s.on('error', () => {});
        s.on('end', () => s.end());
        await readHead(s);
        s.write(response); // and keep the connection open: the proxy must be the one to drop it
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr], cluster: { response_timeout: '3s' } });
      t.after(() => proxy.close());
      const c = await RawClient.connect(proxy.port);
      t.after(() => c.close());
      const r = await c.request(get('/'));
      assert.equal(r.status, 502);
      assert.equal(r.headers['muxgate-error'], 'upstream_protocol_error');
      await waitUntil(() => backend.open === 0, 'the proxy to close the upstream connection');
      // The downstream connection stays usable; the next request gets a new upstream connection.
      const r2 = await c.request(get('/'));
      assert.equal(r2.headers['muxgate-error'], 'upstream_protocol_error');
      assert.equal(backend.accepted, 2);
      assertErrorCounts(proxy, { upstream_protocol_error: 2 });
    });
  }
});

describe('response timeouts', () => {
  /** Never answers /hang; answers /slow/<ms> after that many ms. */
  async function slowBackend() {
    return httpBackend((req, res) => {
      const m = /^\/slow\/(\d+)/.exec(req.url ?? '');
      if (m !== null) setTimeout(() => res.end('late but fine'), Number(m[1]));
    });
  }

  test('no response head within response_timeout: 504 upstream_timeout', { timeout: 15_000 }, async (t) => {
    const backend = await slowBackend();
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], cluster: { response_timeout: '300ms' } });
    t.after(() => proxy.close());
    const r = await fetchFrom(proxy, '/hang');
    assert.deepEqual([r.status, r.code], [504, 'upstream_timeout']);
    await waitUntil(() => backend.open === 0, 'the timed-out upstream connection to be closed');
    assertErrorCounts(proxy, { upstream_timeout: 1 });
  });

  test('a route response_timeout overrides the cluster one, both shorter and longer', {
    timeout: 15_000,
  }, async (t) => {
    const backend = await slowBackend();
    t.after(() => backend.close());
    // Every answer comes at least 1 s away from the timeout that decides it (a loaded machine
    // runs timers late; the sweeper adds up to a tick).
    const proxy = await startProxy({
      upstreams: [backend.addr],
      cluster: { response_timeout: '1500ms' },
      routes: [
        { match: { path: { prefix: '/impatient/' } }, cluster: 'up', response_timeout: '200ms', prefix_rewrite: '/' },
        { match: { path: { prefix: '/patient/' } }, cluster: 'up', response_timeout: '5s', prefix_rewrite: '/' },
        { cluster: 'up' },
      ],
    });
    t.after(() => proxy.close());
    const [impatient, patient, cluster, clusterOk] = await Promise.all([
      fetchFrom(proxy, '/impatient/slow/1200'),
      fetchFrom(proxy, '/patient/slow/3000'),
      fetchFrom(proxy, '/slow/3000'),
      fetchFrom(proxy, '/slow/100'),
    ]);
    assert.deepEqual([impatient.status, impatient.code], [504, 'upstream_timeout'], 'route timeout 200ms < 1200ms');
    assert.deepEqual([patient.status, patient.body], [200, 'late but fine'], 'route timeout 5s > 3000ms');
    assert.deepEqual([cluster.status, cluster.code], [504, 'upstream_timeout'], 'cluster timeout 1500ms < 3000ms');
    assert.deepEqual([clusterOk.status, clusterOk.body], [200, 'late but fine']);
    assertErrorCounts(proxy, { upstream_timeout: 2 });
  });

  test('a body that stalls beyond response_timeout drops the client connection', { timeout: 15_000 }, async (t) => {
    const backend = await rawBackend(async (s) => {
      s.on('error', () => {});
      s.on('end', () => s.end());
      await readHead(s);
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789'); // then nothing more
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], cluster: { response_timeout: '300ms' } });
    t.after(() => proxy.close());
    const got = await truncatedResponse(proxy, '/');
    assert.ok(got.endsWith('\r\n\r\n0123456789'), JSON.stringify(got));
    await waitUntil(() => backend.open === 0, 'the stalled upstream connection to be closed');
    assertErrorCounts(proxy, { upstream_timeout: 1 });
  });
});

describe('wrong Content-Length from the upstream', () => {
  test('declares 100 bytes, sends 10 and closes: the client sees a truncated connection', {
    timeout: 15_000,
  }, async (t) => {
    let n = 0;
    const backend = await rawBackend(async (s) => {
      s.on('error', () => {});
      s.on('end', () => s.end());
      await readHead(s);
      if (++n === 1) s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr] });
    t.after(() => proxy.close());
    const got = await truncatedResponse(proxy, '/');
    assert.match(got, /\r\ncontent-length: 100\r\n/i);
    assert.ok(got.endsWith('\r\n\r\n0123456789'), JSON.stringify(got));
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    const r = await c.request(get('/'));
    assert.deepEqual([r.status, r.body.toString()], [200, 'next']);
    assert.equal(backend.accepted, 2);
    assertErrorCounts(proxy, { upstream_reset: 1 });
  });

  test('declares 5 bytes, sends 11: the client gets 5, the upstream connection is not reused', {
    timeout: 15_000,
  }, async (t) => {
    let n = 0;
    const backend = await rawBackend(async (s) => {
      s.on('error', () => {});
      s.on('end', () => s.end());
      await readHead(s);
      // Keeps the connection open after the extra bytes: only the proxy can decide not to reuse it.
      if (++n === 1) s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world');
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr] });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    const r1 = await c.request(get('/1'));
    assert.deepEqual([r1.status, r1.body.toString()], [200, 'hello']);
    await waitUntil(() => backend.open === 0, 'the desynchronised upstream connection to be closed');
    const r2 = await c.request(get('/2'));
    assert.deepEqual([r2.status, r2.body.toString()], [200, 'second'], 'the leftover " world" never reached a client');
    assert.equal(c.unread.length, 0);
    assert.equal(backend.accepted, 2);
    assertErrorCounts(proxy, {});
  });
});
