/**
 * The shared cache (route `cache:`, `cache_zones`) against a backend that counts its requests: what
 * RFC 9111 lets a shared cache store and reuse (max-age, s-maxage, no-store, private, Authorization,
 * Vary), coalescing (1,000 concurrent misses, one upstream request; an answer that may not be shared
 * sends the waiters upstream; a failure reaches each waiter once), revalidation (304 refreshes the
 * stored fields), stale-if-error, conditional requests, ranges and HEAD from a stored GET, unsafe
 * methods invalidating, bypass rules, purge by URL, prefix and tag through the admin API, Cache-Status.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { AdminServer } from '../../src/admin/admin-server.ts';
import type { CacheZone } from '../../src/cache/cache-zone.ts';
import { applyAdminCommand } from '../../src/runtime/admin-command.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

const run = promisify(execFile);

/**
 * A hit on a max-age=600 object. Its ttl is freshness left, counted from the response's Date (whole
 * seconds), so it reads 600 or a little less depending on where in a second the test runs.
 */
const HIT_600 = /^muxgate; hit; ttl=(600|59\d)$/;

interface Setup {
  proxy: TestProxy;
  url: string;
  zone: CacheZone;
  /** Upstream requests per path. */
  hits: Map<string, number>;
  seen: http.IncomingMessage[];
  backendPort: number;
  closeBackend(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void | Promise<void>;

async function setup(
  t: TestContext,
  handler: Handler,
  cache: Record<string, unknown> = {},
  zone: Record<string, unknown> = {},
  config: Record<string, unknown> = {},
): Promise<Setup> {
  const hits = new Map<string, number>();
  const seen: http.IncomingMessage[] = [];
  const backend = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    seen.push(req);
    void handler(req, res, n);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const backendPort = (backend.address() as AddressInfo).port;
  let backendClosed = false;
  const closeBackend = (): Promise<void> =>
    new Promise((r) => {
      if (backendClosed) return r();
      backendClosed = true;
      backend.closeAllConnections();
      backend.close(() => r());
    });
  t.after(closeBackend);
  const proxy = await startProxy({
    upstreams: [`127.0.0.1:${backendPort}`],
    routes: [{ cluster: 'up', cache: { zone: 'z', ...cache } }],
    config: { cache_zones: { z: zone }, ...config } as never,
  });
  t.after(() => proxy.close());
  return { proxy, url: proxy.url, zone: proxy.server.cacheZones.get('z'), hits, seen, backendPort, closeBackend };
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const cacheable =
  (body: string, cc = 'max-age=600', extra: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(200, { 'cache-control': cc, 'content-type': 'text/plain', ...extra });
    res.end(body);
  };

/** The soft limit on open files, from /proc (null where unknown). */
function openFileLimit(): number | null {
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

describe('cache: coalescing', () => {
  const limit = openFileLimit();
  // 1,000 client sockets and muxgate's 1,000 in this one process, with room for the rest.
  const skip = limit !== null && limit < 2600 ? `needs 2,600 open files, the limit here is ${limit}` : false;

  test('1,000 concurrent misses for one URL: exactly 1 upstream request, 1,000 whole bodies', { skip }, async (t) => {
    const body = 'x'.repeat(20_000);
    let zone: CacheZone | null = null;
    const s = await setup(t, async (_req, res) => {
      // The answer waits until all 1,000 requests have asked the cache (each counts a miss).
      await waitUntil(() => zone !== null && zone.counters.misses >= 1000, 'all 1,000 requests in', {
        timeoutMs: 60_000,
      });
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(body.length) });
      // In two pieces: the waiters get the body as it streams.
      res.write(body.slice(0, 10_000));
      setImmediate(() => res.end(body.slice(10_000)));
    });
    zone = s.zone;
    const all = await Promise.all(Array.from({ length: 1000 }, () => get(`${s.url}/herd`)));
    assert.equal(s.hits.get('/herd'), 1);
    assert.equal(all.filter((r) => r.status === 200 && r.body === body).length, 1000);
    const statuses = new Set(all.map((r) => r.headers['cache-status']));
    assert.deepEqual([...statuses].sort(), ['muxgate; fwd=miss; collapsed', 'muxgate; fwd=uri-miss; stored']);
    assert.equal(s.zone.counters.coalesced, 999);
    assert.match((await get(`${s.url}/herd`)).headers['cache-status'] as string, HIT_600);
  });

  test('the client of the request sent upstream leaves mid-body: the waiters still get it whole, and it is stored', async (t) => {
    let zone: CacheZone | null = null;
    let release: () => void = () => {};
    const rest = new Promise<void>((r) => (release = r));
    const half = 'h'.repeat(50_000);
    const s = await setup(t, async (_req, res) => {
      await waitUntil(() => zone !== null && zone.counters.misses >= 2, 'the waiter in');
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': String(half.length * 2) });
      res.write(half);
      await rest;
      res.end(half);
    });
    zone = s.zone;
    const filler = net.connect({ port: s.proxy.port, host: '127.0.0.1' });
    t.after(() => filler.destroy());
    const gotSome = new Promise<void>((r) => filler.once('data', () => r()));
    filler.write('GET /left HTTP/1.1\r\nhost: cache.test\r\n\r\n');
    await waitUntil(() => s.hits.get('/left') === 1, 'the request upstream');
    const waiter = get(`${s.url}/left`, { host: 'cache.test' });
    await gotSome;
    // A reset: muxgate hears at once that this client is gone (a FIN would only end its requests).
    filler.resetAndDestroy();
    await waitUntil(() => s.proxy.server.snapshot().listeners[0]!.connections_open === 1, 'the first client gone');
    release();
    const w = await waiter;
    assert.equal(w.body, half + half);
    assert.equal(w.headers['cache-status'], 'muxgate; fwd=miss; collapsed');
    await waitUntil(() => s.zone.objects === 1, 'the object stored');
    assert.match((await get(`${s.url}/left`, { host: 'cache.test' })).headers['cache-status'] as string, HIT_600);
    assert.equal(s.hits.get('/left'), 1);
  });

  test('a waiter waits at most coalesce_timeout, then goes upstream itself', async (t) => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const s = await setup(
      t,
      async (_req, res, n) => {
        if (n === 1) await held;
        res.writeHead(200, { 'cache-control': 'max-age=600' });
        res.end(`answer ${n}`);
      },
      { coalesce_timeout: '200ms' },
    );
    const first = get(`${s.url}/slow`);
    await waitUntil(() => s.hits.get('/slow') === 1, 'the first request upstream');
    // The first answer is held until the second request has had its own.
    const second = await get(`${s.url}/slow`);
    assert.equal(second.body, 'answer 2');
    release();
    assert.equal((await first).body, 'answer 1');
  });

  test('an answer that may not be shared sends the waiters upstream themselves', async (t) => {
    let zone: CacheZone | null = null;
    const s = await setup(t, async (_req, res, n) => {
      if (n === 1) await waitUntil(() => zone !== null && zone.counters.misses >= 5, 'five requests in');
      res.writeHead(200, { 'cache-control': 'no-store' });
      res.end(`answer ${n}`);
    });
    zone = s.zone;
    const all = await Promise.all(Array.from({ length: 5 }, () => get(`${s.url}/private`)));
    assert.equal(s.hits.get('/private'), 5);
    assert.deepEqual(all.map((r) => r.body).sort(), ['answer 1', 'answer 2', 'answer 3', 'answer 4', 'answer 5']);
    assert.equal(s.zone.objects, 0);
  });

  test('a failure before the answer reaches each waiter once, as that error, without more upstream requests', async (t) => {
    let zone: CacheZone | null = null;
    const s = await setup(t, async (req, _res) => {
      await waitUntil(() => zone !== null && zone.counters.misses >= 20, 'twenty requests in');
      req.socket.destroy();
    });
    zone = s.zone;
    const all = await Promise.all(Array.from({ length: 20 }, () => get(`${s.url}/broken`)));
    assert.equal(s.hits.get('/broken'), 1);
    assert.deepEqual(new Set(all.map((r) => r.status)), new Set([502]));
    assert.deepEqual(new Set(all.map((r) => r.headers['muxgate-error'])), new Set(['upstream_reset']));
  });
});

describe('cache: what RFC 9111 lets a shared cache store', () => {
  test('max-age: stored, then hits with Age; a second URL is its own object', async (t) => {
    const s = await setup(t, cacheable('hello'), {}, {}, { access_log: { enabled: true } });
    const first = await get(`${s.url}/a`);
    assert.equal(first.headers['cache-status'], 'muxgate; fwd=uri-miss; stored');
    const again = await get(`${s.url}/a`);
    assert.equal(again.body, 'hello');
    assert.match(again.headers['cache-status'] as string, HIT_600);
    assert.equal(again.headers.age, '0');
    assert.equal(again.headers['content-length'], '5');
    await get(`${s.url}/b`);
    assert.deepEqual([s.hits.get('/a'), s.hits.get('/b')], [1, 1]);
    const z = s.proxy.server.snapshot().cache.zones[0]!;
    assert.deepEqual([z.name, z.objects, z.hits, z.misses, z.stores, z.inflight], ['z', 2, 1, 2, 2, 0]);
    assert.ok(z.bytes > 10 && z.bytes <= z.max_bytes, String(z.bytes));
    await waitUntil(() => s.proxy.accessLog.length === 3, 'three access log lines');
    assert.deepEqual(
      s.proxy.accessLog.map((l) => [l.path, String(l.cache).replace(/ttl=\d+/, 'ttl=N')]),
      [
        ['/a', 'fwd=uri-miss; stored'],
        ['/a', 'hit; ttl=N'],
        ['/b', 'fwd=uri-miss; stored'],
      ],
    );
  });

  test('no-store and private are never stored; s-maxage makes a shared object of max-age=0', async (t) => {
    const s = await setup(t, (req, res) => {
      const cc =
        req.url === '/nostore'
          ? 'no-store'
          : req.url === '/private'
            ? 'private, max-age=600'
            : 'max-age=0, s-maxage=600';
      res.writeHead(200, { 'cache-control': cc });
      res.end(req.url);
    });
    for (const p of ['/nostore', '/private', '/shared']) {
      await get(`${s.url}${p}`);
      await get(`${s.url}${p}`);
    }
    assert.deepEqual([s.hits.get('/nostore'), s.hits.get('/private'), s.hits.get('/shared')], [2, 2, 1]);
  });

  test('Authorization: stored only with public, s-maxage or must-revalidate', async (t) => {
    const s = await setup(t, (req, res) => {
      const cc = req.url === '/plain' ? 'max-age=600' : 'public, max-age=600';
      res.writeHead(200, { 'cache-control': cc });
      res.end(req.url);
    });
    const auth = { authorization: 'Bearer abc' };
    for (const p of ['/plain', '/public']) {
      await get(`${s.url}${p}`, auth);
      await get(`${s.url}${p}`, auth);
    }
    assert.deepEqual([s.hits.get('/plain'), s.hits.get('/public')], [2, 1]);
  });

  test('Vary: one variant per value of the Vary field; Vary: * is never stored; Set-Cookie is not shared', async (t) => {
    const s = await setup(t, (req, res) => {
      if (req.url === '/star') res.writeHead(200, { 'cache-control': 'max-age=600', vary: '*' });
      else if (req.url === '/cookie') res.writeHead(200, { 'cache-control': 'max-age=600', 'set-cookie': 'a=1' });
      else res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'Accept-Language' });
      res.end(`${req.url} ${req.headers['accept-language'] ?? '-'}`);
    });
    const en = { 'accept-language': 'en' };
    const fr = { 'accept-language': 'fr' };
    assert.equal((await get(`${s.url}/v`, en)).body, '/v en');
    assert.equal((await get(`${s.url}/v`, fr)).body, '/v fr');
    const enAgain = await get(`${s.url}/v`, en);
    const frAgain = await get(`${s.url}/v`, fr);
    assert.deepEqual([enAgain.body, frAgain.body], ['/v en', '/v fr']);
    assert.match(enAgain.headers['cache-status'] as string, /; hit;/);
    assert.match(frAgain.headers['cache-status'] as string, /; hit;/);
    assert.equal(s.hits.get('/v'), 2);
    for (const p of ['/star', '/cookie']) {
      await get(`${s.url}${p}`);
      await get(`${s.url}${p}`);
    }
    assert.deepEqual([s.hits.get('/star'), s.hits.get('/cookie')], [2, 2]);
  });

