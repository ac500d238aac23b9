/**
 * Request routing end to end: every route sends to its own upstream, which answers with its name, so
 * each assertion checks which upstream a real request reached.
 */
import assert from 'node:assert/strict';
import { before, after, describe, it } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { connect, field, type SocketReader } from '../helpers/wire.ts';
import type http from 'node:http';

const NAMES = [
  'first',
  'exact',
  'wild',
  'list',
  'pexact',
  'pregex',
  'pprefix',
  'methods',
  'hexact',
  'hregex',
  'hpresent',
  'star',
] as const;
type Name = (typeof NAMES)[number];

const ROUTES = [
  { name: 'first', match: { host: 'api.example.com', path: { prefix: '/first' } }, cluster: 'first' },
  { match: { host: 'api.example.com' }, cluster: 'exact' },
  { match: { host: '*.example.com' }, cluster: 'wild' },
  { match: { host: ['Other.Test', 'third.test'] }, cluster: 'list' },
  { match: { path: { exact: '/exact' } }, cluster: 'pexact' },
  { match: { path: { regex: '^/items/\\d+$' } }, cluster: 'pregex' },
  { match: { path: { prefix: '/pre' } }, cluster: 'pprefix' },
  { match: { methods: ['post', 'PUT'], path: { prefix: '/m/' } }, cluster: 'methods' },
  { match: { headers: [{ name: 'X-Env', exact: 'canary' }] }, cluster: 'hexact' },
  { match: { headers: [{ name: 'x-ver', regex: '^v[23]$' }] }, cluster: 'hregex' },
  { match: { headers: [{ name: 'x-debug', present: true }] }, cluster: 'hpresent' },
  { match: { host: '*', path: { prefix: '/star' } }, cluster: 'star' },
];

