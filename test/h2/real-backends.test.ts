/**
 * Real HTTP/2 peers behind muxgate's upstream engine: nginx (`listen … http2`, h2c with prior
 * knowledge) and HAProxy (`bind … proto h2`) started by the test as the backends of a
 * `protocol: http2` cluster. Clients: curl over HTTP/1.1 and with HTTP/2 prior knowledge (HTTP/2 on
 * both legs), h2load for volume. Each backend's own connection counter (nginx stub_status, HAProxy's
 * CSV stats) checks what muxgate's stats say about how many upstream connections it opened.
 *
 * Skipped where /usr/sbin/nginx or /usr/sbin/haproxy is missing (Debian packages nginx-light and
 * haproxy; .ci/run installs them).
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { tmpDir } from '../helpers/certs.ts';
import { h2connect } from '../helpers/h2-client.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { sleep } from '../helpers/wait.ts';
import { connect, curl, field } from '../helpers/wire.ts';

const NGINX = '/usr/sbin/nginx';
const HAPROXY = '/usr/sbin/haproxy';
const H2LOAD = '/usr/bin/h2load';

const missing = (path: string, pkg: string) =>
  existsSync(path) ? false : `${path} is not installed (Debian package ${pkg}; .ci/run installs it)`;
const skipNginx = missing(NGINX, 'nginx-light');
const skipHaproxy = missing(HAPROXY, 'haproxy');
const skipH2load = missing(H2LOAD, 'nghttp2-client');

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// Backend processes on a port of their own

/**
 * Where the backends listen. Neither nginx nor HAProxy can bind port 0 and tell us the port, and
 * binding a port here to learn a free one, then handing it to them, is the probe-and-reuse race the
 * suite forbids. So the backend's own bind is the test: pick a random port, start the server, and if
 * it exits with "Address already in use" pick another. The ports come from below the kernel's
 * ephemeral range (ip_local_port_range), where no port-0 listener and no outgoing connection's source
 * port lands, and below the fixed ports the benchmarks use (18100+) and the source_port_range tests
 * (20000+). HAProxy gets `noreuseport`, or its bind would succeed next to any SO_REUSEPORT socket of
 * the same user and share the port silently; nginx sets SO_REUSEPORT only with `listen … reuseport`.
 */
function portRange(): [first: number, last: number] {
  const preferred: [number, number] = [10_000, 17_999];
  let low = 32_768;
  let high = 60_999;
  try {
    [low = low, high = high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
  } catch {
    // no /proc: assume the Linux default; the retry copes with a collision
  }
  // The part of the preferred range outside the ephemeral one, else whatever lies outside it (>= 1024).
  const candidates: [number, number][] = [
    [preferred[0], Math.min(preferred[1], low - 1)],
    [Math.max(preferred[0], high + 1), preferred[1]],
    [1024, low - 1],
    [high + 1, 65_535],
  ];
  return candidates.find(([first, last]) => last - first >= 1000) ?? preferred;
}

const [PORT_FIRST, PORT_LAST] = portRange();
const randomPort = () => PORT_FIRST + Math.floor(Math.random() * (PORT_LAST - PORT_FIRST + 1));

interface Daemon {
  name: string;
  port: number;
  addr: string;
  child: ChildProcess;
  /** stdout, stderr and the log files so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Every live backend, killed if the test process exits without running its after hooks. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** True once `pid` holds a socket listening on TCP `port` (read from /proc: no connection is made). */
function listensOn(pid: number, port: number): boolean {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (f[1]?.endsWith(hexPort) && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null && inodes.has(m[1]!)) return true;
    } catch {
      // the fd closed meanwhile
    }
  }
  return false;
}

/**
 * Starts `cmd` for a port from `configure(port)` (which writes the config and returns the argv and
 * the log files to read), retrying on another port while the bind finds the port taken. Resolves once
 * the process itself listens on the port.
 */
