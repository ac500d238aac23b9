import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import tls from 'node:tls';
import pino from 'pino';
import { type CertFile, CertStore, CertStoreError, type CertStoreOptions } from '../../src/tls/cert-store.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const dir = tmpDir('muxgate-cert-store-');
after(() => rmSync(dir, { recursive: true, force: true }));
const ca = makeCa(dir);
const caPem = readFileSync(ca.cert);
// The default certificate also names 127.0.0.1 so a client without SNI can verify it.
const deflt = makeCert(dir, ca, ['default.test', '127.0.0.1'], { file: 'default' });
const exact = makeCert(dir, ca, ['a.example.com'], { file: 'exact' });
const wild = makeCert(dir, ca, ['*.example.com'], { file: 'wild' });

const OPTS: CertStoreOptions = { minVersion: 'TLSv1.2', alpn: ['h2', 'http/1.1'], reloadIntervalMs: 0 };

const fingerprint = (c: CertPaths): string => new X509Certificate(readFileSync(c.cert)).fingerprint256;

interface Served {
  store: CertStore;
  port: number;
  /** Event log lines written by the store. */
  logs: Record<string, unknown>[];
  /** A verified TLS connection to the server (identity not checked: the tests look at what was presented). */
  connect(opts?: tls.ConnectionOptions): Promise<tls.TLSSocket>;
}

/** An echo TLS server on 127.0.0.1 built from a CertStore, torn down after the test. */
async function serve(t: { after(fn: () => unknown): void }, files: CertFile[], opts: Partial<CertStoreOptions> = {}) {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  const store = CertStore.load(files, { ...OPTS, ...opts }, pino({ level: 'info' }, sink));
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(store.serverOptions(), (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.pipe(s);
  });
  store.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  t.after(async () => {
    store.close();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const connect = (o: tls.ConnectionOptions = {}) =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: caPem, checkServerIdentity: () => undefined, ...o });
      sockets.add(s);
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  return { store, port, logs, connect } satisfies Served;
}

/** What the server presented to a new connection (closed again). */
async function presented(srv: Served, servername?: string): Promise<{ san: string; fp: string }> {
  const s = await srv.connect({ servername });
  const peer = s.getPeerCertificate();
  s.destroy();
  return { san: peer.subjectaltname ?? '', fp: peer.fingerprint256 };
}

/** Sends a line over an open connection and waits for the echo. */
async function echo(s: tls.TLSSocket, text: string): Promise<string> {
  const got = new Promise<string>((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.once('error', reject);
  });
  s.write(text);
  return got;
}

test('SNI picks the exact name, then a one-label wildcard, else the default; case-insensitively', async (t) => {
  // The wildcard comes first and the default last: exact beats wildcard and `default: true` beats order.
  const srv = await serve(t, [wild, exact, { ...deflt, default: true }]);
  const cases: [string | undefined, string][] = [
    ['a.example.com', 'DNS:a.example.com'],
    ['A.Example.COM', 'DNS:a.example.com'],
    ['a.example.com.', 'DNS:a.example.com'],
    ['b.example.com', 'DNS:*.example.com'],
    ['B.EXAMPLE.com', 'DNS:*.example.com'],
    ['x.b.example.com', 'DNS:default.test, IP Address:127.0.0.1'],
    ['example.com', 'DNS:default.test, IP Address:127.0.0.1'],
    ['unknown.test', 'DNS:default.test, IP Address:127.0.0.1'],
    [undefined, 'DNS:default.test, IP Address:127.0.0.1'],
  ];
  for (const [servername, san] of cases) {
    assert.equal((await presented(srv, servername)).san, san, `servername ${servername}`);
  }
});

test('serverNames replace the names in the certificate, the first claim wins, the CN is the last resort', async (t) => {
  const cnOnly = makeCert(dir, ca, [], { cn: 'cn-only.test', file: 'cn-only' });
  const x = makeCert(dir, ca, ['x.test'], { file: 'x' });
  const y = makeCert(dir, ca, ['y.test'], { file: 'y' });
  // No `default: true`: the first entry is the default.
  const srv = await serve(t, [
    deflt,
    { ...x, serverNames: ['Shared.test'] },
    { ...y, serverNames: ['shared.test', 'y.test'] },
    cnOnly,
  ]);
  assert.equal((await presented(srv, 'shared.test')).fp, fingerprint(x));
  assert.equal((await presented(srv, 'y.test')).fp, fingerprint(y));
  assert.equal((await presented(srv, 'x.test')).fp, fingerprint(deflt), 'x.test is no longer claimed');
  assert.equal((await presented(srv, 'cn-only.test')).fp, fingerprint(cnOnly));
  assert.equal((await presented(srv)).fp, fingerprint(deflt));
});

