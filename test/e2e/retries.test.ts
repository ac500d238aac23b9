/**
 * A route's `retry:`: failed attempts go again to another endpoint, only when the request may be sent
 * twice (an idempotent method; any method when nothing was sent), never after a response byte reached
 * the client, with its body replayed only when it was kept whole within retry_buffer_bytes. Each test
 * counts the requests every backend saw, so a duplicate would show.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { MetricsExporter } from '../../src/admin/metrics.ts';
import { type Backend, httpBackend, rawBackend, readHead } from '../helpers/backend.ts';
import { h2cBackend } from '../helpers/h2-backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { gate, waitUntil } from '../helpers/wait.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

/** A backend that reads each request body in full, counts requests, then calls `handle`. */
async function counting(t: { after(fn: () => unknown): void }, handle: Handler) {
  const seen: { method: string; body: Buffer }[] = [];
  const b = await httpBackend((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push({ method: req.method ?? '', body });
      handle(req, res, body);
    });
  });
  t.after(() => b.close());
  return { b, seen };
}

const answer =
  (status: number, text: string): Handler =>
  (_req, res) => {
    res.statusCode = status;
    res.end(text);
  };

const resetAfterBody: Handler = (req) => req.socket.destroy();

/** Round robin over [first, second]: the first request goes to `first`, its retry to `second`. */
async function proxyOver(
  t: { after(fn: () => unknown): void },
  first: string,
  second: string,
  retry: Record<string, unknown>,
  more: { routes?: Record<string, unknown>; cluster?: Record<string, unknown> } = {},
): Promise<TestProxy> {
  const p = await startProxy({
    config: { access_log: { enabled: true } },
    clusters: {
      up: {
        endpoints: [first, second],
        lb: 'round_robin',
        // Ejection would change which endpoint the next request picks: not what these tests look at.
        outlier: { consecutive_5xx: 0, consecutive_gateway_errors: 0, consecutive_connect_failures: 0 },
        ...more.cluster,
      },
    },
    routes: [{ cluster: 'up', retry: { backoff: { base: '1ms', max: '5ms' }, ...retry }, ...more.routes }],
  });
  t.after(() => p.close());
  return p;
}

function lastLine(p: TestProxy): Record<string, unknown> {
  const line = p.accessLog.at(-1);
  assert.ok(line !== undefined, 'an access log line');
  return line;
}