async function startOnFreePort(
  name: string,
  cmd: string,
  configure: (port: number) => { args: string[]; logs: string[] },
): Promise<Daemon> {
  const failures: string[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = randomPort();
    const { args, logs } = configure(port);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdio = '';
    child.stdout!.on('data', (c: Buffer) => (stdio += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (stdio += c.toString('utf8')));
    let exitCode: number | string | null = null;
    const exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        exitCode = code ?? signal;
        live.delete(child);
        resolve();
      }),
    );
    child.once('error', (e) => {
      stdio += String(e);
    });
    const output = () =>
      [stdio, ...logs.map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''))].filter((s) => s !== '').join('\n');
    const stop = async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    };
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exitCode !== null || child.exitCode !== null || child.signalCode !== null) break;
      if (child.pid !== undefined && listensOn(child.pid, port))
        return { name, port, addr: `127.0.0.1:${port}`, child, output, stop };
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${name} did not listen on 127.0.0.1:${port} within 10 s:\n${output()}`);
      }
      await sleep(20);
    }
    await exited;
    const text = output();
    if (!/Address already in use/i.test(text))
      throw new Error(`${name} exited (${exitCode}) before listening on 127.0.0.1:${port}:\n${text}`);
    failures.push(`port ${port} in use`);
  }
  throw new Error(`${name}: no free port after 10 attempts (${failures.join(', ')})`);
}

/** A 1 MiB file nginx serves from disk: more than the 64 KiB default windows, so flow control is exercised. */
const BIG = randomBytes(1024 * 1024);
/** Served at 2 KiB/s: each response takes about a second, so requests overlap at the upstream. */
const SLOW = Buffer.alloc(2048, 's');

async function startNginx(dir: string): Promise<Daemon> {
  const www = join(dir, 'www');
  mkdirSync(join(www, 'dav'), { recursive: true });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(join(www, 'big'), BIG);
  writeFileSync(join(www, 'slow'), SLOW);
  const errorLog = join(dir, 'error.log');
  return startOnFreePort('nginx', NGINX, (port) => {
    const conf = join(dir, 'nginx.conf');
    const tmp = join(dir, 'tmp');
    writeFileSync(
      conf,
      `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${errorLog} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  server {
    # h2c with prior knowledge (nginx 1.22 spelling; 1.25.1+ says \`http2 on;\`)
    listen 127.0.0.1:${port} http2;
    root ${www};
    default_type application/octet-stream;
    location = / { default_type text/plain; return 200 "hello from nginx\\n"; }
    location = /custom { add_header X-Backend "nginx h2c" always; default_type text/plain; return 200 "custom\\n"; }
    location = /empty { return 204; }
    location = /big { }
    location = /slow { limit_rate 2k; }
    # answered without reading the body: nginx sends the response, then RST_STREAM(NO_ERROR)
    location = /upload { client_max_body_size 20m; default_type text/plain; return 200 "$content_length\\n"; }
    # the DAV module reads the whole body and stores it: read back with GET
    location /dav/ { dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 20m; }
    location = /status { stub_status; }
  }
}
`,
    );
    rmSync(errorLog, { force: true });
    // -e: the log used before the config is read; -p: the prefix relative paths resolve against
    return { args: ['-p', dir, '-e', errorLog, '-c', conf], logs: [errorLog] };
  });
}

async function startHaproxy(dir: string): Promise<Daemon> {
  return startOnFreePort('haproxy', HAPROXY, (port) => {
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  noreuseport
  nbthread 1
  maxconn 4096
  tune.h2.max-concurrent-streams 100

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend fe
  bind 127.0.0.1:${port} proto h2
  http-request return status 200 content-type text/plain string "hello from haproxy" if { path / }
  http-request return status 418 content-type text/plain hdr x-teapot short-and-stout string "i am a teapot" if { path /teapot }
  http-request return status 200 content-type text/plain lf-string "%[method] %[path] %[req.hdr(x-test)] %[req.fhdr(content-length)]" if { path /echo }
  http-request return status 404 content-type text/plain string "no such path" unless { path_beg /stats }
  stats enable
  stats uri /stats
`,
    );
    // -db: foreground, no daemon, no master
    return { args: ['-db', '-f', cfg], logs: [] };
  });
}

// ---------------------------------------------------------------------------------------------
// Clients

interface Answer {
  status: number;
  version: string;
  headers: Map<string, string>;
  body: Buffer;
}

