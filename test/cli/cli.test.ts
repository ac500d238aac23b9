import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { muxgate, portOf, startMuxgate } from '../helpers/cli.ts';

const run = promisify(execFile);
let dir: string;
let backend: Backend<import('node:http').Server>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muxgate-cli-'));
  backend = await httpBackend((req, res) => {
    const delay = req.url === '/slow' ? 800 : 0;
    setTimeout(() => res.end(`backend saw ${req.method} ${req.url}\n`), delay);
  });
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await backend.close();
});

function writeConfig(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const validConfig = (upstream: string) => `log_level: info
access_log: { enabled: false }
admin:
  address: 127.0.0.1:0
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { path: { prefix: /api/ } }
        cluster: api
        prefix_rewrite: /
clusters:
  api:
    endpoints: ["${upstream}"]
    pool: { max_connections: 7 }
`;

describe('muxgate CLI', () => {
  test('--version prints the package version and exits 0', async () => {
    const r = await muxgate(['--version']);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `muxgate ${pkg.version}\n`);
  });

  test('--help exits 0 with usage; no command exits 2; an unknown command exits 2', async () => {
    const help = await muxgate(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /muxgate proxy --listen ADDR:PORT --to HOST:PORT/);
    assert.equal((await muxgate([])).code, 2);
    const bad = await muxgate(['frobnicate']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown command "frobnicate"/);
  });

  test('check prints the resolved listeners, routes and clusters with defaults', async () => {
    const r = await muxgate(['check', '-c', writeConfig('ok.yaml', validConfig('127.0.0.1:1'))]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^config ok/);
    assert.match(r.stdout, /web {2}127\.0\.0\.1:0 {2}http1/);
    assert.match(r.stdout, /path prefix=\/api\/ -> api prefix_rewrite=\//);
    assert.match(r.stdout, /max_connections=7 max_pending=1000 pending_timeout=5000ms/);
  });

  test('check prints the retry, rate limit and idempotency of routes, the breakers and health check of clusters; hides Redis passwords', async () => {
    const text = `listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - cluster: api
        retry: { attempts: 2, on: [reset, gateway-error], per_try_timeout: 1s }
        rate_limit: { rate: 600/m, key: "header:x-api-key", store: "redis://user:secret@127.0.0.1:6379" }
        idempotency: { key_scope: authorization }
clusters:
  api:
    endpoints: ["127.0.0.1:1"]
    circuit_breakers: { max_connections: 50, max_retries: 5 }
    health_check: { path: /healthz, protocol: http2 }
`;
    const r = await muxgate(['check', '-c', writeConfig('resilient.yaml', text)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /retry: attempts=2 on=reset,gateway-error per_try_timeout=1000ms/);
    assert.match(
      r.stdout,
      /rate_limit: 10\/s burst=10 key=header:x-api-key store=redis:\/\/\*\*\*@127\.0\.0\.1:6379 fail_open/,
    );
    assert.doesNotMatch(r.stdout, /secret/);
    assert.match(
      r.stdout,
      /idempotency: store=memory ttl=86400000ms lock_ttl=60000ms .* key_scope=authorization fail_closed/,
    );
    assert.match(r.stdout, /circuit_breakers: max_connections=50 max_retries=5/);
    assert.match(r.stdout, /health_check: http \/healthz http2 expect=200-399 every 5000ms/);
  });

  test("check prints a listener's connect rules and warns about catch-all ones", async () => {
    const text = `listeners:
  - name: fwd
    address: 127.0.0.1:0
    routes: []
    connect:
      allow:
        - { cidr: 0.0.0.0/0, ports: [443] }
        - { cidr: "::/0", ports: [443] }
        - { cidr: 10.0.0.0/8, ports: [8000-8100] }
        - { host: "*.example.com", ports: [443] }
clusters: {}
`;
    const r = await muxgate(['check', '-c', writeConfig('forward.yaml', text)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /connect: 0\.0\.0\.0\/0 443; ::\/0 443; 10\.0\.0\.0\/8 8000-8100; \*\.example\.com 443/);
    assert.match(r.stdout, /warnings:\n {2}- listener fwd: connect\.allow\[0\] cidr 0\.0\.0\.0\/0 is a catch-all/);
    assert.match(r.stdout, /connect\.allow\[1\] cidr ::\/0 is a catch-all/);
    assert.doesNotMatch(
      r.stdout,
      /allow\[2\]|allow\[3\]/,
      'a rule inside a private range and a host rule are not catch-alls',
    );
  });

  test('check prints sni routes, passthrough, proxy_protocol and connection limits', async () => {
    const text = `listeners:
  - name: edge
    address: 127.0.0.1:0
    protocol: tcp
    sni_routes:
      - { server_names: [api.example.com, "*.apps.example.com"], alpn: [h2], cluster: api }
    proxy_protocol: { trusted: [10.0.0.0/8] }
    max_connections: 500
    max_connections_per_client: 20
  - name: web
    address: 127.0.0.1:0
    routes: [{ cluster: api }]
clusters:
  api:
    endpoints: ["127.0.0.1:1"]
`;
    const r = await muxgate(['check', '-c', writeConfig('edge.yaml', text)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /edge {2}127\.0\.0\.1:0 {2}tcp {2}-> \(sni routes only\) .* max_connections=500 per_client=20 accept_queue=1024/,
    );
    assert.match(
      r.stdout,
      /sni_routes: api\.example\.com\|\*\.apps\.example\.com alpn=h2 -> api {2}sni_timeout=5000ms/,
    );
    assert.match(r.stdout, /proxy_protocol: trusted=10\.0\.0\.0\/8/);
    assert.match(r.stdout, /web {2}127\.0\.0\.1:0 {2}http1 .* max_connections=unlimited/);
  });

  test('check names file, line, path, expectation and value of each problem, and exits 2', async () => {
    const text = validConfig('127.0.0.1:1').replace(
      'endpoints: ["127.0.0.1:1"]',
      'endpoints:\n      - { host: a, port: 80a }',
    );
    const file = writeConfig('bad.yaml', text);
    const r = await muxgate(['check', '-c', file]);
    assert.equal(r.code, 2);
    const line = text.split('\n').findIndex((l) => l.includes('80a')) + 1;
    assert.equal(
      r.stderr.trim(),
      `bad.yaml:${line} clusters.api.endpoints[0].port: expected an integer 1-65535, got "80a"`,
    );
  });

  test('a missing config file is a usage error naming the file', async () => {
    const r = await muxgate(['check', '-c', join(dir, 'nope.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /nope\.yaml: cannot read the config file/);
  });

  test('schema prints a JSON Schema', async () => {
    const r = await muxgate(['schema']);
    assert.equal(r.code, 0);
    const schema = JSON.parse(r.stdout) as { properties: Record<string, unknown> };
    for (const k of ['listeners', 'clusters', 'admin', 'trusted_proxies']) assert.ok(k in schema.properties, k);
  });

  test('proxy: bad arguments exit 2 with a clear message', async () => {
    const noTo = await muxgate(['proxy', '--listen', '127.0.0.1:0']);
    assert.equal(noTo.code, 2);
    assert.match(noTo.stderr, /missing --to/);
    const badTo = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', 'localhost:http']);
    assert.equal(badTo.code, 2);
    assert.match(badTo.stderr, /command line: clusters\.upstream\.endpoints\[0\]/);
    const udp = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--mode', 'udp']);
    assert.equal(udp.code, 2);
    assert.match(udp.stderr, /--mode must be http or tcp, got "udp"/);
    const source = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--source', 'gateway']);
    assert.equal(source.code, 2);
    assert.match(
      source.stderr,
      /command line: clusters\.upstream\.source_addresses\[0\]: expected an IPv4 or IPv6 address, got "gateway"/,
    );
    const workers = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--workers', 'x']);
    assert.equal(workers.code, 2);
  });

  test('proxy: a reverse proxy from one line, reachable with curl, stopped by SIGTERM with exit 0', async () => {
    const m = startMuxgate(['proxy', '--listen', '127.0.0.1:0', '--to', backend.addr, '--admin', '127.0.0.1:0']);
    try {
      const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
      const adminPort = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
      const { stdout } = await run('curl', ['-sS', `http://127.0.0.1:${port}/hello`]);
      assert.equal(stdout, 'backend saw GET /hello\n');
      const access = await m.waitFor((l) => l.path === '/hello');
      assert.equal(access.status, 200);
      const stats = JSON.parse((await run('curl', ['-sS', `http://127.0.0.1:${adminPort}/stats`])).stdout);
      assert.equal(stats.listeners[0].requests, 1);
      assert.equal(stats.clusters[0].endpoints[0].pool.open, 1);
      const health = await run('curl', ['-sS', `http://127.0.0.1:${adminPort}/healthz`]);
      assert.equal(health.stdout, 'ok\n');
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });

  test('start: SIGTERM lets an in-flight request finish, refuses new connections, exits 0', async () => {
    const m = startMuxgate(['start', '-c', writeConfig('drain.yaml', validConfig(backend.addr))]);
    let exited = false;
    try {
      const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
      const inflight = fetch(`http://127.0.0.1:${port}/api/slow`).then(async (r) => ({
        status: r.status,
        body: await r.text(),
      }));
      await new Promise((r) => setTimeout(r, 200));
      m.child.kill('SIGTERM');
      await m.waitFor((l) => l.msg === 'draining');
      await assert.rejects(fetch(`http://127.0.0.1:${port}/api/x`, { headers: { connection: 'close' } }));
      assert.deepEqual(await inflight, { status: 200, body: 'backend saw GET /slow\n' });
      assert.equal(await m.exited, 0);
      exited = true;
    } finally {
      if (!exited) await m.stop('SIGKILL');
    }
  });

  test('--workers 2: both workers share the port, stats are summed, a killed worker is restarted', async () => {
    const m = startMuxgate([
      'proxy',
      '--listen',
      '127.0.0.1:0',
      '--to',
      backend.addr,
      '--workers',
      '2',
      '--admin',
      '127.0.0.1:0',
      '--no-access-log',
    ]);
    try {
      const ready = await m.waitFor((l) => l.msg === 'all workers listening');
      const pids = ready.pids as number[];
      assert.equal(pids.length, 2);
      const listening = m.lines.filter((l) => l.msg === 'listening');
      assert.equal(listening.length, 2);
      assert.equal(new Set(listening.map((l) => l.address)).size, 1, 'one shared address');
      const port = portOf(listening[0]!);
      const adminPort = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
      // Separate connections so the kernel can spread them across the two workers.
      for (let i = 0; i < 20; i++) {
        const r = await fetch(`http://127.0.0.1:${port}/n${i}`, { headers: { connection: 'close' } });
        assert.equal(r.status, 200);
        await r.text();
      }
      const stats = JSON.parse((await run('curl', ['-sS', `http://127.0.0.1:${adminPort}/stats`])).stdout);
      assert.deepEqual([...stats.workers].sort(), [...pids].sort());
      assert.equal(stats.listeners[0].requests, 20);
      const shares = stats.per_worker as { pid: number; connections_total: number }[];
      assert.deepEqual(shares.map((w) => w.pid).sort(), [...pids].sort());
      assert.equal(
        shares.reduce((n, w) => n + w.connections_total, 0),
        20,
        'each worker reports its own connections',
      );
      // Histograms add up over the workers too: one duration per request, in /stats and /metrics.
      const durations = stats.listeners[0].request_duration.counts as number[];
      assert.equal(
        durations.reduce((n, c) => n + c, 0),
        20,
      );
      const metrics = (await run('curl', ['-sS', `http://127.0.0.1:${adminPort}/metrics`])).stdout;
      assert.match(metrics, /^muxgate_request_duration_seconds_count\{listener="proxy"\} 20$/m);
      assert.match(metrics, /^muxgate_requests_total\{listener="proxy"\} 20$/m);
      process.kill(pids[0]!, 'SIGKILL');
      const restart = await m.waitFor((l) => l.msg === 'worker exited; restarting');
      assert.equal(restart.pid, pids[0]);
      await m.waitFor((l) => l.msg === 'listening' && !listening.includes(l));
      const r = await fetch(`http://127.0.0.1:${port}/after`, { headers: { connection: 'close' } });
      assert.equal(await r.text(), 'backend saw GET /after\n');
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });

  test('--workers 2 without SO_REUSEPORT: the node:cluster fallback is logged and serves on one port', async () => {
    const m = startMuxgate(
      ['proxy', '--listen', '127.0.0.1:0', '--to', backend.addr, '--workers', '2', '--admin', '127.0.0.1:0'],
      { MUXGATE_FORCE_CLUSTER: '1' },
    );
    try {
      await m.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('SO_REUSEPORT is not available'));
      const ready = await m.waitFor((l) => l.msg === 'all workers listening');
      assert.equal(ready.mode, 'cluster');
      const listening = m.lines.filter((l) => l.msg === 'listening');
      assert.equal(listening.length, 2);
      assert.equal(new Set(listening.map((l) => l.address)).size, 1, 'one shared address');
      const port = portOf(listening[0]!);
      const adminPort = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
      for (let i = 0; i < 10; i++) {
        const r = await fetch(`http://127.0.0.1:${port}/c${i}`, { headers: { connection: 'close' } });
        assert.equal(await r.text(), `backend saw GET /c${i}\n`);
      }
      const stats = JSON.parse((await run('curl', ['-sS', `http://127.0.0.1:${adminPort}/stats`])).stdout);
      assert.equal(stats.listeners[0].requests, 10);
      assert.equal(stats.per_worker.length, 2);
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });
});
