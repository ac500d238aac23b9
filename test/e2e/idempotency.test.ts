/**
 * Idempotency-Key on a route with `idempotency:` (memory store, in process): the first request with
 * a key runs, a repeat gets its stored response marked `idempotent-replayed: true`, a repeat while the
 * first runs gets 409, the key on another request 422; proxy-generated errors and responses too large
 * to keep release the key. Each test counts the requests the backend saw.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string, n: number) => void;

async function counted(t: { after(fn: () => unknown): void }, handle: Handler) {
  const seen: string[] = [];
  const b = await httpBackend((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      seen.push(body);
      handle(req, res, body, seen.length);
    });
  });
  t.after(() => b.close());
  return { b, seen };
}

async function proxyTo(
  t: { after(fn: () => unknown): void },
  endpoints: string[],
  idempotency: Record<string, unknown> = {},
  route: Record<string, unknown> = {},
): Promise<TestProxy> {
  const p = await startProxy({
    config: { access_log: { enabled: true } },
    clusters: { up: { endpoints, outlier: { consecutive_gateway_errors: 0, consecutive_5xx: 0 } } },
    routes: [{ cluster: 'up', idempotency, ...route }],
  });
  t.after(() => p.close());
  return p;
}

const created: Handler = (_req, res, body, n) => {
  res.statusCode = 201;
  res.setHeader('x-order', String(n));
  res.end(`created ${n} from ${body}`);
};

function post(p: TestProxy, key: string | null, body: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'text/plain' };
  if (key !== null) headers['idempotency-key'] = key;
  return fetch(`${p.url}/orders`, { method: 'POST', headers, body });
}

describe('Idempotency-Key', () => {
  it('a repeat gets the first response (status, fields, body) and the backend sees one request', async (t) => {
    const { b, seen } = await counted(t, created);
    const p = await proxyTo(t, [b.addr]);
    const first = await post(p, 'order-1', 'two apples');
    assert.equal(first.status, 201);
    const firstBody = await first.text();
    assert.equal(firstBody, 'created 1 from two apples');
    assert.equal(first.headers.get('idempotent-replayed'), null);
    for (let i = 0; i < 3; i++) {
      const again = await post(p, 'order-1', 'two apples');
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(again.headers.get('x-order'), '1');
      assert.equal(await again.text(), firstBody);
    }
    assert.equal(seen.length, 1);
    // The quoted form of the draft is the same key.
    assert.equal((await post(p, '"order-1"', 'two apples')).headers.get('idempotent-replayed'), 'true');
    // Another key, or no key, runs.
    assert.equal(await (await post(p, 'order-2', 'two apples')).text(), 'created 2 from two apples');
    assert.equal(await (await post(p, null, 'two apples')).text(), 'created 3 from two apples');
  });

  it('a repeat while the first is in flight gets 409; the same key on another request gets 422', async (t) => {
    const held: (() => void)[] = [];
    const { b, seen } = await counted(t, (req, res, body, n) => held.push(() => created(req, res, body, n)));
    const p = await proxyTo(t, [b.addr]);
    const first = post(p, 'k', 'one');
    await waitUntil(() => held.length === 1, 'the first request at the backend', { timeoutMs: 10_000 });
    const during = await post(p, 'k', 'one');
    assert.equal(during.status, 409);
    assert.equal(during.headers.get('muxgate-error'), 'idempotency_in_flight');
    const other = await post(p, 'k', 'another body');
    assert.equal(other.status, 422);
    assert.equal(other.headers.get('muxgate-error'), 'idempotency_key_reused');
    held[0]!();
    assert.equal((await first).status, 201);
    assert.equal((await post(p, 'k', 'another body')).status, 422, 'after completion too');
    assert.equal(seen.length, 1);
  });

  it('a proxy-generated error releases the key: the retry runs', async (t) => {
    // The first request's connection is reset (502 upstream_reset from muxgate), the second answered.
    const { b, seen } = await counted(t, (req, res, body, n) => {
      if (n === 1) req.socket.destroy();
      else created(req, res, body, n);
    });
    const p = await proxyTo(t, [b.addr]);
    const failed = await post(p, 'k', 'x');
    assert.equal(failed.status, 502);
    assert.equal(failed.headers.get('muxgate-error'), 'upstream_reset');
    const retry = await post(p, 'k', 'x');
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get('idempotent-replayed'), null);
    assert.equal(seen.length, 2);
    assert.equal((await post(p, 'k', 'x')).headers.get('idempotent-replayed'), 'true');
  });

  it('an upstream 500 is an answer: stored and replayed', async (t) => {
    const { b, seen } = await counted(t, (_req, res) => {
      res.statusCode = 500;
      res.end('upstream failed');
    });
    const p = await proxyTo(t, [b.addr]);
    assert.equal((await post(p, 'k', 'x')).status, 500);
    const again = await post(p, 'k', 'x');
    assert.equal(again.status, 500);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(seen.length, 1);
  });

  it('a response larger than max_body_bytes is passed on whole, not stored, and the key released', async (t) => {
    const big = 'z'.repeat(4096);
    const { b, seen } = await counted(t, (_req, res) => res.end(big));
    const p = await proxyTo(t, [b.addr], { max_body_bytes: '1KiB' });
    assert.equal(await (await post(p, 'k', 'x')).text(), big);
    await waitUntil(() => p.eventLog.some((l) => String(l.msg).includes('too large to store')), 'the warning', {
      timeoutMs: 10_000,
    });
    const again = await post(p, 'k', 'x');
    assert.equal(await again.text(), big);
    assert.equal(again.headers.get('idempotent-replayed'), null);
    assert.equal(seen.length, 2);
  });

  it('a chunked upstream body is stored decoded and replayed with a content-length', async (t) => {
    const { b, seen } = await counted(t, (_req, res) => {
      res.write('part one, ');
      setImmediate(() => res.end('part two'));
    });
    const p = await proxyTo(t, [b.addr]);
    assert.equal(await (await post(p, 'k', 'x')).text(), 'part one, part two');
    const again = await post(p, 'k', 'x');
    assert.equal(again.headers.get('content-length'), String('part one, part two'.length));
    assert.equal(again.headers.get('transfer-encoding'), null);
    assert.equal(await again.text(), 'part one, part two');
    assert.equal(seen.length, 1);
  });

  it('refuses a malformed key (400) and a body above max_request_bytes (413), forwarding nothing', async (t) => {
    const { b, seen } = await counted(t, created);
    const p = await proxyTo(t, [b.addr], { max_request_bytes: 100 });
    const long = await post(p, 'k'.repeat(256), 'x');
    assert.equal(long.status, 400);
    assert.equal(long.headers.get('muxgate-error'), 'invalid_idempotency_key');
    const big = await post(p, 'k2', 'y'.repeat(101));
    assert.equal(big.status, 413);
    assert.equal(big.headers.get('muxgate-error'), 'idempotency_body_too_large');
    assert.equal(seen.length, 0);
  });

  it('key_scope: the same key from two clients is two keys', async (t) => {
    const { b, seen } = await counted(t, created);
    const p = await proxyTo(t, [b.addr], { key_scope: 'authorization' });
    const as = (who: string) =>
      fetch(`${p.url}/orders`, {
        method: 'POST',
        headers: { 'idempotency-key': 'same', authorization: `Bearer ${who}` },
        body: 'x',
      });
    assert.equal(await (await as('alice')).text(), 'created 1 from x');
    assert.equal(await (await as('bob')).text(), 'created 2 from x');
    assert.equal((await as('alice')).headers.get('idempotent-replayed'), 'true');
    assert.equal(seen.length, 2);
  });

  it('a keyed POST is retried on the next endpoint when its connection was reset', async (t) => {
    const a = await counted(t, (req) => req.socket.destroy());
    const b = await counted(t, created);
    const p = await proxyTo(t, [a.b.addr, b.b.addr], {}, { retry: { backoff: { base: '1ms', max: '1ms' } } });
    const res = await post(p, 'k', 'pay 10');
    assert.equal(res.status, 201);
    assert.deepEqual([a.seen.length, b.seen.length], [1, 1]);
  });

  it('an HTTP/2 client gets the replay too', async (t) => {
    const { b, seen } = await counted(t, created);
    const h2 = await startProxy({
      listener: { protocol: 'http2' },
      clusters: { up: { endpoints: [b.addr] } },
      routes: [{ cluster: 'up', idempotency: {} }],
    });
    t.after(() => h2.close());
    const session = http2.connect(h2.url);
    t.after(() => session.close());
    const once = () =>
      new Promise<{ status: number; replayed: unknown; body: string }>((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': '/orders', 'idempotency-key': 'h2' });
        let body = '';
        let status = 0;
        let replayed: unknown;
        req.on('response', (h) => {
          status = Number(h[':status']);
          replayed = h['idempotent-replayed'];
        });
        req.setEncoding('utf8');
        req.on('data', (c: string) => {
          body += c;
        });
        req.on('end', () => resolve({ status, replayed, body }));
        req.on('error', reject);
        req.end('via h2');
      });
    const first = await once();
    const again = await once();
    assert.equal(first.status, 201);
    assert.equal(again.status, 201);
    assert.equal(again.replayed, 'true');
    assert.equal(again.body, first.body);
    assert.equal(seen.length, 1);
  });
});
