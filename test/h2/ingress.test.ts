/**
 * HTTP/2 and TLS from clients: h2c with prior knowledge, one port serving both protocols (preface
 * sniffing in cleartext, ALPN over TLS), certificates by SNI and their reload, the HTTP/2 limits and
 * the rapid-reset guard, graceful GOAWAY. Real clients where they exist: curl, nghttp, h2load,
 * openssl s_client; node:http2 where a test needs to hold a session or misbehave.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import type http from 'node:http';
import http2 from 'node:http2';
import { join } from 'node:path';
import tls from 'node:tls';
import { describe, it, type TestContext } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { h2connect, h2request } from '../helpers/h2-client.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { gate, waitUntil } from '../helpers/wait.ts';
import { curl } from '../helpers/wire.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bytes: number;
  hash: string;
}

/** An HTTP/1.1 upstream recording each request; answers "ok <bytes>" (or what `respond` says). */
async function backend(t: TestContext, respond?: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const seen: Seen[] = [];
  const up = await httpBackend((req, res) => {
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bytes,
        hash: h.digest('hex'),
      });
      if (respond !== undefined) respond(req, res);
      else res.end(`ok ${bytes}\n`);
    });
  });
  t.after(() => up.close());
  return { up, seen };
}

let certDir: string | null = null;
let ca: CertPaths;
let localhost: CertPaths;
function certs(): { ca: CertPaths; localhost: CertPaths; dir: string } {
  if (certDir === null) {
    certDir = tmpDir('muxgate-h2-');
    ca = makeCa(certDir);
    localhost = makeCert(certDir, ca, ['localhost', '127.0.0.1']);
    process.on('exit', () => rmSync(certDir!, { recursive: true, force: true }));
  }
  return { ca, localhost, dir: certDir };
}

async function proxyFor(t: TestContext, upstream: string, listener: Record<string, unknown>): Promise<TestProxy> {
  const p = await startProxy({ upstreams: [upstream], listener });
  t.after(() => p.close());
  return p;
}

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') return reject(err);
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