  test('coalesced requests that want another variant than the answer Varies on go upstream themselves', async (t) => {
    let zone: CacheZone | null = null;
    const s = await setup(t, async (req, res, n) => {
      if (n === 1) await waitUntil(() => zone !== null && zone.counters.misses >= 3, 'three requests in');
      res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'accept-language' });
      res.end(`${req.headers['accept-language']}`);
    });
    zone = s.zone;
    const first = get(`${s.url}/lang`, { 'accept-language': 'en' });
    await waitUntil(() => s.hits.get('/lang') === 1, 'the first request upstream');
    const [a, b, c] = await Promise.all([
      first,
      get(`${s.url}/lang`, { 'accept-language': 'en' }),
      get(`${s.url}/lang`, { 'accept-language': 'fr' }),
    ]);
    assert.deepEqual([a.body, b.body, c.body], ['en', 'en', 'fr']);
    assert.equal(b.headers['cache-status'], 'muxgate; fwd=miss; collapsed');
    assert.equal(s.hits.get('/lang'), 2);
  });

  test('a response larger than max_object_bytes streams past, whole, and is not stored', async (t) => {
    const big = 'b'.repeat(5000);
    const s = await setup(t, cacheable(big), {}, { max_object_bytes: '4KiB' });
    assert.equal((await get(`${s.url}/big`)).body, big);
    assert.equal((await get(`${s.url}/big`)).body, big);
    assert.equal(s.hits.get('/big'), 2);
    assert.equal(s.zone.objects, 0);
  });

  test('a chunked answer is stored decoded and served with its length', async (t) => {
    const s = await setup(t, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.write('part one, ');
      res.end('part two');
    });
    assert.equal((await get(`${s.url}/c`)).body, 'part one, part two');
    const hit = await get(`${s.url}/c`);
    assert.equal(hit.body, 'part one, part two');
    assert.equal(hit.headers['content-length'], '18');
    assert.equal(s.hits.get('/c'), 1);
  });
});