describe('retries (route retry:)', () => {
  it('gateway-error: a 503 from one endpoint is retried on the other; the client sees only the 200', async (t) => {
    const a = await counting(t, answer(503, 'busy'));
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['gateway-error'] });
    const res = await fetch(`${p.url}/x`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'fine');
    assert.equal(a.seen.length, 1);
    assert.equal(b.seen.length, 1);
    assert.equal(lastLine(p).attempts, 2);
    const snap = p.server.snapshot();
    assert.equal(snap.clusters[0]!.retries, 1);
    const text = await new MetricsExporter().render(snap);
    assert.match(text, /muxgate_retries_total\{cluster="up"\} 1/);
  });

  it('statuses: a listed status is retried; without gateway-error a 503 is relayed as it is', async (t) => {
    const a = await counting(t, answer(429, 'slow down'));
    const b = await counting(t, answer(503, 'busy'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['reset'], statuses: [429] });
    // 429 at a: retried to b, whose 503 is not in the list: relayed (an upstream answer, not a muxgate error).
    const res = await fetch(`${p.url}/x`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'busy');
    assert.equal(res.headers.get('muxgate-error'), null);
    assert.equal(a.seen.length + b.seen.length, 2);
  });

  it('attempts: when every try fails, the last answer is relayed and the log says how many tries', async (t) => {
    const a = await counting(t, answer(503, 'a busy'));
    const b = await counting(t, answer(503, 'b busy'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['gateway-error'], attempts: 3 });
    const res = await fetch(`${p.url}/x`);
    assert.equal(res.status, 503);
    await res.text();
    assert.equal(a.seen.length + b.seen.length, 3);
    const line = lastLine(p);
    assert.equal(line.attempts, 3);
    assert.equal(line.retry_skipped, 'attempts');
  });

  it('reset: a GET whose connection is reset before any response byte is retried', async (t) => {
    const a = await counting(t, resetAfterBody);
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, {});
    const res = await fetch(`${p.url}/x`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'fine');
    assert.deepEqual([a.seen.length, b.seen.length], [1, 1]);
  });

  it('a PUT body is replayed byte for byte on the next endpoint', async (t) => {
    const a = await counting(t, resetAfterBody);
    const b = await counting(t, (_req, res, body) => res.end(`got ${body.length}`));
    const p = await proxyOver(t, a.b.addr, b.b.addr, {});
    const body = Buffer.alloc(20_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const res = await fetch(`${p.url}/put`, { method: 'PUT', body });
    assert.equal(await res.text(), `got ${body.length}`);
    assert.ok(a.seen[0]!.body.equals(body), 'the first endpoint got the body');
    assert.ok(b.seen[0]!.body.equals(body), 'the replay is the same bytes');
  });

  it('a replayed body is the bytes the client sent, though other reads reused the shared read buffer meanwhile', async (t) => {
    // The body is read into the one buffer every plain connection's reads share; what is kept for a
    // replay must be a copy. Another client's request (a large head, read into that same buffer) and
    // its answer pass while the first attempt is still open; only then does that attempt fail.
    const hold = gate();
    const a = await counting(t, (req) => {
      void hold.promise.then(() => req.socket.destroy());
    });
    const b = await counting(t, (_req, res, body) => res.end(`got ${body.length}`));
    const p = await proxyOver(t, a.b.addr, b.b.addr, {});
    const body = Buffer.alloc(20_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13 + 5) & 0xff;
    const put = fetch(`${p.url}/put`, { method: 'PUT', body });
    await waitUntil(() => a.seen.length === 1, 'the first endpoint has the body');
    const other = await fetch(`${p.url}/other`, { headers: { 'x-pad': 'z'.repeat(12_000) } });
    assert.equal(await other.text(), 'got 0');
    hold.open();
    const res = await put;
    assert.equal(await res.text(), `got ${body.length}`);
    assert.equal(b.seen.length, 2);
    assert.ok(b.seen[1]!.body.equals(body), 'the replay is the bytes the client sent');
  });

  it('a body larger than retry_buffer_bytes is not replayed: 502 and retry_skipped=body_too_large', async (t) => {
    const a = await counting(t, resetAfterBody);
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { retry_buffer_bytes: '1KiB' });
    const res = await fetch(`${p.url}/put`, { method: 'PUT', body: Buffer.alloc(4096, 1) });
    assert.equal(res.status, 502);
    assert.equal(res.headers.get('muxgate-error'), 'upstream_reset');
    assert.deepEqual([a.seen.length, b.seen.length], [1, 0]);
    assert.equal(lastLine(p).retry_skipped, 'body_too_large');
    assert.equal(p.server.snapshot().clusters[0]!.retries_skipped.body_too_large, 1);
  });

  it('per_try_timeout: an endpoint that hangs is given up on and the next one answers', async (t) => {
    const hung: http.ServerResponse[] = [];
    const a = await counting(t, (_req, res) => hung.push(res));
    t.after(() => {
      for (const r of hung) r.destroy();
    });
    const b = await counting(t, answer(200, 'fine'));
    // The route's response_timeout is long: only the per-try timeout can end the first attempt.
    const p = await proxyOver(
      t,
      a.b.addr,
      b.b.addr,
      { per_try_timeout: '300ms' },
      { routes: { response_timeout: '60s' } },
    );
    const res = await fetch(`${p.url}/x`);
    assert.equal(await res.text(), 'fine');
    assert.deepEqual([a.seen.length, b.seen.length], [1, 1]);
  });

  it('budget: with no room for retries, a failed attempt is final and counted as budget', async (t) => {
    const a = await counting(t, answer(503, 'busy'));
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['gateway-error'], budget: { ratio: 0, min_retries: 0 } });
    const res = await fetch(`${p.url}/x`);
    assert.equal(res.status, 503);
    await res.text();
    assert.equal(lastLine(p).retry_skipped, 'budget');
  });

  it('max_retries: one exchange retrying holds the breaker; the next failure is final (circuit_open)', async (t) => {
    // One endpoint: the first try of each path gets 503, a second try of a path is held unanswered.
    const tries = new Map<string, number>();
    const held: http.ServerResponse[] = [];
    const a = await counting(t, (req, res) => {
      const n = (tries.get(req.url ?? '') ?? 0) + 1;
      tries.set(req.url ?? '', n);
      if (n === 1) answer(503, 'busy')(req, res, Buffer.alloc(0));
      else held.push(res);
    });
    t.after(() => {
      for (const r of held) r.destroy();
    });
    const p = await startProxy({
      config: { access_log: { enabled: true } },
      clusters: {
        up: {
          endpoints: [a.b.addr],
          outlier: { consecutive_5xx: 0, consecutive_gateway_errors: 0 },
          circuit_breakers: { max_retries: 1 },
        },
      },
      routes: [{ cluster: 'up', retry: { on: ['gateway-error'], backoff: { base: '1ms', max: '1ms' } } }],
    });
    t.after(() => p.close());
    const first = fetch(`${p.url}/1`);
    await waitUntil(() => held.length === 1, 'the retry of /1 at the backend', { timeoutMs: 10_000 });
    const second = await fetch(`${p.url}/2`);
    assert.equal(second.status, 503);
    assert.equal(await second.text(), 'busy');
    assert.equal(lastLine(p).retry_skipped, 'circuit_open');
    assert.equal(p.server.snapshot().clusters[0]!.circuit_open.max_retries, 1);
    held[0]!.end('late');
    assert.equal(await (await first).text(), 'late');
  });

  it('HTTP/2 upstream: a 503 on one stream is retried on the other endpoint', async (t) => {
    let aStreams = 0;
    const a = await h2cBackend({
      onStream: (stream) => {
        aStreams++;
        stream.respond({ ':status': 503 });
        stream.end('busy');
      },
    });
    t.after(() => a.close());
    const b = await h2cBackend();
    t.after(() => b.close());
    const p = await proxyOver(t, a.addr, b.addr, { on: ['gateway-error'] }, { cluster: { protocol: 'http2' } });
    const res = await fetch(`${p.url}/via-h2`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '/via-h2');
    assert.equal(aStreams, 1);
  });
});