describe('HTTP/2 in cleartext (h2c)', () => {
  it('protocol http2 serves prior-knowledge h2c and translates to HTTP/1.1 upstream', async (t) => {
    const { up, seen } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'http2' });
    const s = await h2connect(p.url);
    t.after(() => s.close());
    const r = await h2request(s, { ':path': '/a/b?q=1', cookie: ['a=1', 'b=2'], 'x-custom': 'v' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok 0\n');
    assert.equal(r.headers.via, '1.1 muxgate');
    const got = seen[0]!;
    assert.equal(got.url, '/a/b?q=1');
    assert.equal(got.headers.host, `127.0.0.1:${p.port}`);
    assert.equal(got.headers['x-custom'], 'v');
    assert.equal(got.headers.cookie, 'a=1; b=2', 'HTTP/2 cookie crumbs are joined with "; " for HTTP/1.1');
    assert.equal(got.headers.via, '2 muxgate');
    assert.equal(got.headers['x-forwarded-proto'], 'http');
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.1');
  });

  it('protocol auto serves HTTP/1.1 and h2c on one port (curl)', async (t) => {
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'auto' });
    const h2 = await curl([
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_version} %{http_code}',
      '--http2-prior-knowledge',
      `${p.url}/`,
    ]);
    assert.equal(h2.stdout.toString(), '2 200');
    const h1 = await curl(['-s', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `${p.url}/`]);
    assert.equal(h1.stdout.toString(), '1.1 200');
    // "POST" shares its first byte with the preface ("PRI * HTTP/2.0"): still HTTP/1.1.
    const post = await curl(['-s', '-w', ' %{http_version}', '-d', 'abc', `${p.url}/`]);
    assert.equal(post.stdout.toString(), 'ok 3\n 1.1');
  });

  it('protocol http2 refuses HTTP/1.1 (no silent downgrade)', async (t) => {
    const { up, seen } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'http2' });
    const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${p.url}/`]);
    assert.notEqual(r.stdout.toString(), '200');
    assert.equal(seen.length, 0);
  });

  it('streams request bodies with and without content-length, and large responses (nghttp, node)', async (t) => {
    const big = randomBytes(3 * 1024 * 1024);
    const { up, seen } = await backend(t, (req, res) => {
      if (req.url === '/big') res.end(big);
      else res.end(`ok ${seen.at(-1)!.bytes} ${seen.at(-1)!.hash}\n`);
    });
    const p = await proxyFor(t, up.addr, { protocol: 'auto' });
    const s = await h2connect(p.url);
    t.after(() => s.close());
    // No content-length: DATA frames of unknown total, relayed chunked to the HTTP/1.1 upstream.
    const parts = [randomBytes(70_000), randomBytes(1), randomBytes(200_000)];
    const whole = Buffer.concat(parts);
    const r1 = await h2request(s, { ':method': 'POST', ':path': '/stream' }, parts);
    assert.equal(r1.body.toString(), `ok ${whole.length} ${sha256(whole)}\n`);
    assert.equal(seen.at(-1)!.headers['transfer-encoding'], 'chunked');
    const r2 = await h2request(s, { ':method': 'PUT', ':path': '/len', 'content-length': whole.length }, whole);
    assert.equal(r2.body.toString(), `ok ${whole.length} ${sha256(whole)}\n`);
    assert.equal(seen.at(-1)!.headers['content-length'], String(whole.length));
    const r3 = await h2request(s, { ':path': '/big' });
    assert.equal(sha256(r3.body), sha256(big));
    assert.equal(r3.headers['content-length'], String(big.length));
    const ng = await run('nghttp', ['-d', '-', `${p.url}/ng`], 'hello from nghttp\n');
    assert.equal(ng.code, 0, ng.stderr);
    assert.match(ng.stdout, /^ok 18 /);
  });

  it('relays chunked, HEAD, 204 and 1xx-free responses with HTTP/2 framing', async (t) => {
    const { up } = await backend(t, (req, res) => {
      if (req.url === '/chunked') {
        res.setHeader('x-a', '1');
        res.write('part1-');
        res.end('part2');
      } else if (req.url === '/nocontent') {
        res.statusCode = 204;
        res.end();
      } else {
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.setHeader('connection', 'keep-alive, x-hop');
        res.setHeader('x-hop', 'must not pass');
        res.end('hello');
      }
    });
    const p = await proxyFor(t, up.addr, { protocol: 'http2' });
    const s = await h2connect(p.url);
    t.after(() => s.close());
    const c = await h2request(s, { ':path': '/chunked' });
    assert.equal(c.body.toString(), 'part1-part2');
    assert.equal(c.headers['x-a'], '1');
    assert.equal(c.headers['transfer-encoding'], undefined);
    const h = await h2request(s, { ':method': 'HEAD', ':path': '/plain' });
    assert.equal(h.status, 200);
    assert.equal(h.body.length, 0);
    const n = await h2request(s, { ':path': '/nocontent' });
    assert.equal(n.status, 204);
    const g = await h2request(s, { ':path': '/plain' });
    assert.deepEqual(g.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(g.headers['x-hop'], undefined, 'a field named in Connection is hop-by-hop');
    assert.equal(g.headers.connection, undefined);
  });

  it('answers proxy errors with a status and muxgate-error, and refuses ambiguous authority', async (t) => {
    const { up, seen } = await backend(t);
    const p = await startProxy({
      upstreams: [up.addr],
      listener: { protocol: 'http2' },
      routes: [{ match: { path: { prefix: '/api' } }, cluster: 'up' }],
    });
    t.after(() => p.close());
    const s = await h2connect(p.url);
    t.after(() => s.close());
    const nr = await h2request(s, { ':path': '/nope' });
    assert.equal(nr.status, 404);
    assert.equal(nr.headers['muxgate-error'], 'no_route');
    const bad = await h2request(s, { ':path': '/api', ':authority': 'a.example', host: 'b.example' });
    assert.equal(bad.status, 400);
    assert.equal(bad.headers['muxgate-error'], 'invalid_host');
    const ok = await h2request(s, { ':path': '/api/x' });
    assert.equal(ok.status, 200, 'the connection survives stream-level errors');
    assert.equal(seen.length, 1);
  });

  it('advertises the configured limits in SETTINGS (node client and nghttp)', async (t) => {
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, {
      protocol: 'http2',
      http2: { max_concurrent_streams: 7, initial_window_size: '2MiB', max_header_list_size: '32KiB' },
    });
    const s = await h2connect(p.url);
    t.after(() => s.close());
    assert.equal(s.remoteSettings.maxConcurrentStreams, 7);
    assert.equal(s.remoteSettings.initialWindowSize, 2 * 1024 * 1024);
    assert.equal(s.remoteSettings.maxHeaderListSize, 32 * 1024);
    const ng = await run('nghttp', ['-nv', `${p.url}/`]);
    assert.match(ng.stdout, /SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):7/);
    assert.match(ng.stdout, /SETTINGS_INITIAL_WINDOW_SIZE\(0x04\):2097152/);
    // A client keeping to the advertised limit gets every request answered (h2load).
    const h2l = await run('h2load', ['-n', '400', '-c', '2', '-m', '7', `${p.url}/`]);
    assert.match(h2l.stdout, /400 succeeded, 0 failed, 0 errored/);
  });

  it('answers a rapid-reset flood with GOAWAY ENHANCE_YOUR_CALM', async (t) => {
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, {
      protocol: 'http2',
      http2: { rapid_reset: { max_resets: 50, interval: '10s' } },
    });
    const s = await h2connect(p.url);
    t.after(() => s.destroy());
    const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    for (let i = 0; i < 200 && !s.closed && !s.destroyed; i++) {
      const req = s.request({ ':path': `/r${i}` });
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    assert.equal(await goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await closed;
    await waitUntil(() => p.eventLog.some((l) => String(l.msg).includes('reset flood')), 'the flood is logged');
    assert.equal(p.server.snapshot().listeners[0]!.error_codes.rapid_reset, 1);
    // Other clients are unaffected.
    const s2 = await h2connect(p.url);
    t.after(() => s2.close());
    assert.equal((await h2request(s2, { ':path': '/' })).status, 200);
  });

  it('drains with GOAWAY: streams in flight finish, the connection then closes', async (t) => {
    const hold = gate();
    const { up } = await backend(t, (_req, res) => {
      void hold.promise.then(() => res.end('late'));
    });
    const p = await proxyFor(t, up.addr, { protocol: 'http2' });
    const s = await h2connect(p.url);
    t.after(() => s.destroy());
    const inflight = h2request(s, { ':path': '/slow' });
    await waitUntil(() => p.server.snapshot().clusters[0]!.requests === 1, 'the request reached the upstream');
    const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)));
    const drained = p.server.drain(5000);
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    hold.open();
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'late');
    await drained;
  });

  it('carries h2load traffic with every request answered', async (t) => {
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'auto' });
    const r = await run('h2load', ['-n', '3000', '-c', '10', '-m', '10', `${p.url}/`]);
    assert.match(r.stdout, /3000 succeeded, 0 failed, 0 errored, 0 timeout/);
    assert.match(r.stdout, /status codes: 3000 2xx/);
  });
});

describe('TLS termination', () => {
  it('protocol auto over TLS: ALPN h2 and http/1.1, X-Forwarded-Proto https (curl)', async (t) => {
    const c = certs();
    const { up, seen } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'auto', tls: { cert: c.localhost.cert, key: c.localhost.key } });
    const base = ['-s', '--cacert', c.ca.cert, '--resolve', `localhost:${p.port}:127.0.0.1`];
    const url = `https://localhost:${p.port}/tls`;
    const h2 = await curl([...base, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', '--http2', url]);
    assert.equal(h2.stdout.toString(), '2 200', h2.stderr);
    const h1 = await curl([...base, '-o', '/dev/null', '-w', '%{http_version} %{http_code}', '--http1.1', url]);
    assert.equal(h1.stdout.toString(), '1.1 200', h1.stderr);
    assert.equal(seen.length, 2);
    for (const s of seen) {
      assert.equal(s.headers['x-forwarded-proto'], 'https');
      assert.match(String(s.headers.forwarded), /proto=https/);
    }
    assert.equal(seen[0]!.headers.via, '2 muxgate');
    assert.equal(seen[1]!.headers.via, '1.1 muxgate');
    assert.equal(p.server.snapshot().listeners[0]!.tls, true);
  });

  it('picks certificates by SNI (openssl s_client), prefers TLS 1.3, honours min_version', async (t) => {
    const c = certs();
    const dir = tmpDir('muxgate-sni-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const exact = makeCert(dir, c.ca, ['api.example.test'], { file: 'exact' });
    const wild = makeCert(dir, c.ca, ['*.example.test'], { file: 'wild' });
    const def = makeCert(dir, c.ca, ['default.test'], { file: 'default' });
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, {
      protocol: 'auto',
      tls: {
        certificates: [
          { cert: wild.cert, key: wild.key },
          { cert: exact.cert, key: exact.key },
          { cert: def.cert, key: def.key, default: true },
        ],
        min_version: 'TLSv1.3',
      },
    });
    const subject = async (servername: string | null) => {
      const args = ['s_client', '-connect', `127.0.0.1:${p.port}`, '-alpn', 'h2', '-CAfile', c.ca.cert];
      if (servername !== null) args.push('-servername', servername);
      else args.push('-noservername');
      const r = await run('openssl', args, '');
      return r.stdout;
    };
    const a = await subject('api.example.test');
    assert.match(a, /subject=CN ?= ?api\.example\.test/);
    assert.match(a, /ALPN protocol: h2/);
    assert.match(a, /TLSv1\.3/);
    assert.match(await subject('www.example.test'), /subject=CN ?= ?\*\.example\.test/);
    assert.match(await subject('a.b.example.test'), /subject=CN ?= ?default\.test/);
    assert.match(await subject(null), /subject=CN ?= ?default\.test/);
    const old = await run('openssl', ['s_client', '-connect', `127.0.0.1:${p.port}`, '-tls1_2'], '');
    assert.match(old.stdout, /Cipher is \(NONE\)/, 'TLS 1.2 is refused with min_version TLSv1.3');
    assert.match(old.stdout, /no peer certificate available/);
  });

  it('reloads changed certificate files without dropping open connections', async (t) => {
    const c = certs();
    const dir = tmpDir('muxgate-reload-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const first = makeCert(dir, c.ca, ['localhost'], { file: 'first' });
    const second = makeCert(dir, c.ca, ['localhost'], { file: 'second' });
    const live = { cert: join(dir, 'live.pem'), key: join(dir, 'live.key') };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'auto', tls: { ...live, reload_interval: '50ms' } });
    const fingerprint = () =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ port: p.port, host: '127.0.0.1', servername: 'localhost', ca: [readCa(c.ca)] }, () => {
          const fp = s.getPeerCertificate().fingerprint256;
          s.destroy();
          resolve(fp);
        });
        s.on('error', reject);
      });
    const before = await fingerprint();
    const session = await h2connect(`https://127.0.0.1:${p.port}`, { ca: readCa(c.ca), servername: 'localhost' });
    t.after(() => session.close());
    assert.equal((await h2request(session, { ':path': '/' })).status, 200);
    // Replace key first, then cert: the store refuses a mismatched pair and keeps serving the old one.
    copyFileSync(second.key, live.key);
    copyFileSync(second.cert, live.cert);
    let after = before;
    for (let i = 0; i < 100 && after === before; i++) {
      after = await fingerprint();
      if (after === before) await new Promise((r) => setTimeout(r, 50));
    }
    assert.notEqual(after, before, 'new handshakes get the new certificate');
    assert.equal((await h2request(session, { ':path': '/' })).status, 200, 'the open connection still works');
  });

  it('fails to start with a clear error naming a missing or mismatched certificate file', async () => {
    const c = certs();
    const dir = tmpDir('muxgate-bad-');
    try {
      const other = makeCert(dir, c.ca, ['other'], { file: 'other' });
      const missing = join(dir, 'missing.pem');
      await assert.rejects(
        startProxy({ upstreams: ['127.0.0.1:1'], listener: { tls: { cert: missing, key: other.key } } }),
        (err: Error) => err.message.includes(missing),
      );
      await assert.rejects(
        startProxy({ upstreams: ['127.0.0.1:1'], listener: { tls: { cert: c.localhost.cert, key: other.key } } }),
        (err: Error) => err.message.includes(other.key) && /does not match/.test(err.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('carries h2load over TLS (ALPN h2) with every request answered', async (t) => {
    const c = certs();
    const { up } = await backend(t);
    const p = await proxyFor(t, up.addr, { protocol: 'http2', tls: { cert: c.localhost.cert, key: c.localhost.key } });
    const r = await run('h2load', ['-n', '2000', '-c', '4', '-m', '20', `https://127.0.0.1:${p.port}/`]);
    assert.match(r.stdout, /2000 succeeded, 0 failed, 0 errored, 0 timeout/);
    assert.match(r.stdout, /Application protocol: h2/);
  });
});

function readCa(c: CertPaths): Buffer {
  return readFileSync(c.cert);
}