describe('cache: revalidation and stale answers', () => {
  test('a stale object is revalidated with its validators; a 304 refreshes its fields and serves it', async (t) => {
    const s = await setup(t, (req, res, n) => {
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=0', 'x-version': String(n) });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=0', 'x-version': String(n) });
      res.end('the body');
    });
    assert.equal((await get(`${s.url}/r`)).body, 'the body');
    const second = await get(`${s.url}/r`);
    assert.equal(second.status, 200);
    assert.equal(second.body, 'the body');
    assert.equal(second.headers['x-version'], '2');
    assert.equal(second.headers['cache-status'], 'muxgate; fwd=stale; fwd-status=304');
    assert.equal(s.seen[1]?.headers['if-none-match'], '"v1"');
    assert.equal(s.hits.get('/r'), 2);
    assert.equal(s.zone.counters.revalidations, 1);
    // the connection that carried the 304 went back to the pool: the next revalidation rides it
    const third = await get(`${s.url}/r`);
    assert.equal(third.headers['cache-status'], 'muxgate; fwd=stale; fwd-status=304');
    assert.equal(s.seen[2]?.socket, s.seen[1]?.socket, 'the same upstream connection');
  });

  test('stale-if-error: the stale object answers a 5xx, and a backend that is down', async (t) => {
    let failing = false;
    const s = await setup(t, (_req, res) => {
      if (failing) {
        res.writeHead(503);
        res.end('down for maintenance');
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=600' });
      res.end('still good');
    });
    await get(`${s.url}/e`);
    failing = true;
    const on5xx = await get(`${s.url}/e`);
    assert.equal(on5xx.status, 200);
    assert.equal(on5xx.body, 'still good');
    assert.equal(on5xx.headers['cache-status'], 'muxgate; fwd=stale; fwd-status=503; detail=stale-if-error');
    await s.closeBackend();
    const down = await get(`${s.url}/e`);
    assert.equal(down.status, 200);
    assert.equal(down.body, 'still good');
    assert.match(down.headers['cache-status'] as string, /detail=stale-if-error; error=upstream_connect_failed/);
    assert.equal(s.zone.counters.stale_served, 2);
  });

  test('without stale-if-error a stale object does not hide the error', async (t) => {
    let failing = false;
    const s = await setup(t, (_req, res) => {
      res.writeHead(failing ? 503 : 200, { 'cache-control': 'max-age=0' });
      res.end(failing ? 'down' : 'good');
    });
    await get(`${s.url}/e`);
    failing = true;
    const r = await get(`${s.url}/e`);
    assert.equal(r.status, 503);
    assert.equal(r.body, 'down');
  });
});