/**
 * POSTs without an Idempotency-Key cut at every point: the backends together must see each at most
 * once, except when nothing was sent (a refused connect), where the other endpoint gets it once.
 */
describe('retries never duplicate a POST without a key', () => {
  it('refused connect (before the head is sent): sent once, to the other endpoint', async (t) => {
    const b = await counting(t, answer(200, 'fine'));
    // Port 1 on loopback: nothing listens there, the connect is refused.
    const p = await proxyOver(t, '127.0.0.1:1', b.b.addr, {});
    const res = await fetch(`${p.url}/post`, { method: 'POST', body: 'order=1' });
    assert.equal(await res.text(), 'fine');
    assert.equal(b.seen.length, 1);
    assert.equal(b.seen[0]!.body.toString(), 'order=1');
  });

  it('reset after the body: not retried (502), the backend saw it once', async (t) => {
    const a = await counting(t, resetAfterBody);
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['reset', 'gateway-error'] });
    const res = await fetch(`${p.url}/post`, { method: 'POST', body: 'order=2' });
    assert.equal(res.status, 502);
    assert.deepEqual([a.seen.length, b.seen.length], [1, 0]);
    assert.equal(lastLine(p).retry_skipped, 'not_idempotent');
  });

  it('a 503 answer: relayed, not retried', async (t) => {
    const a = await counting(t, answer(503, 'busy'));
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.b.addr, b.b.addr, { on: ['gateway-error'] });
    const res = await fetch(`${p.url}/post`, { method: 'POST', body: 'order=3' });
    assert.equal(res.status, 503);
    assert.deepEqual([a.seen.length, b.seen.length], [1, 0]);
  });

  it('after the response started: the client sees the truncation, nothing is sent again', async (t) => {
    let aCount = 0;
    const a: Backend<net.Server> = await rawBackend((s) => {
      s.on('error', () => {});
      void readHead(s).then(() => {
        aCount++;
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
        setImmediate(() => s.resetAndDestroy());
      });
    });
    t.after(() => a.close());
    const b = await counting(t, answer(200, 'fine'));
    const p = await proxyOver(t, a.addr, b.b.addr, { on: ['reset', 'gateway-error'] });
    // GET too: once a response byte went to the client, no method is retried.
    for (const method of ['POST', 'GET']) {
      const res = await fetch(`${p.url}/cut`, { method, body: method === 'POST' ? 'x' : undefined });
      assert.equal(res.status, 200);
      await assert.rejects(res.text(), `${method}: the body is cut short`);
      // Round robin: the next request would go to b; send one there so the next test round starts at a.
      if (method === 'POST') await (await fetch(`${p.url}/b`)).text();
    }
    assert.equal(aCount, 2);
    assert.equal(b.seen.length, 1, 'b saw only the request sent to it on purpose');
  });
});
