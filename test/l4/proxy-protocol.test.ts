/**
 * PROXY protocol on tcp listeners: accepted (v1 and v2, in pieces) from trusted peers only, the client
 * address it carries used for the access log and passed on; sent to a cluster's endpoints with
 * `send_proxy_protocol`; refused with its code when untrusted, missing, malformed or slow. HAProxy as
 * the real peer both ways: in front of muxgate with `send-proxy-v2`, and behind it with `accept-proxy`,
 * where the client's address reaches the HTTP backend in X-Forwarded-For.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseProxyHeader } from '../../src/proxy-protocol/proxy-header-parser.ts';
import { encodeProxyHeaderV2 } from '../../src/proxy-protocol/proxy-header.ts';
import { type Backend, httpBackend, recordingBackend } from '../helpers/backend.ts';
import { tmpDir } from '../helpers/certs.ts';
import { buildClientHello } from '../helpers/client-hello-bytes.ts';
import { skipWithoutHaproxy, startHaproxy } from '../helpers/haproxy.ts';
import { getFrom } from '../helpers/client.ts';
import { startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

function open(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function readN(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      if (got.length >= n) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${got.length} of ${n} bytes`)));
  });
}

const closed = (s: net.Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));

describe('PROXY protocol on a tcp listener', () => {
  let echo: Backend<net.Server> & { got: Buffer[] };
  before(async () => {
    echo = await recordingBackend(true);
  });
  after(() => echo.close());

  test('v1 and v2 headers from a trusted peer: consumed, their client address logged', async (t) => {
    const proxy = await startProxy({
      upstreams: [echo.addr],
      tcp: { proxy_protocol: { trusted: ['127.0.0.0/8'] } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    // v1, in one write with the payload after it
    const a = await open(proxy.port);
    a.write('PROXY TCP4 203.0.113.7 198.51.100.1 40000 5432\r\nhello');
    assert.equal((await readN(a, 5)).toString(), 'hello');
    a.end();
    // v2 with a TLV, one byte at a time, the payload in a later write
    const v2 = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '2001:db8::7', port: 50000 },
      destination: { address: '2001:db8::1', port: 443 },
      tlvs: [{ type: 0x02, value: Buffer.from('example.com') }],
    });
    const b = await open(proxy.port);
    for (const byte of v2) {
      b.write(Buffer.of(byte));
      await new Promise((r) => setTimeout(r, 1));
    }
    b.write('world');
    assert.equal((await readN(b, 5)).toString(), 'world');
    b.end();
    // LOCAL (the sender's own health check): accepted, the peer is the client
    const c = await open(proxy.port);
    c.write(Buffer.concat([encodeProxyHeaderV2({ command: 'local' }), Buffer.from('ping')]));
    assert.equal((await readN(c, 4)).toString(), 'ping');
    c.end();
    await waitUntil(() => proxy.accessLog.length === 3, 'three access log lines');
    assert.deepEqual(
      proxy.accessLog.map((l) => l.client),
      ['203.0.113.7', '2001:db8::7', '127.0.0.1'],
    );
    // The upstream got the payload only, never the header.
    assert.deepEqual(
      echo.got.slice(-3).map((g) => g.toString()),
      ['hello', 'world', 'ping'],
    );
  });

  test('untrusted, missing, malformed and slow headers close the connection with their codes', async (t) => {
    const proxy = await startProxy({
      upstreams: [echo.addr],
      tcp: { proxy_protocol: { trusted: ['127.0.0.2/32', '127.0.0.1/32'], timeout: '500ms' } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const untrusting = await startProxy({
      upstreams: [echo.addr],
      tcp: { proxy_protocol: { trusted: ['10.0.0.0/8'] } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => untrusting.close());
    const upstreamBefore = echo.got.length;

    const u = await open(untrusting.port);
    u.write('PROXY TCP4 203.0.113.7 198.51.100.1 40000 5432\r\nhello');
    await closed(u);
    for (const bytes of [
      'GET / HTTP/1.1\r\n\r\n', // no header at all
      'PROXY TCP4 203.0.113.7 198.51.100.1 40000 65536\r\n', // port out of range
      null, // nothing: timeout
    ]) {
      const s = await open(proxy.port);
      s.on('error', () => {});
      if (bytes !== null) s.write(bytes);
      await closed(s);
    }
    await waitUntil(() => untrusting.accessLog.length === 1 && proxy.accessLog.length === 3, 'the access log lines');
    assert.equal(untrusting.accessLog[0]?.error, 'proxy_protocol_untrusted');
    assert.deepEqual(
      proxy.accessLog.map((l) => l.error),
      ['proxy_protocol_missing', 'proxy_protocol_malformed', 'proxy_protocol_timeout'],
    );
    assert.equal(echo.got.length, upstreamBefore, 'no connection reached the upstream');
    assert.equal(proxy.server.snapshot().listeners[0]?.error_codes.proxy_protocol_timeout, 1);
  });

  test('send_proxy_protocol: v1 and v2 headers carry the client address to the upstream, before any payload', async (t) => {
    for (const version of ['v1', 'v2'] as const) {
      const proxy = await startProxy({
        upstreams: [echo.addr],
        cluster: { send_proxy_protocol: version },
        tcp: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
      });
      t.after(() => proxy.close());
      // The client as a PROXY header names it, passed on to the upstream in a header of the cluster's version.
      const s = await open(proxy.port);
      s.write('PROXY TCP4 203.0.113.9 198.51.100.2 41000 6000\r\npayload');
      await readN(s, 7);
      s.end();
      const got = echo.got.at(-1)!;
      const parsed = parseProxyHeader(got);
      assert.equal(parsed.kind, 'done', version);
      if (parsed.kind !== 'done') continue;
      assert.equal(parsed.header.version, version === 'v1' ? 1 : 2);
      assert.deepEqual(parsed.header.source, { address: '203.0.113.9', port: 41000 });
      assert.deepEqual(parsed.header.destination, { address: '198.51.100.2', port: 6000 });
      assert.equal(got.subarray(parsed.consumed).toString(), 'payload');
    }
  });

  test('a PROXY header, then a ClientHello routed by SNI', async (t) => {
    const other = await recordingBackend(true);
    t.after(() => other.close());
    const proxy = await startProxy({
      clusters: { a: { endpoints: [echo.addr] }, b: { endpoints: [other.addr] } },
      tcp: {
        cluster: 'a',
        proxy_protocol: { trusted: ['127.0.0.1/32'] },
        sni_routes: [{ server_names: ['b.test'], cluster: 'b' }],
      },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const hello = buildClientHello({ serverName: 'b.test' });
    const s = await open(proxy.port);
    s.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.5 198.51.100.3 42000 443\r\n'), hello]));
    await readN(s, hello.length);
    s.end();
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    assert.equal(proxy.accessLog[0]?.client, '203.0.113.5');
    assert.equal(proxy.accessLog[0]?.sni, 'b.test');
    assert.ok(other.got.at(-1)?.equals(hello), 'cluster b got the ClientHello, byte for byte');
  });
});

describe('PROXY protocol with HAProxy as the peer', { skip: skipWithoutHaproxy }, () => {
  let dir: string;
  before(() => {
    dir = tmpDir('muxgate-pp-haproxy-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const defaults = 'defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n';

  test('HAProxy with send-proxy-v2 in front: muxgate sees the client behind it', async (t) => {
    const echo = await recordingBackend(true);
    t.after(() => echo.close());
    const proxy = await startProxy({
      upstreams: [echo.addr],
      tcp: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const haproxy = await startHaproxy(
      dir,
      `${defaults}frontend f\n  mode tcp\n  bind fd@3\n  default_backend m\nbackend m\n  mode tcp\n  server muxgate 127.0.0.1:${proxy.port} send-proxy-v2\n`,
    );
    t.after(() => haproxy.stop());
    // From 127.0.0.5: HAProxy's connection to muxgate comes from 127.0.0.1, the client is 127.0.0.5.
    const s = await open(haproxy.port, '127.0.0.5');
    s.write('through haproxy');
    assert.equal((await readN(s, 15)).toString(), 'through haproxy', haproxy.output());
    s.end();
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    assert.equal(proxy.accessLog[0]?.client, '127.0.0.5');
    assert.equal(echo.got.at(-1)?.toString(), 'through haproxy');
  });

  test('muxgate with send_proxy_protocol v2 to HAProxy accept-proxy: the client reaches X-Forwarded-For', async (t) => {
    const seen: (string | undefined)[] = [];
    const backend = await httpBackend((req, res) => {
      seen.push(req.headers['x-forwarded-for'] as string | undefined);
      res.end('ok');
    });
    t.after(() => backend.close());
    const haproxy = await startHaproxy(
      dir,
      `${defaults}frontend f\n  mode http\n  bind fd@3 accept-proxy\n  option forwardfor\n  default_backend web\nbackend web\n  mode http\n  server b ${backend.addr}\n`,
    );
    t.after(() => haproxy.stop());
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${haproxy.port}`],
      cluster: { send_proxy_protocol: 'v2' },
      tcp: {},
    });
    t.after(() => proxy.close());
    const body = await getFrom(proxy.port, '127.0.0.6');
    assert.equal(body, 'ok', haproxy.output());
    assert.deepEqual(seen, ['127.0.0.6']);
  });
});