describe('cache: answers from a stored object', () => {
  test("the client's conditional request (curl): 304 from the cache", async (t) => {
    const s = await setup(
      t,
      cacheable('tagged', 'max-age=600', { etag: '"abc"', 'last-modified': 'Tue, 01 Dec 2026 10:00:00 GMT' }),
    );
    await get(`${s.url}/cond`);
    const { stdout } = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      'If-None-Match: "abc"',
      `${s.url}/cond`,
    ]);
    assert.equal(stdout, '304');
    const ims = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      'If-Modified-Since: Wed, 02 Dec 2026 10:00:00 GMT',
      `${s.url}/cond`,
    ]);
    assert.equal(ims.stdout, '304');
    const other = await run('curl', ['-s', '-w', ' %{http_code}', '-H', 'If-None-Match: "zzz"', `${s.url}/cond`]);
    assert.equal(other.stdout, 'tagged 200');
    assert.equal(s.hits.get('/cond'), 1);
  });

  test('ranges from a stored object (curl -r), 416 past the end, HEAD from a stored GET', async (t) => {
    const s = await setup(t, cacheable('0123456789'));
    await get(`${s.url}/bytes`);
    const part = await run('curl', ['-s', '-D', '-', '-r', '2-5', `${s.url}/bytes`]);
    assert.match(part.stdout, /^HTTP\/1\.1 206 /);
    assert.match(part.stdout, /content-range: bytes 2-5\/10/i);
    assert.ok(part.stdout.endsWith('\r\n\r\n2345'), part.stdout);
    const suffix = await get(`${s.url}/bytes`, { range: 'bytes=-3' });
    assert.deepEqual([suffix.status, suffix.body], [206, '789']);
    const past = await get(`${s.url}/bytes`, { range: 'bytes=20-' });
    assert.deepEqual([past.status, past.headers['content-range']], [416, 'bytes */10']);
    const head = await get(`${s.url}/bytes`, {}, 'HEAD');
    assert.deepEqual([head.status, head.headers['content-length'], head.body], [200, '10', '']);
    assert.equal(s.hits.get('/bytes'), 1);
  });

  test('an HTTP/2 client gets a hit', async (t) => {
    const s = await setup(t, cacheable('over h2'));
    await get(`${s.url}/h2`);
    const proxy2 = await startProxy({
      upstreams: [`127.0.0.1:${s.backendPort}`],
      listener: { protocol: 'http2' },
      routes: [{ cluster: 'up', cache: { zone: 'z' } }],
      config: { cache_zones: { z: {} } } as never,
    });
    t.after(() => proxy2.close());
    const session = http2.connect(`http://127.0.0.1:${proxy2.port}`);
    t.after(() => session.close());
    const fetch2 = (): Promise<[string, string]> =>
      new Promise((resolve, reject) => {
        const req = session.request({ ':path': '/h2' });
        let body = '';
        let status = '';
        req.on('response', (h) => {
          status = String(h['cache-status']);
        });
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => resolve([status, body]));
        req.on('error', reject);
      });
    assert.deepEqual(await fetch2(), ['muxgate; fwd=uri-miss; stored', 'over h2']);
    const [status, body] = await fetch2();
    assert.match(status, HIT_600);
    assert.equal(body, 'over h2');
  });
});

