/**
 * The admin API against a running data plane: the bearer token, the config with its secrets
 * redacted, endpoints' weight and drain at runtime (checked by where requests then go), stable error
 * codes; `muxgate status` on a real process.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, describe, it, type TestContext } from 'node:test';
import { AdminServer } from '../../src/admin/admin-server.ts';
import { adminToken, bearerMatches, isLoopback } from '../../src/admin/admin-token.ts';
import { applyAdminCommand } from '../../src/runtime/admin-command.ts';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { tmpDir } from '../helpers/certs.ts';
import { muxgate, portOf, startMuxgate } from '../helpers/cli.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

const TOKEN = 'a-long-enough-admin-token';

async function named(t: TestContext, name: string): Promise<Backend<import('node:http').Server>> {
  const b = await httpBackend((_req, res) => res.end(name));
  t.after(() => b.close());
  return b;
}

async function withAdmin(t: TestContext, p: TestProxy, token: string | null): Promise<string> {
  const admin = new AdminServer(
    {
      snapshot: () => p.server.snapshot(),
      healthy: () => true,
      config: () => p.server.config,
      command: async (cmd) => applyAdminCommand(p.server, cmd),
    },
    { token },
  );
  const a = await admin.listen('127.0.0.1', 0);
  t.after(() => admin.close());
  return `http://127.0.0.1:${(a as AddressInfo).port}`;
}

async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const r = await fetch(url, init);
  const text = await r.text();
  return {
    status: r.status,
    body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : { text },
    headers: r.headers,
  };
}

async function answers(port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await (await fetch(`http://127.0.0.1:${port}/`)).text());
  return out;
}

describe('admin API', () => {
  it('with a token: every request needs it (401 admin_unauthorized otherwise), compared in constant time', async (t) => {
    const a = await named(t, 'a');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    const base = await withAdmin(t, p, TOKEN);
    for (const path of ['/stats', '/metrics', '/healthz', '/config']) {
      const r = await call(`${base}${path}`);
      assert.equal(r.status, 401, path);
      assert.equal(r.body.error, 'admin_unauthorized');
      assert.equal(r.headers.get('muxgate-error'), 'admin_unauthorized');
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
    assert.equal(
      (await call(`${base}/stats`, { headers: { authorization: 'Bearer wrong-token-of-some-length' } })).status,
      401,
    );
    assert.equal((await call(`${base}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await call(`${base}/healthz`, { headers: { authorization: `bearer ${TOKEN}` } })).status, 200);
    assert.equal(bearerMatches(`Bearer ${TOKEN}x`, TOKEN), false);
    assert.equal(bearerMatches(undefined, TOKEN), false);
  });

  it('serves the dashboard page without the token (it holds no data); its /events stream needs the token', async (t) => {
    const a = await named(t, 'a');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    const base = await withAdmin(t, p, TOKEN);
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<title>muxgate<\/title>/);
    assert.equal((await call(`${base}/events`)).status, 401);
    const ac = new AbortController();
    const events = await fetch(`${base}/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
    assert.equal(events.headers.get('content-type'), 'text/event-stream');
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!text.includes('\n\n')) text += (await reader.read()).value ?? '';
    ac.abort();
    const snap = JSON.parse(text.slice('data: '.length, text.indexOf('\n\n')));
    assert.equal(snap.listeners[0].name, 'test');
  });

  it('GET /config shows the running config with passwords and tokens redacted', async (t) => {
    const a = await named(t, 'a');
    const p = await startProxy({
      upstreams: [a.addr],
      listener: {
        connect: {
          allow: [{ cidr: '127.0.0.1/32', ports: [443] }],
          users: [{ user: 'u', password: 'hunter2-secret' }],
        },
      },
      // A Redis store URL with credentials (nothing listens there: muxgate waits for it, then starts without it).
      routes: [{ cluster: 'up', rate_limit: { rate: 10, store: 'redis://muxgate:redis-secret@127.0.0.1:1' } }],
      config: { admin: { address: '127.0.0.1:0', token: TOKEN } },
    });
    t.after(() => p.close());
    const base = await withAdmin(t, p, null);
    const r = await fetch(`${base}/config`);
    const text = await r.text();
    assert.equal(r.status, 200);
    assert.ok(!text.includes('hunter2-secret') && !text.includes(TOKEN) && !text.includes('redis-secret'), text);
    const cfg = JSON.parse(text);
    assert.equal(cfg.listeners[0].connect.users[0].password, '<redacted>');
    assert.equal(cfg.listeners[0].connect.users[0].user, 'u');
    assert.equal(cfg.admin.token, '<redacted>');
    assert.equal(cfg.listeners[0].routes[0].rate_limit.store, 'redis://<redacted>@127.0.0.1:1');
    assert.equal(cfg.clusters.up.endpoints[0].port, Number(a.addr.split(':')[1]));
  });

  it('sets an endpoint weight and drains it at runtime; new requests follow', async (t) => {
    const a = await named(t, 'a');
    const b = await named(t, 'b');
    const p = await startProxy({ upstreams: [a.addr, b.addr] });
    t.after(() => p.close());
    const base = await withAdmin(t, p, null);
    const even = await answers(p.port, 4);
    assert.deepEqual(even.sort(), ['a', 'a', 'b', 'b']);

    let r = await call(`${base}/clusters/up/endpoints/${a.addr}/weight`, { method: 'POST', body: '{"weight": 3}' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const weighted = await answers(p.port, 8);
    assert.equal(weighted.filter((x) => x === 'a').length, 6, `weight 3:1 -> ${weighted}`);
    const clusters = (await call(`${base}/clusters`)).body as unknown as {
      endpoints: { key: string; weight: number; drained: boolean }[];
    }[];
    assert.equal(clusters[0]!.endpoints.find((e) => e.key === a.addr)!.weight, 3);

    r = await call(`${base}/clusters/up/endpoints/${a.addr}/drain`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.deepEqual(await answers(p.port, 4), ['b', 'b', 'b', 'b']);
    const after = (await call(`${base}/clusters`)).body as unknown as {
      endpoints: { key: string; drained: boolean; pool: { idle: number } }[];
    }[];
    const drained = after[0]!.endpoints.find((e) => e.key === a.addr)!;
    assert.equal(drained.drained, true);
    assert.equal(drained.pool.idle, 0, 'its idle connections were closed');

    r = await call(`${base}/clusters/up/endpoints/${a.addr}/undrain`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.ok((await answers(p.port, 8)).includes('a'));
  });

  it('answers mistakes with stable codes', async (t) => {
    const a = await named(t, 'a');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    const base = await withAdmin(t, p, null);
    const cases: [string, RequestInit, number, string][] = [
      ['/clusters/nope/endpoints/x/drain', { method: 'POST' }, 404, 'unknown_cluster'],
      ['/clusters/up/endpoints/10.9.9.9:1/drain', { method: 'POST' }, 404, 'unknown_endpoint'],
      [`/clusters/up/endpoints/${a.addr}/weight`, { method: 'POST', body: '{"weight": 0}' }, 400, 'bad_request'],
      [`/clusters/up/endpoints/${a.addr}/weight`, { method: 'POST', body: 'three' }, 400, 'bad_request'],
      [`/clusters/up/endpoints/${a.addr}/weight`, { method: 'POST', body: 'x'.repeat(5000) }, 413, 'body_too_large'],
      ['/reload', { method: 'POST' }, 404, 'not_found'],
      ['/nowhere', {}, 404, 'not_found'],
      ['/stats', { method: 'DELETE' }, 405, 'method_not_allowed'],
    ];
    for (const [path, init, status, code] of cases) {
      const r = await call(`${base}${path}`, init);
      assert.equal(r.status, status, `${init.method ?? 'GET'} ${path}`);
      assert.equal(r.body.error, code, `${init.method ?? 'GET'} ${path}`);
    }
  });

  it('reads the token from a file or an environment variable, and refuses a missing one', () => {
    const dir = tmpDir('muxgate-token-');
    writeFileSync(`${dir}/token`, `${TOKEN}\n`);
    const address = { host: '127.0.0.1', port: 0 };
    assert.equal(adminToken({ address, token_file: `${dir}/token` }), TOKEN);
    assert.equal(adminToken({ address, token_env: 'MUXGATE_T' }, { MUXGATE_T: TOKEN }), TOKEN);
    assert.equal(adminToken({ address }), null);
    assert.throws(() => adminToken({ address, token_env: 'MUXGATE_T' }, {}), /MUXGATE_T is not set/);
    assert.throws(() => adminToken({ address, token_file: `${dir}/missing` }), /ENOENT/);
    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('0.0.0.0'), false);
    assert.equal(isLoopback('10.0.0.1'), false);
  });
});

describe('muxgate status', () => {
  it('prints listeners, endpoints with connections against max_connections, and port budgets', async (t) => {
    const a = await named(t, 'a');
    const dir = tmpDir('muxgate-status-');
    const file = `${dir}/m.yaml`;
    const text = (adminPort: number) => `access_log: { enabled: false }
admin: { address: 127.0.0.1:${adminPort}, token: ${TOKEN} }
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: api }] }
clusters:
  api: { endpoints: ["${a.addr}"], pool: { max_connections: 8 } }
`;
    writeFileSync(file, text(0));
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
    writeFileSync(file, text(portOf(await m.waitFor((l) => l.msg === 'admin listening'))));
    await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
    const r = await muxgate(['status', '-c', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^muxgate pid \d+, up \d+ s/);
    assert.match(r.stdout, new RegExp(`web +http1 +127\\.0\\.0\\.1:${port} +conns +\\d+ +requests 1 +errors 0`));
    assert.match(r.stdout, new RegExp(`${a.addr.replaceAll('.', '\\.')} +healthy +w1 +conns 1/8 \\(13%\\)`));
    assert.match(r.stdout, /port budgets/);
  });
});

describe('POST /memory/trim', () => {
  it('runs a footprint-reducing GC in every worker now, and /stats counts it (workers: 2)', async (t) => {
    const a = await named(t, 'a');
    const dir = tmpDir('muxgate-trim-');
    const file = `${dir}/m.yaml`;
    // memory_trim off: no trim of its own (not even the one after start) can land between the readings
    const text = (adminPort: number) => `workers: 2
access_log: { enabled: false }
memory_trim: { enabled: false }
admin: { address: 127.0.0.1:${adminPort}, token: ${TOKEN} }
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: api }] }
clusters:
  api: { endpoints: ["${a.addr}"] }
`;
    writeFileSync(file, text(0));
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    await m.waitFor((l) => l.msg === 'all workers listening');
    const admin = `http://127.0.0.1:${portOf(m.lines.find((l) => l.msg === 'admin listening')!)}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const trims = async (): Promise<number> =>
      ((await call(`${admin}/stats`, { headers: auth })).body.memory as { trims: number }).trims;
    assert.equal(await trims(), 0);
    const r = await call(`${admin}/memory/trim`, { method: 'POST', headers: auth });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { ok: true, trimmed: 2 });
    assert.equal(await trims(), 2, 'one trim in each worker');
    assert.equal((await call(`${admin}/memory/trim`, { method: 'POST' })).status, 401, 'the token is needed');
  });
});