test('minVersion TLSv1.3 refuses a TLS 1.2 client; a default client gets TLS 1.3', async (t) => {
  const srv = await serve(t, [deflt, exact], { minVersion: 'TLSv1.3' });
  await assert.rejects(srv.connect({ maxVersion: 'TLSv1.2' }), /protocol version/);
  await assert.rejects(srv.connect({ maxVersion: 'TLSv1.2', servername: 'a.example.com' }), /protocol version/);
  const s = await srv.connect({ servername: 'a.example.com' });
  assert.equal(s.getProtocol(), 'TLSv1.3');
});

test('minVersion TLSv1.2 accepts a TLS 1.2 client; a default client still gets TLS 1.3', async (t) => {
  const srv = await serve(t, [deflt, exact]);
  const old = await srv.connect({ maxVersion: 'TLSv1.2', servername: 'a.example.com' });
  assert.equal(old.getProtocol(), 'TLSv1.2');
  assert.equal(await echo(old, 'hi'), 'hi');
  assert.equal((await srv.connect()).getProtocol(), 'TLSv1.3');
});

test("ALPN follows the listener's preference, on the default and on SNI-selected certificates", async (t) => {
  const srv = await serve(t, [deflt, exact], { alpn: ['h2', 'http/1.1'] });
  for (const servername of [undefined, 'a.example.com']) {
    assert.equal((await srv.connect({ servername, ALPNProtocols: ['http/1.1', 'h2'] })).alpnProtocol, 'h2');
    assert.equal((await srv.connect({ servername, ALPNProtocols: ['http/1.1'] })).alpnProtocol, 'http/1.1');
    assert.equal((await srv.connect({ servername })).alpnProtocol, false, 'no ALPN offered, none chosen');
  }
  // Node answers an offer with nothing in common with a fatal no_application_protocol alert (RFC 7301).
  await assert.rejects(srv.connect({ ALPNProtocols: ['spdy/3'] }), /no application protocol/);
});

