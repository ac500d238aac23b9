/**
 * TLS passthrough by SNI on a tcp listener (`sni_routes`): muxgate reads the ClientHello without
 * terminating TLS and pipes every byte to the cluster the server name (and ALPN) picks. Real clients:
 * openssl s_client and curl see each backend's own certificate; a ClientHello sent one byte per TCP
 * segment still routes and arrives byte for byte; malformed, slow, non-TLS and unroutable starts are
 * closed with their codes.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { type Backend, httpBackend, recordingBackend } from '../helpers/backend.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { buildClientHello } from '../helpers/client-hello-bytes.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

/** A TLS backend answering any request with its name over HTTP/1.1. */
interface TlsBackend {
  addr: string;
  close(): Promise<void>;
}

/** An external client run without blocking the event loop (muxgate runs in this process). */
function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 15_000, encoding: 'utf8' }, (_err, stdout, stderr) =>
      resolve({ stdout, stderr }),
    );
    child.stdin?.end();
  });
}

async function tlsBackend(name: string, cert: CertPaths): Promise<TlsBackend> {
  const server = tls.createServer(
    { cert: readFileSync(cert.cert), key: readFileSync(cert.key), ALPNProtocols: ['h2', 'http/1.1'] },
    (s) => {
      s.on('error', () => {});
      s.once('data', () => {
        s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${name.length}\r\nconnection: close\r\n\r\n${name}`);
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { addr: `127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const hasCurl = spawnSync('curl', ['--version']).status === 0;

describe('TLS passthrough by SNI', () => {
  let dir: string;
  let a: TlsBackend;
  let b: TlsBackend;
  let rec: Backend<net.Server> & { got: Buffer[] };
  let proxy: TestProxy;

  before(async () => {
    dir = tmpDir('muxgate-passthrough-');
    const ca = makeCa(dir);
    a = await tlsBackend('backend-a', makeCert(dir, ca, ['a.test'], { file: 'a' }));
    b = await tlsBackend('backend-b', makeCert(dir, ca, ['*.b.test'], { file: 'b' }));
    rec = await recordingBackend(false);
    proxy = await startProxy({
      clusters: {
        a: { endpoints: [a.addr] },
        b: { endpoints: [b.addr] },
        rec: { endpoints: [rec.addr] },
      },
      tcp: {
        cluster: undefined,
        sni_routes: [
          { server_names: ['a.test'], cluster: 'a' },
          { server_names: ['*.b.test'], cluster: 'b' },
          { server_names: ['bytes.test'], alpn: ['x-rec'], cluster: 'rec' },
        ],
        sni_timeout: '1s',
      },
      config: { access_log: { enabled: true } },
    });
  });
  after(async () => {
    await proxy?.close();
    await Promise.all([a?.close(), b?.close(), rec?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('each client sees its backend certificate (node:tls)', async () => {
    for (const [servername, cn] of [
      ['a.test', 'a.test'],
      ['x.b.test', '*.b.test'],
      ['deep.x.b.test', '*.b.test'],
    ] as const) {
      const subject = await new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername, rejectUnauthorized: false }, () => {
          resolve(String(s.getPeerCertificate().subject.CN));
          s.destroy();
        });
        s.on('error', reject);
      });
      assert.equal(subject, cn, servername);
    }
  });

  test('openssl s_client -servername sees each backend certificate', {
    skip: !hasOpenssl && 'openssl not installed',
  }, async () => {
    for (const [servername, cn] of [
      ['a.test', 'CN = a.test'],
      ['api.b.test', 'CN = *.b.test'],
    ] as const) {
      const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${proxy.port}`, '-servername', servername]);
      assert.match(r.stdout, new RegExp(`subject=.*${cn.replace(/[.*]/g, '\\$&')}`), `${servername}: ${r.stderr}`);
    }
  });

  test("curl --resolve through passthrough gets each backend's answer", {
    skip: !hasCurl && 'curl not installed',
  }, async () => {
    for (const [host, body] of [
      ['a.test', 'backend-a'],
      ['www.b.test', 'backend-b'],
    ] as const) {
      const r = await run('curl', [
        '-sk',
        '--http1.1',
        '--max-time',
        '10',
        '--resolve',
        `${host}:${proxy.port}:127.0.0.1`,
        `https://${host}:${proxy.port}/`,
      ]);
      assert.equal(r.stdout, body, `${host}: ${r.stderr}`);
    }
  });

  test('a ClientHello sent one byte per segment routes, and arrives byte for byte', async () => {
    const hello = buildClientHello({ serverName: 'bytes.test', alpn: ['x-rec'] });
    const before = rec.got.length;
    const s = net.connect({ host: '127.0.0.1', port: proxy.port, noDelay: true });
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    for (const byte of hello) {
      s.write(Buffer.of(byte));
      await new Promise((r) => setTimeout(r, 1));
    }
    s.write('after the hello');
    const want = Buffer.concat([hello, Buffer.from('after the hello')]);
    await waitUntil(
      () => rec.got.length === before + 1 && rec.got[before]!.equals(want),
      'the recorder got every byte',
    );
    s.destroy();
    // The same name without the ALPN the route asks for has no route (and no default cluster).
    const other = buildClientHello({ serverName: 'bytes.test', alpn: ['h2'] });
    const c = net.connect({ host: '127.0.0.1', port: proxy.port });
    c.on('error', () => {});
    c.write(other);
    await new Promise((r) => c.once('close', r));
    assert.equal(rec.got.length, before + 1, 'nothing reached the recorder');
  });

  test('closes non-TLS, malformed, slow and unroutable starts with their codes', async () => {
    const closeAfter = async (bytes: Buffer | null): Promise<void> => {
      const s = net.connect({ host: '127.0.0.1', port: proxy.port });
      s.on('error', () => {});
      if (bytes !== null) s.write(bytes);
      await new Promise((r) => s.once('close', r));
    };
    const n = proxy.accessLog.length;
    await closeAfter(Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'));
    const bad = buildClientHello({ serverName: 'a.test' });
    bad[9] = 2; // handshake type server_hello
    await closeAfter(bad);
    await closeAfter(buildClientHello({ serverName: 'nowhere.test' }));
    await closeAfter(buildClientHello({}));
    await closeAfter(null); // says nothing: sni_timeout (1 s)
    // The lines of these five (an earlier test's tunnel may still log its own close meanwhile).
    const refusals = () =>
      proxy.accessLog
        .slice(n)
        .map((l) => l.error)
        .filter((e) => typeof e === 'string' && /^(tls_|client_hello_|sni_)/.test(e));
    await waitUntil(() => refusals().length === 5, 'five access log lines');
    assert.deepEqual(refusals(), [
      'tls_not_tls',
      'client_hello_malformed',
      'sni_no_route',
      'sni_no_route',
      'sni_timeout',
    ]);
    const codes = proxy.server.snapshot().listeners[0]?.error_codes ?? {};
    assert.equal(codes.tls_not_tls, 1);
    assert.equal(codes.sni_timeout, 1);
  });
});

describe('termination and passthrough on one port', () => {
  let dir: string;
  let passBackend: TlsBackend;
  let http: Backend<HttpServer>;
  const xff: (string | undefined)[] = [];
  let proxy: TestProxy;

  before(async () => {
    dir = tmpDir('muxgate-mixed-');
    const ca = makeCa(dir);
    passBackend = await tlsBackend('passed-through', makeCert(dir, ca, ['pass.test'], { file: 'pass' }));
    http = await httpBackend((req, res) => {
      xff.push(req.headers['x-forwarded-for'] as string | undefined);
      res.end('terminated');
    });
    const own = makeCert(dir, ca, ['term.test'], { file: 'term' });
    proxy = await startProxy({
      clusters: { web: { endpoints: [http.addr] }, pass: { endpoints: [passBackend.addr] } },
      routes: [{ cluster: 'web' }],
      listener: {
        protocol: 'auto',
        tls: { cert: own.cert, key: own.key },
        passthrough: [{ server_names: ['pass.test'], cluster: 'pass' }],
      },
      config: { access_log: { enabled: true } },
    });
  });
  after(async () => {
    await proxy?.close();
    await Promise.all([passBackend?.close(), http?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a passthrough name reaches its backend untouched; other names are terminated here', async () => {
    const subject = (servername: string) =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername, rejectUnauthorized: false }, () => {
          resolve(String(s.getPeerCertificate().subject.CN));
          s.destroy();
        });
        s.on('error', reject);
      });
    assert.equal(await subject('pass.test'), 'pass.test', "the backend's own certificate");
    assert.equal(await subject('term.test'), 'term.test', "muxgate's certificate");
  });

  test('curl: HTTP/2 to the terminated name, HTTP/1.1 to the passed-through one', {
    skip: !hasCurl && 'curl not installed',
  }, async () => {
    const get = (host: string, ...flags: string[]) =>
      run('curl', [
        '-sk',
        ...flags,
        '--max-time',
        '10',
        '--resolve',
        `${host}:${proxy.port}:127.0.0.1`,
        `https://${host}:${proxy.port}/`,
      ]);
    assert.equal((await get('term.test', '--http2')).stdout, 'terminated');
    assert.equal((await get('pass.test', '--http1.1')).stdout, 'passed-through');
  });
});

describe('PROXY protocol before TLS', () => {
  test('the header, then the TLS handshake: the client it names reaches X-Forwarded-For', async (t) => {
    const dir = tmpDir('muxgate-pp-tls-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ca = makeCa(dir);
    const own = makeCert(dir, ca, ['term.test'], { file: 'term' });
    const xff: (string | undefined)[] = [];
    const backend = await httpBackend((req, res) => {
      xff.push(req.headers['x-forwarded-for'] as string | undefined);
      res.end('ok');
    });
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { tls: { cert: own.cert, key: own.key }, proxy_protocol: { trusted: ['127.0.0.1/32'] } },
    });
    t.after(() => proxy.close());
    const raw = net.connect({ host: '127.0.0.1', port: proxy.port });
    await new Promise((r) => raw.once('connect', r));
    raw.write('PROXY TCP4 203.0.113.77 198.51.100.1 40000 443\r\n');
    const s = tls.connect({ socket: raw, servername: 'term.test', rejectUnauthorized: false });
    await new Promise((r, j) => {
      s.once('secureConnect', r);
      s.once('error', j);
    });
    s.write('GET / HTTP/1.1\r\nhost: term.test\r\nconnection: close\r\n\r\n');
    let answer = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (answer += c));
    await new Promise((r) => s.once('close', r));
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.deepEqual(xff, ['203.0.113.77']);
  });
});