describe('cache: invalidation, bypass, purge', () => {
  test('a successful POST to a URL invalidates what is stored for it', async (t) => {
    const s = await setup(t, (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end(req.method);
    });
    await get(`${s.url}/doc`);
    await get(`${s.url}/doc`);
    assert.equal(s.hits.get('/doc'), 1);
    assert.equal((await get(`${s.url}/doc`, {}, 'POST')).headers['cache-status'], 'muxgate; fwd=method');
    assert.equal((await get(`${s.url}/doc`)).headers['cache-status'], 'muxgate; fwd=uri-miss; stored');
    assert.equal(s.hits.get('/doc'), 3);
  });

  test("an unsafe request's success invalidates its Location and Content-Location, of the same origin only", async (t) => {
    const s = await setup(t, (req, res) => {
      if (req.method === 'POST') {
        // one relative, one absolute of this origin, one of another origin
        res.writeHead(201, {
          location: '/items/1',
          'content-location': `http://${req.headers.host}/items/2?v=1`,
        });
        res.end('created');
        return;
      }
      if (req.method === 'PUT') {
        res.writeHead(200, { location: 'http://elsewhere.example/items/3' });
        res.end('put');
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end(req.url);
    });
    for (const p of ['/items/1', '/items/2?v=1', '/items/3']) {
      await get(`${s.url}${p}`);
      assert.match((await get(`${s.url}${p}`)).headers['cache-status'] as string, HIT_600, `${p} stored`);
    }
    assert.equal((await get(`${s.url}/items`, {}, 'POST')).status, 201);
    assert.equal((await get(`${s.url}/items/1`)).headers['cache-status'], 'muxgate; fwd=uri-miss; stored');
    assert.equal((await get(`${s.url}/items/2?v=1`)).headers['cache-status'], 'muxgate; fwd=uri-miss; stored');
    assert.match((await get(`${s.url}/items/3`)).headers['cache-status'] as string, HIT_600, 'untouched');
    // another origin's URL in Location: not invalidated, whatever its path
    assert.equal((await get(`${s.url}/other`, {}, 'PUT')).status, 200);
    assert.match((await get(`${s.url}/items/3`)).headers['cache-status'] as string, HIT_600);
    assert.equal(s.hits.get('/items/3'), 1);
  });

  test('only-if-cached: a stored fresh object answers; otherwise 504 cache_only_if_cached, nothing sent upstream', async (t) => {
    const s = await setup(t, cacheable('fresh', 'max-age=600'));
    const miss = await get(`${s.url}/o`, { 'cache-control': 'only-if-cached' });
    assert.equal(miss.status, 504);
    assert.equal(miss.headers['muxgate-error'], 'cache_only_if_cached');
    assert.equal(s.hits.get('/o'), undefined, 'nothing went upstream');
    await get(`${s.url}/o`);
    const hit = await get(`${s.url}/o`, { 'cache-control': 'max-stale=0, only-if-cached' });
    assert.equal(hit.status, 200);
    assert.equal(hit.body, 'fresh');
    assert.match(hit.headers['cache-status'] as string, HIT_600);
    assert.equal(s.hits.get('/o'), 1);
  });

  test('only-if-cached on a stale object: 504, not a revalidation', async (t) => {
    const s = await setup(t, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=0', etag: '"v1"' });
      res.end('stale soon');
    });
    await get(`${s.url}/st`);
    const r = await get(`${s.url}/st`, { 'cache-control': 'only-if-cached' });
    assert.equal(r.status, 504);
    assert.equal(r.headers['muxgate-error'], 'cache_only_if_cached');
    assert.equal(s.hits.get('/st'), 1);
    // it was stored, stale: a plain request revalidates it
    assert.match((await get(`${s.url}/st`)).headers['cache-status'] as string, /fwd=stale/);
  });

  test('bypass rules: a header or a cookie skips the cache', async (t) => {
    const s = await setup(t, cacheable('x'), { bypass: [{ header: 'x-no-cache' }, { cookie: 'session' }] });
    await get(`${s.url}/p`);
    const byHeader = await get(`${s.url}/p`, { 'x-no-cache': '1' });
    const byCookie = await get(`${s.url}/p`, { cookie: 'theme=dark; session=abc' });
    const other = await get(`${s.url}/p`, { cookie: 'theme=dark' });
    assert.deepEqual(
      [byHeader.headers['cache-status'], byCookie.headers['cache-status'], other.headers['cache-status']],
      ['muxgate; fwd=bypass', 'muxgate; fwd=bypass', other.headers['cache-status']],
    );
    assert.match(other.headers['cache-status'] as string, HIT_600);
    assert.equal(s.hits.get('/p'), 3);
  });

  test('the key: ignore_query and sort_query', async (t) => {
    const s = await setup(t, cacheable('q'), { key: { sort_query: true } });
    await get(`${s.url}/k?a=1&b=2`);
    assert.match((await get(`${s.url}/k?b=2&a=1`)).headers['cache-status'] as string, /hit/);
    await get(`${s.url}/k?a=2`);
    assert.equal(s.hits.get('/k'), 2);
    const ignoring = await setup(t, cacheable('q'), { ignore_query: true });
    await get(`${ignoring.url}/k?a=1`);
    assert.match((await get(`${ignoring.url}/k?anything`)).headers['cache-status'] as string, /hit/);
  });

  test('ttl_override: fresh for the configured time whatever Cache-Control says; no-store still wins', async (t) => {
    const s = await setup(
      t,
      (req, res) => {
        res.writeHead(200, { 'cache-control': req.url === '/never' ? 'no-store' : 'max-age=0' });
        res.end('o');
      },
      { ttl_override: '2m' },
    );
    await get(`${s.url}/o`);
    assert.match((await get(`${s.url}/o`)).headers['cache-status'] as string, /^muxgate; hit; ttl=(120|11\d)$/);
    assert.equal((await get(`${s.url}/o`)).headers['cache-control'], 'max-age=0');
    await get(`${s.url}/never`);
    await get(`${s.url}/never`);
    assert.equal(s.hits.get('/never'), 2);
  });

  test('purge by URL, by prefix and by tag through the admin API', async (t) => {
    const s = await setup(t, (req, res) => {
      const tag = req.url!.startsWith('/img/') ? 'images' : 'pages';
      res.writeHead(200, { 'cache-control': 'max-age=600', 'surrogate-key': `${tag} all`, 'cache-tag': 'site' });
      res.end(req.url);
    });
    const admin = new AdminServer(
      {
        snapshot: () => s.proxy.server.snapshot(),
        healthy: () => true,
        config: () => s.proxy.server.config,
        command: async (cmd) => applyAdminCommand(s.proxy.server, cmd),
      },
      { token: null },
    );
    const a = await admin.listen('127.0.0.1', 0);
    t.after(() => admin.close());
    const purge = async (body: unknown): Promise<unknown> => {
      const r = await fetch(`http://127.0.0.1:${a.port}/cache/purge`, { method: 'POST', body: JSON.stringify(body) });
      return [r.status, await r.json()];
    };
    const paths = ['/img/a', '/img/b', '/page/1', '/page/2'];
    const fill = async (): Promise<void> => {
      for (const p of paths) await get(`${s.url}${p}`);
    };
    await fill();
    assert.equal(s.zone.objects, 4);
    assert.deepEqual(await purge({ url: `HTTP://127.0.0.1:${s.proxy.port}/page/1` }), [200, { ok: true, purged: 1 }]);
    assert.deepEqual(await purge({ prefix: `http://127.0.0.1:${s.proxy.port}/img/` }), [200, { ok: true, purged: 2 }]);
    await fill();
    assert.deepEqual(await purge({ tag: 'images', zone: 'z' }), [200, { ok: true, purged: 2 }]);
    assert.deepEqual(await purge({ tag: 'site' }), [200, { ok: true, purged: 2 }]);
    assert.equal(s.zone.objects, 0);
    assert.deepEqual(await purge({ tag: 'x', zone: 'nope' }), [
      404,
      { error: 'unknown_zone', message: 'no cache zone nope' },
    ]);
    const bad = (await purge({ url: 'a', tag: 'b' })) as [number, { error: string }];
    assert.deepEqual([bad[0], bad[1].error], [400, 'bad_request']);
    assert.deepEqual(
      paths.map((p) => s.hits.get(p)),
      [2, 2, 2, 1],
    );
  });
});

describe('cache: stale-while-revalidate', () => {
  test('a stale object answers at once while one request without a client refreshes it', async (t) => {
    let version = 1;
    const s = await setup(t, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=0, stale-while-revalidate=600', etag: `"v${version}"` });
      res.end(`version ${version}`);
    });
    assert.equal((await get(`${s.url}/swr`)).body, 'version 1');
    version = 2;
    const stale = await get(`${s.url}/swr`);
    assert.equal(stale.body, 'version 1');
    assert.match(stale.headers['cache-status'] as string, /^muxgate; hit; ttl=-?\d+; detail=stale-while-revalidate$/);
    // The refresh went upstream with the stored validator, and stored version 2.
    await waitUntil(() => s.hits.get('/swr') === 2 && s.zone.counters.stores === 2, 'the background refresh stored');
    assert.equal(s.seen[1]?.headers['if-none-match'], '"v1"');
    assert.equal((await get(`${s.url}/swr`)).body, 'version 2');
  });
});