test('load names the file at fault', () => {
  const garbage = `${dir}/garbage.pem`;
  writeFileSync(garbage, 'not a certificate\n');
  const garbageKey = `${dir}/garbage.key`;
  writeFileSync(garbageKey, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
  const cases: [CertFile, string, RegExp][] = [
    [{ cert: `${dir}/missing.pem`, key: exact.key }, `${dir}/missing.pem`, /cannot read certificate file .*: ENOENT/],
    [{ cert: exact.cert, key: `${dir}/missing.key` }, `${dir}/missing.key`, /cannot read key file .*: ENOENT/],
    [{ cert: exact.cert, key: wild.key }, wild.key, /does not match certificate/],
    [{ cert: garbage, key: exact.key }, garbage, /is not a PEM certificate/],
    [{ cert: exact.cert, key: garbageKey }, garbageKey, /is not a PEM private key/],
  ];
  for (const [bad, file, reason] of cases) {
    // The bad entry comes second: every entry is validated, not just the default.
    assert.throws(
      () => CertStore.load([deflt, bad], OPTS, pino({ level: 'silent' })),
      (err: unknown) => {
        assert.ok(err instanceof CertStoreError, `expected a CertStoreError, got ${String(err)}`);
        assert.equal(err.file, file);
        assert.ok(err.message.includes(`"${file}"`), err.message);
        assert.match(err.message, reason);
        return true;
      },
    );
  }
});

/** A fresh certificate for `names` copied over `target`'s files in one go (no poll can run in between). */
function replace(d: string, target: CertPaths, names: string[]): CertPaths {
  const next = makeCert(d, ca, names, { file: 'next' });
  copyFileSync(next.cert, target.cert);
  copyFileSync(next.key, target.key);
  return next;
}

test('a changed SNI certificate reaches new connections; open ones keep working', async (t) => {
  const d = tmpDir('muxgate-reload-');
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const r = makeCert(d, ca, ['r.test'], { file: 'r' });
  const srv = await serve(t, [deflt, r], { reloadIntervalMs: 50 });
  const before = await srv.connect({ servername: 'r.test' });
  const oldFp = before.getPeerCertificate().fingerprint256;

  const next = replace(d, r, ['r.test']);
  assert.notEqual(fingerprint(next), oldFp);
  await waitUntil(() => srv.store.reloads === 1, 'the store reloads');
  assert.equal((await presented(srv, 'r.test')).fp, fingerprint(next));
  assert.equal((await presented(srv)).fp, fingerprint(deflt), 'the default is untouched');

  assert.equal(before.destroyed, false);
  assert.equal(await echo(before, 'still here'), 'still here');
  assert.equal(before.getPeerCertificate().fingerprint256, oldFp);
  assert.equal(srv.store.reloadFailures, 0);
  assert.ok(srv.logs.some((l) => l.msg === 'certificate reloaded' && l.cert === r.cert));
});

test('a changed default certificate reaches clients without SNI and with unknown names', async (t) => {
  const d = tmpDir('muxgate-reload-');
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const def = makeCert(d, ca, ['def.test', '127.0.0.1'], { file: 'def' });
  const oldFp = fingerprint(def);
  const srv = await serve(t, [def, exact], { reloadIntervalMs: 50, minVersion: 'TLSv1.3' });
  const before = await srv.connect();

  const next = replace(d, def, ['def.test', '127.0.0.1']);
  await waitUntil(() => srv.store.reloads === 1, 'the store reloads');
  assert.equal((await presented(srv)).fp, fingerprint(next), 'no SNI: the server context was replaced');
  assert.equal((await presented(srv, 'unknown.test')).fp, fingerprint(next), 'unknown name: SNICallback fallback');
  assert.equal((await presented(srv, 'a.example.com')).fp, fingerprint(exact));
  // setSecureContext rebuilt the server context: the minimum version must have survived it.
  await assert.rejects(srv.connect({ maxVersion: 'TLSv1.2' }), /protocol version/);

  assert.equal(await echo(before, 'ping'), 'ping');
  assert.equal(before.getPeerCertificate().fingerprint256, oldFp);
});

test('a broken change is logged once and the previous certificate stays in service until fixed', async (t) => {
  const d = tmpDir('muxgate-reload-');
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const def = makeCert(d, ca, ['def.test', '127.0.0.1'], { file: 'def' });
  const r = makeCert(d, ca, ['r.test'], { file: 'r' });
  const srv = await serve(t, [def, r], { reloadIntervalMs: 20 });
  const oldFp = fingerprint(r);
  const defFp = fingerprint(def);

  writeFileSync(r.cert, 'truncated');
  await waitUntil(() => srv.store.reloadFailures === 1, 'the reload fails');
  const error = srv.logs.find((l) => l.level === 50);
  assert.ok(error, 'an error was logged');
  assert.equal(error.file, r.cert);
  assert.match(String(error.reason), /is not a PEM certificate/);
  assert.equal((await presented(srv, 'r.test')).fp, oldFp);

  await sleep(100); // five more polls of the same broken file
  assert.equal(srv.store.reloadFailures, 1, 'the same broken file is reported once');
  assert.equal(srv.store.reloads, 0);

  const next = replace(d, r, ['r.test']);
  await waitUntil(() => srv.store.reloads === 1, 'the fixed file loads');
  assert.equal((await presented(srv, 'r.test')).fp, fingerprint(next));

  // A key that does not match is a failure too; the default stays as it was.
  copyFileSync(r.key, def.key);
  await waitUntil(() => srv.store.reloadFailures === 2, 'the mismatched key is refused');
  assert.equal((await presented(srv)).fp, defFp);
  assert.equal(srv.logs.filter((l) => l.level === 50).at(-1)?.file, def.key);
});

test('close stops watching', async (t) => {
  const d = tmpDir('muxgate-reload-');
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const def = makeCert(d, ca, ['def.test', '127.0.0.1'], { file: 'def' });
  const oldFp = fingerprint(def);
  const srv = await serve(t, [def], { reloadIntervalMs: 20 });
  srv.store.close();
  replace(d, def, ['def.test', '127.0.0.1']);
  await sleep(100); // five polls, had it still been watching
  assert.equal(srv.store.reloads + srv.store.reloadFailures, 0);
  assert.equal((await presented(srv)).fp, oldFp);
});