describe('routing', () => {
  const backends = new Map<Name, Backend<http.Server>>();
  const seen: { name: Name; url: string | undefined; host: string | undefined }[] = [];
  let proxy: TestProxy;

  before(async () => {
    for (const name of NAMES) {
      backends.set(
        name,
        await httpBackend((req, res) => {
          seen.push({ name, url: req.url, host: req.headers.host });
          req.resume();
          req.on('end', () => res.end(name));
        }),
      );
    }
    proxy = await startProxy({
      clusters: Object.fromEntries(NAMES.map((n) => [n, { endpoints: [backends.get(n)!.addr] }])),
      routes: ROUTES,
    });
  });

  after(async () => {
    await proxy.close();
    for (const b of backends.values()) await b.close();
  });

  /** Sends `request` on `c` (or a new connection) and returns the upstream's name or "404 <error code>". */
  async function routeOf(request: string, c?: SocketReader): Promise<string> {
    const conn = c ?? (await connect(proxy.port));
    try {
      conn.write(request);
      const r = await conn.readResponse({ method: request.slice(0, request.indexOf(' ')) });
      if (r.status === 200) return r.body.toString();
      return `${r.status} ${field(r, 'muxgate-error')}`;
    } finally {
      if (c === undefined) conn.destroy();
    }
  }

  const get = (host: string, path = '/', extra = '') =>
    routeOf(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`);

  it('matches an exact host, ignoring case and port', async () => {
    assert.equal(await get('api.example.com'), 'exact');
    assert.equal(await get('API.Example.COM:8080'), 'exact');
    assert.equal(await get('api.example.com:443', '/x?y=1'), 'exact');
  });

  it('matches a host from a list configured in mixed case', async () => {
    assert.equal(await get('other.test'), 'list');
    assert.equal(await get('THIRD.TEST:81'), 'list');
  });

  it('matches "*.example.com" for subdomains only', async () => {
    assert.equal(await get('sub.example.com'), 'wild');
    assert.equal(await get('a.b.example.com'), 'wild');
    assert.equal(await get('SUB.Example.com:8443'), 'wild');
    assert.equal(await get('example.com'), '404 no_route');
    assert.equal(await get('notexample.com'), '404 no_route');
    assert.equal(await get('example.com.evil.test'), '404 no_route');
  });

  it('matches "*" for any host, including none (HTTP/1.0 without Host)', async () => {
    assert.equal(await get('whatever.invalid', '/star'), 'star');
    assert.equal(await get('127.0.0.1:9', '/star/x'), 'star');
    assert.equal(await routeOf('GET /star HTTP/1.0\r\n\r\n'), 'star');
  });

  it('matches an exact path, the query string excluded', async () => {
    assert.equal(await get('paths.test', '/exact'), 'pexact');
    assert.equal(await get('paths.test', '/exact?x=1&y=/exact/more'), 'pexact');
    assert.equal(await get('paths.test', '/exact/'), '404 no_route');
    assert.equal(await get('paths.test', '/exactly'), '404 no_route');
    assert.equal(await get('paths.test', '/EXACT'), '404 no_route');
  });

  it('matches a path regex against the path without the query string', async () => {
    assert.equal(await get('paths.test', '/items/42'), 'pregex');
    assert.equal(await get('paths.test', '/items/42?page=2'), 'pregex');
    assert.equal(await get('paths.test', '/items/abc'), '404 no_route');
    assert.equal(await get('paths.test', '/items/42/x'), '404 no_route');
  });

  it('matches a path prefix', async () => {
    assert.equal(await get('paths.test', '/pre'), 'pprefix');
    assert.equal(await get('paths.test', '/pre/a/b?c'), 'pprefix');
    assert.equal(await get('paths.test', '/prefix'), 'pprefix');
    assert.equal(await get('paths.test', '/pr'), '404 no_route');
    assert.equal(await get('paths.test', '/x?/pre'), '404 no_route');
  });

  it('matches methods (configured in any case, compared as sent)', async () => {
    const req = (method: string) => routeOf(`${method} /m/x HTTP/1.1\r\nHost: m.test\r\nContent-Length: 2\r\n\r\nhi`);
    assert.equal(await req('POST'), 'methods');
    assert.equal(await req('PUT'), 'methods');
    assert.equal(await req('GET'), '404 no_route');
    assert.equal(await req('DELETE'), '404 no_route');
    assert.equal(await req('post'), '404 no_route', 'methods are case-sensitive on the wire');
  });

  it('matches headers: exact value, regex, presence; names in any case', async () => {
    assert.equal(await get('h.test', '/', 'X-ENV: canary\r\n'), 'hexact');
    assert.equal(await get('h.test', '/', 'x-env: Canary\r\n'), '404 no_route');
    assert.equal(await get('h.test', '/', 'X-Ver: v3\r\n'), 'hregex');
    assert.equal(await get('h.test', '/', 'x-ver: v4\r\n'), '404 no_route');
    assert.equal(await get('h.test', '/', 'X-Debug:\r\n'), 'hpresent');
    assert.equal(await get('h.test', '/', 'x-debug: 0\r\n'), 'hpresent');
    assert.equal(await get('h.test', '/', 'x-debugger: 1\r\n'), '404 no_route');
  });

  it('takes the first matching route', async () => {
    assert.equal(await get('api.example.com', '/first/page'), 'first');
    assert.equal(await get('api.example.com', '/star'), 'exact', 'the host route comes before the "*" route');
    assert.equal(await get('api.example.com', '/m/x', 'x-debug: 1\r\n'), 'exact');
  });

  it('answers 404 no_route without closing a keep-alive connection', async (t) => {
    const c = await connect(proxy.port, t);
    c.write('GET /nowhere HTTP/1.1\r\nHost: nothing.test\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 404);
    assert.equal(field(r, 'muxgate-error'), 'no_route');
    assert.equal(field(r, 'connection'), undefined);
    assert.match(r.body.toString(), /no_route/);
    assert.equal(await routeOf('GET /pre HTTP/1.1\r\nHost: nothing.test\r\n\r\n', c), 'pprefix');
    assert.equal(await routeOf('HEAD /nowhere HTTP/1.1\r\nHost: nothing.test\r\n\r\n', c), '404 no_route');
    assert.equal(await routeOf('GET /exact HTTP/1.1\r\nHost: nothing.test\r\n\r\n', c), 'pexact');
    assert.equal(c.ended, false);
  });

  it('closes after a 404 for a request whose body was not read', async (t) => {
    const c = await connect(proxy.port, t);
    c.write('POST /nowhere HTTP/1.1\r\nHost: nothing.test\r\nContent-Length: 5\r\n\r\nhello');
    const r = await c.readResponse();
    assert.equal(r.status, 404);
    assert.equal(field(r, 'connection'), 'close');
    assert.equal(await c.waitEnded(2000), true);
  });

  it('routes an absolute-form request by its authority, which replaces Host', async () => {
    const before = seen.length;
    assert.equal(
      await routeOf('GET http://api.example.com/abs?q=1 HTTP/1.1\r\nHost: sub.example.com\r\n\r\n'),
      'exact',
    );
    assert.equal(await routeOf('GET http://SUB.example.com:8080 HTTP/1.1\r\nHost: api.example.com\r\n\r\n'), 'wild');
    assert.equal(await routeOf('GET https://paths.test/items/7?x HTTP/1.1\r\nHost: api.example.com\r\n\r\n'), 'pregex');
    assert.deepEqual(seen.slice(before), [
      { name: 'exact', url: '/abs?q=1', host: 'api.example.com' },
      { name: 'wild', url: '/', host: 'SUB.example.com:8080' },
      { name: 'pregex', url: '/items/7?x', host: 'paths.test' },
    ]);
  });
});