/** curl with `-i`: the final response's status, headers (names lower-cased, repeats joined) and body. */
async function curlAnswer(args: string[], input?: Buffer): Promise<Answer> {
  const r = await curl(['-sS', '-i', ...args], { input, timeoutMs: 30_000 });
  assert.equal(r.code, 0, `curl ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  let out = r.stdout;
  for (;;) {
    const end = out.indexOf('\r\n\r\n');
    assert.ok(end !== -1, `curl ${args.join(' ')}: no response head in ${JSON.stringify(out.toString('latin1'))}`);
    const lines = out.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/(\S+) (\d{3})/.exec(lines[0]!);
    assert.ok(m !== null, `bad status line ${JSON.stringify(lines[0])}`);
    const status = Number(m[2]);
    out = out.subarray(end + 4);
    if (status < 200) continue;
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    return { status, version: m[1]!, headers, body: out };
  }
}

/** The two client sides: curl over HTTP/1.1 to an HTTP/1.1 listener, HTTP/2 prior knowledge to an http2 listener. */
const CLIENTS = [
  { name: 'HTTP/1.1', listener: {}, curlArgs: ['--http1.1'], version: '1.1' },
  { name: 'HTTP/2', listener: { protocol: 'http2' }, curlArgs: ['--http2-prior-knowledge'], version: '2' },
] as const;

/**
 * One request from either client side. HTTP/2 uses node:http2 rather than curl: curl 7.88 reports
 * error 92 for a complete response followed by RST_STREAM(NO_ERROR), which is how a server answers a
 * request body it does not read (RFC 9113 §8.1: clients MUST NOT discard such a response); nginx
 * and HAProxy do exactly that here, and curl fails the same way talking to them directly.
 */
async function send(
  client: (typeof CLIENTS)[number],
  p: TestProxy,
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; rstCode: number | null }> {
  if (client.version === '1.1') {
    const withBody = body === undefined ? [] : ['--data-binary', '@-', '-H', 'content-type: application/octet-stream'];
    const extra = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
    const a = await curlAnswer(['--http1.1', '-X', method, ...withBody, ...extra, `${p.url}${path}`], body);
    return { status: a.status, body: a.body, rstCode: null };
  }
  const session = await h2connect(p.url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request(
        body === undefined
          ? { ':method': method, ':path': path, ...headers }
          : {
              ':method': method,
              ':path': path,
              'content-type': 'application/octet-stream',
              'content-length': body.length,
              ...headers,
            },
        { endStream: body === undefined },
      );
      const chunks: Buffer[] = [];
      let status = 0;
      let ended = false;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => (ended = true));
      req.on('error', reject);
      req.on('close', () => {
        if (!ended)
          reject(new Error(`stream closed (code ${req.rstCode}) before the response ended; status ${status}`));
        else resolve({ status, body: Buffer.concat(chunks), rstCode: req.rstCode ?? 0 });
      });
      if (body !== undefined) req.end(body);
    });
  } finally {
    session.close();
  }
}

function run(
  cmd: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') return reject(err);
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
    });
  });
}

/** h2load against muxgate's HTTP/2 listener; asserts every request succeeded with a 2xx. */
async function h2load(url: string, n: number, clients: number, streams: number): Promise<string> {
  const r = await run(H2LOAD, ['-n', String(n), '-c', String(clients), '-m', String(streams), url]);
  const summary = `h2load exit ${r.code}:\n${r.stdout}\n${r.stderr}`;
  assert.match(
    r.stdout,
    new RegExp(`requests: ${n} total, ${n} started, ${n} done, ${n} succeeded, 0 failed, 0 errored, 0 timeout`),
    summary,
  );
  assert.match(r.stdout, new RegExp(`status codes: ${n} 2xx, 0 3xx, 0 4xx, 0 5xx`), summary);
  return r.stdout;
}

async function proxy(t: TestContext, backend: Daemon, cluster: Record<string, unknown> = {}, listener = {}) {
  const p = await startProxy({ upstreams: [backend.addr], cluster: { protocol: 'http2', ...cluster }, listener });
  t.after(() => p.close());
  return p;
}

function endpointStats(p: TestProxy) {
  const c = p.server.snapshot().clusters[0]!;
  const h2 = c.endpoints[0]!.h2;
  assert.ok(h2 !== null, 'the endpoint has an HTTP/2 pool');
  return { cluster: c, h2 };
}

/** nginx's count of accepted connections (stub_status), read over a connection of its own. */
async function nginxAccepts(nginx: Daemon): Promise<number> {
  const a = await curlAnswer(['--http2-prior-knowledge', `http://${nginx.addr}/status`]);
  const m = /server accepts handled requests\s+(\d+)/.exec(a.body.toString());
  assert.ok(m !== null, `stub_status: ${a.body.toString()}`);
  return Number(m[1]);
}

/** HAProxy's frontend conn_tot (cumulative connections), read over a connection of its own. */
async function haproxyConnections(haproxy: Daemon): Promise<number> {
  const a = await curlAnswer(['--http2-prior-knowledge', `http://${haproxy.addr}/stats;csv`]);
  const lines = a.body.toString().trim().split('\n');
  const names = lines[0]!.replace(/^# /, '').split(',');
  const fe = lines.find((l) => l.startsWith('fe,FRONTEND,'));
  assert.ok(fe !== undefined, `stats: ${a.body.toString()}`);
  const value = fe.split(',')[names.indexOf('conn_tot')];
  assert.ok(value !== undefined && value !== '', `conn_tot in ${lines[0]}`);
  return Number(value);
}

/** Polls the endpoint's HTTP/2 pool until `done` settles; returns the largest values seen. */
async function peaks(p: TestProxy, done: Promise<unknown>) {
  let settled = false;
  void done.finally(() => (settled = true)).catch(() => {});
  const peak = { sessions: 0, streams_active: 0, pending: 0 };
  while (!settled) {
    const { h2 } = endpointStats(p);
    peak.sessions = Math.max(peak.sessions, h2.sessions + h2.connecting);
    peak.streams_active = Math.max(peak.streams_active, h2.streams_active);
    peak.pending = Math.max(peak.pending, h2.pending);
    await sleep(5);
  }
  return peak;
}

// ---------------------------------------------------------------------------------------------

describe('nginx 1.22 as an HTTP/2 (h2c) backend', () => {
  let dir = '';
  let nginx: Daemon | undefined;
  before(async () => {
    if (skipNginx !== false) return;
    dir = tmpDir('muxgate-nginx-');
    nginx = await startNginx(dir);
  });
  after(async () => {
    await nginx?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });
  const backend = () => nginx!;

  for (const client of CLIENTS) {
    it(`${client.name} clients get nginx's answers: 200, a custom header, 204, 404, a 1 MiB file, HEAD`, {
      skip: skipNginx,
    }, async (t) => {
      const p = await proxy(t, backend(), {}, client.listener);
      const get = (path: string, extra: string[] = []) => curlAnswer([...client.curlArgs, ...extra, `${p.url}${path}`]);

      const hello = await get('/');
      assert.equal(hello.version, client.version);
      assert.equal(hello.status, 200);
      assert.equal(hello.body.toString(), 'hello from nginx\n');
      assert.match(hello.headers.get('server') ?? '', /^nginx\//);
      assert.equal(hello.headers.get('content-type'), 'text/plain');
      assert.equal(hello.headers.get('content-length'), '17');
      assert.equal(hello.headers.get('via'), '2 muxgate', 'the response came over HTTP/2');
      assert.equal(p.accessLog.at(-1)!.upstream_protocol, 'HTTP/2');

      const custom = await get('/custom');
      assert.equal(custom.status, 200);
      assert.equal(custom.headers.get('x-backend'), 'nginx h2c');
      assert.equal(custom.body.toString(), 'custom\n');

      const empty = await get('/empty');
      assert.equal(empty.status, 204);
      assert.equal(empty.body.length, 0);
      assert.equal(empty.headers.get('transfer-encoding'), undefined);

      const notFound = await get('/no-such-file');
      assert.equal(notFound.status, 404);
      assert.match(notFound.headers.get('server') ?? '', /^nginx\//);
      assert.equal(notFound.headers.get('muxgate-error'), undefined, "nginx's 404, not muxgate's");

      const big = await get('/big');
      assert.equal(big.status, 200);
      assert.equal(big.headers.get('content-length'), String(BIG.length));
      assert.equal(big.body.length, BIG.length);
      assert.equal(sha256(big.body), sha256(BIG));

      const head = await get('/big', ['-I']);
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(BIG.length));
      assert.equal(head.body.length, 0);

      const { cluster, h2 } = endpointStats(p);
      assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
      assert.equal(h2.connects_total, 1, 'one upstream connection carried every request');
      assert.equal(h2.connect_failures, 0);
      assert.equal(h2.streams_total, 6);
      assert.equal(p.server.snapshot().listeners[0]!.errors, 0);
    });
  }

  it('a 204 leaves an HTTP/1.1 connection clean for the next request (byte-exact)', { skip: skipNginx }, async (t) => {
    const p = await proxy(t, backend());
    const c = await connect(p.port, t);
    c.write('GET /empty HTTP/1.1\r\nHost: app.example\r\n\r\n');
    const empty = await c.readResponse();
    assert.equal(empty.status, 204);
    assert.equal(empty.body.length, 0);
    assert.equal(field(empty, 'content-length'), undefined);
    assert.equal(field(empty, 'transfer-encoding'), undefined);
    c.write('HEAD /big HTTP/1.1\r\nHost: app.example\r\n\r\n');
    const head = await c.readResponse({ method: 'HEAD' });
    assert.equal(field(head, 'content-length'), String(BIG.length));
    c.write('GET / HTTP/1.1\r\nHost: app.example\r\n\r\n');
    const hello = await c.readResponse();
    assert.equal(hello.status, 200);
    assert.equal(hello.body.toString(), 'hello from nginx\n');
    assert.equal(c.pending, 0, 'no stray bytes after the responses');
  });

  for (const client of CLIENTS) {
    it(`a 10 MB ${client.name} request body: PUT stored by nginx byte for byte, POST answered early`, {
      skip: skipNginx,
    }, async (t) => {
      const body = randomBytes(10 * 1000 * 1000);
      const p = await proxy(t, backend(), {}, client.listener);
      const name = `put-${client.name.replace('/', '')}-${process.pid}`;
      const put = await curlAnswer(
        [...client.curlArgs, '-X', 'PUT', '--data-binary', '@-', `${p.url}/dav/${name}`],
        body,
      );
      assert.equal(put.status, 201, put.body.toString());
      const stored = readFileSync(join(dir, 'www', 'dav', name));
      assert.equal(stored.length, body.length);
      assert.equal(sha256(stored), sha256(body));
      const back = await curlAnswer([...client.curlArgs, `${p.url}/dav/${name}`]);
      assert.equal(sha256(back.body), sha256(body));

      // nginx answers `return` locations without reading the body: the response, then RST_STREAM(NO_ERROR)
      // (RFC 9113 §8.1). The client must get the complete response all the same.
      const post = await send(client, p, 'POST', '/upload', body);
      assert.equal(post.status, 200);
      assert.equal(post.body.toString(), `${body.length}\n`);
      if (client.version === '2') assert.equal(post.rstCode, 0, 'the stream ends without an error code');
      const { cluster } = endpointStats(p);
      assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
    });
  }

  it('h2load: 2,000 requests (4 clients x 10 streams) over HTTP/2 on both legs, every one a 2xx', {
    skip: skipNginx || skipH2load,
  }, async (t) => {
    const p = await proxy(t, backend(), {}, { protocol: 'http2' });
    await h2load(`${p.url}/`, 2000, 4, 10);
    const { cluster, h2 } = endpointStats(p);
    assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
    // nginx closes a connection after 1,000 requests (keepalive_requests) with a GOAWAY: the streams it
    // left unprocessed are sent again, on a new connection.
    assert.equal(h2.streams_total, 2000 + h2.refused_streams, JSON.stringify(h2));
    // 40 streams at a time fit one connection; nginx's GOAWAY after its 1,000th request forced the next.
    assert.ok(h2.goaways >= 1 && h2.connects_total >= 2, JSON.stringify(h2));
    assert.equal(h2.connect_failures, 0);
  });

  it('500 concurrent streams ride at most pool.max_connections (2) upstream connections', {
    skip: skipNginx || skipH2load,
  }, async (t) => {
    const before = await nginxAccepts(backend());
    const p = await proxy(t, backend(), { pool: { max_connections: 2, max_pending: 1000 } }, { protocol: 'http2' });
    // /slow takes about a second per response: all 500 are in flight at once, 200 of them as streams
    // (2 connections x 100) and the rest waiting in the pool's queue.
    const load = h2load(`${p.url}/slow`, 500, 50, 10);
    const peak = await peaks(p, load);
    await load;
    // Each reading counts the connection it came over: the difference includes the second reading's.
    const accepted = (await nginxAccepts(backend())) - before - 1;
    const { cluster, h2 } = endpointStats(p);
    assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
    assert.ok(h2.connects_total <= 2, `muxgate opened ${h2.connects_total} connections`);
    assert.ok(accepted >= 1 && accepted <= 2, `nginx accepted ${accepted} connections`);
    assert.ok(peak.sessions <= 2, `peak sessions ${peak.sessions}`);
    assert.ok(peak.streams_active <= 200, `peak streams ${peak.streams_active}`);
    assert.ok(peak.streams_active > 100, `the requests overlapped (peak streams ${peak.streams_active})`);
    assert.ok(peak.pending > 0, 'requests beyond 2 x 100 streams waited in the queue');
    assert.equal(h2.streams_total, 500);
  });
});

describe('HAProxy 2.6 as an HTTP/2 (h2c) backend', () => {
  let dir = '';
  let haproxy: Daemon | undefined;
  before(async () => {
    if (skipHaproxy !== false) return;
    dir = tmpDir('muxgate-haproxy-');
    haproxy = await startHaproxy(dir);
  });
  after(async () => {
    await haproxy?.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });
  const backend = () => haproxy!;

  for (const client of CLIENTS) {
    it(`${client.name} clients get HAProxy's answers: 200, 418 with a custom header, 404, the request as seen`, {
      skip: skipHaproxy,
    }, async (t) => {
      const p = await proxy(t, backend(), {}, client.listener);
      const get = (path: string, extra: string[] = []) => curlAnswer([...client.curlArgs, ...extra, `${p.url}${path}`]);

      const hello = await get('/');
      assert.equal(hello.version, client.version);
      assert.equal(hello.status, 200);
      assert.equal(hello.body.toString(), 'hello from haproxy');
      assert.equal(hello.headers.get('content-type'), 'text/plain');
      assert.equal(hello.headers.get('content-length'), '18');
      assert.equal(hello.headers.get('via'), '2 muxgate', 'the response came over HTTP/2');

      const teapot = await get('/teapot');
      assert.equal(teapot.status, 418);
      assert.equal(teapot.headers.get('x-teapot'), 'short-and-stout');
      assert.equal(teapot.body.toString(), 'i am a teapot');
      assert.equal(teapot.headers.get('muxgate-error'), undefined);

      const notFound = await get('/elsewhere');
      assert.equal(notFound.status, 404);
      assert.equal(notFound.body.toString(), 'no such path');

      // HAProxy answers before it reads the body (and resets the stream if the body is still coming): see send().
      const echo = await send(client, p, 'POST', '/echo', Buffer.from('hello'), { 'x-test': '42' });
      assert.equal(echo.status, 200);
      assert.equal(echo.body.toString(), 'POST /echo 42 5');

      const { cluster, h2 } = endpointStats(p);
      assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
      assert.equal(h2.connects_total, 1);
      assert.equal(h2.streams_total, 4);
    });
  }

  for (const client of CLIENTS) {
    it(`a 1 MB ${client.name} POST HAProxy answers without reading it: the answer arrives, the upstream connection stays`, {
      skip: skipHaproxy,
    }, async (t) => {
      const p = await proxy(t, backend(), {}, client.listener);
      const body = randomBytes(1000 * 1000);
      // HAProxy sends the whole response, then RST_STREAM(CANCEL) for the request body it will not read.
      const r = await send(client, p, 'POST', '/', body);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'hello from haproxy');
      if (client.version === '2') assert.equal(r.rstCode, 0, 'the stream ends without an error code');
      // The next request rides the same upstream connection: one stream was reset, not the session.
      const next = await send(client, p, 'GET', '/teapot');
      assert.equal(next.status, 418);
      const { cluster, h2 } = endpointStats(p);
      assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
      assert.equal(h2.connects_total, 1);
    });
  }

  it('h2load: 2,000 requests (4 clients x 10 streams) over HTTP/2 on both legs, every one a 2xx', {
    skip: skipHaproxy || skipH2load,
  }, async (t) => {
    const p = await proxy(t, backend(), {}, { protocol: 'http2' });
    await h2load(`${p.url}/`, 2000, 4, 10);
    const { cluster, h2 } = endpointStats(p);
    assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
    assert.equal(h2.streams_total, 2000 + h2.refused_streams, JSON.stringify(h2));
  });

  it('500 concurrent streams ride at most pool.max_connections (2) upstream connections', {
    skip: skipHaproxy || skipH2load,
  }, async (t) => {
    const before = await haproxyConnections(backend());
    const p = await proxy(t, backend(), { pool: { max_connections: 2, max_pending: 1000 } }, { protocol: 'http2' });
    const load = h2load(`${p.url}/`, 500, 50, 10);
    const peak = await peaks(p, load);
    await load;
    // Each reading counts the connection it came over: the difference includes the second reading's.
    const accepted = (await haproxyConnections(backend())) - before - 1;
    const { cluster, h2 } = endpointStats(p);
    assert.equal(cluster.errors, 0, JSON.stringify(cluster.error_codes));
    assert.ok(h2.connects_total <= 2, `muxgate opened ${h2.connects_total} connections`);
    assert.ok(accepted >= 1 && accepted <= 2, `HAProxy accepted ${accepted} connections`);
    assert.ok(peak.sessions <= 2, `peak sessions ${peak.sessions}`);
    assert.equal(h2.streams_total, 500);
  });
});
