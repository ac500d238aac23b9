/**
 * PROXY protocol on HTTP listeners (cleartext): the client address of the header is the connection's
 * peer for everything that reads one: X-Forwarded-For and Forwarded, the access log, rate-limit keys.
 * HTTP/1.1 (direct reads and streams), HTTP/2 on an auto listener, and HAProxy (`send-proxy-v2`) in
 * front as the real peer; a connection from an untrusted peer or without a header is closed.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { encodeProxyHeaderV2 } from '../../src/proxy-protocol/proxy-header.ts';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { tmpDir } from '../helpers/certs.ts';
import { skipWithoutHaproxy, startHaproxy } from '../helpers/haproxy.ts';
import { getFrom } from '../helpers/client.ts';
import { startForwardProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

interface Seen {
  xff: string | undefined;
  forwarded: string | undefined;
}

/** Sends `header` then the HTTP/1.1 requests for `paths` on one connection; resolves with the raw answer. */
function rawRequests(port: number, header: Buffer | string, paths: string[]): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
    });
    // The last request asks muxgate to close: the answer is complete when the connection is.
    s.on('close', () => resolve(got));
    // A refused connection may be reset while the request is written: what arrived is the answer.
    s.on('error', () => {});
    s.write(header);
    s.write(
      paths
        .map(
          (p, i) =>
            `GET ${p} HTTP/1.1\r\nhost: example.test\r\n${i === paths.length - 1 ? 'connection: close\r\n' : ''}\r\n`,
        )
        .join(''),
    );
  });
}

describe('PROXY protocol on an HTTP listener', () => {
  let backend: Backend<http.Server>;
  const seen: Seen[] = [];
  before(async () => {
    backend = await httpBackend((req, res) => {
      seen.push({
        xff: req.headers['x-forwarded-for'] as string | undefined,
        forwarded: req.headers.forwarded as string | undefined,
      });
      res.end('ok');
    });
  });
  after(() => backend.close());

  for (const directIo of [true, false]) {
    test(`HTTP/1.1 (${directIo ? 'direct reads' : 'streams'}): X-Forwarded-For, Forwarded and the access log name the PROXY client`, async (t) => {
      const proxy = await startProxy({
        upstreams: [backend.addr],
        listener: { proxy_protocol: { trusted: ['127.0.0.0/8'] } },
        config: { access_log: { enabled: true }, direct_io: directIo },
      });
      t.after(() => proxy.close());
      seen.length = 0;
      const answer = await rawRequests(proxy.port, 'PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n', ['/a', '/b']);
      assert.equal((answer.match(/HTTP\/1\.1 200 /g) ?? []).length, 2, answer);
      assert.deepEqual(seen, [
        { xff: '203.0.113.7', forwarded: 'for=203.0.113.7;host=example.test;proto=http' },
        { xff: '203.0.113.7', forwarded: 'for=203.0.113.7;host=example.test;proto=http' },
      ]);
      await waitUntil(() => proxy.accessLog.length === 2, 'two access log lines');
      assert.deepEqual(
        proxy.accessLog.map((l) => l.client),
        ['203.0.113.7', '203.0.113.7'],
      );
    });
  }

  test('HTTP/2 on an auto listener, the PROXY v2 header before the connection preface', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { protocol: 'auto', proxy_protocol: { trusted: ['127.0.0.1/32'] } },
    });
    t.after(() => proxy.close());
    seen.length = 0;
    const header = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '2001:db8::42', port: 50000 },
      destination: { address: '2001:db8::1', port: 80 },
    });
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`, {
      createConnection: () => {
        const s = net.connect({ port: proxy.port, host: '127.0.0.1' });
        s.write(header);
        return s;
      },
    });
    t.after(() => session.close());
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':authority': 'example.test' });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(status, 200);
    assert.equal(seen[0]?.xff, '2001:db8::42');
    assert.equal(seen[0]?.forwarded, 'for="[2001:db8::42]";host=example.test;proto=http');
  });

  test('rate limits key on the PROXY client, not on the load balancer in front', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      routes: [{ cluster: 'up', rate_limit: { rate: '1/h', burst: 1, key: 'client' } }],
      listener: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
    });
    t.after(() => proxy.close());
    const status = async (client: string): Promise<string> => {
      const a = await rawRequests(proxy.port, `PROXY TCP4 ${client} 198.51.100.1 40000 80\r\n`, ['/']);
      return a.slice(9, 12);
    };
    assert.deepEqual(
      [await status('203.0.113.1'), await status('203.0.113.1'), await status('203.0.113.2')],
      ['200', '429', '200'],
    );
  });

  test("trusted_proxies judges the PROXY client: a trusted one's X-Forwarded-For is kept, another's replaced", async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { proxy_protocol: { trusted: ['127.0.0.1/32'] }, trusted_proxies: ['203.0.113.0/24'] },
    });
    t.after(() => proxy.close());
    seen.length = 0;
    for (const client of ['203.0.113.7', '198.51.100.9']) {
      await new Promise<void>((resolve) => {
        const c = net.connect({ port: proxy.port, host: '127.0.0.1' });
        c.on('data', () => {});
        c.on('close', () => resolve());
        c.on('error', () => {});
        c.write(`PROXY TCP4 ${client} 198.51.100.1 40000 80\r\n`);
        c.write('GET / HTTP/1.1\r\nhost: example.test\r\nx-forwarded-for: 192.0.2.1\r\nconnection: close\r\n\r\n');
      });
    }
    assert.deepEqual(
      seen.map((x) => x.xff),
      ['192.0.2.1, 203.0.113.7', '198.51.100.9'],
    );
  });

  test('connect.clients reads the PROXY client', async (t) => {
    const target = await httpBackend((_req, res) => res.end('tunnelled'));
    t.after(() => target.close());
    const proxy = await startForwardProxy(t, {
      proxy_protocol: { trusted: ['127.0.0.1/32'] },
      connect: { clients: ['203.0.113.0/24'], allow: [{ cidr: '127.0.0.1/32', ports: [target.port] }] },
    });
    // The peer is 127.0.0.1 every time: only the header's client decides.
    const send = (client: string): Promise<string> =>
      new Promise((resolve) => {
        const s = net.connect({ port: proxy.port, host: '127.0.0.1' });
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString('latin1');
          if (got.includes('tunnelled') || got.startsWith('HTTP/1.1 403')) s.destroy();
        });
        s.on('error', () => {});
        s.on('close', () => resolve(got));
        s.write(`PROXY TCP4 ${client} 198.51.100.1 40000 80\r\n`);
        s.write(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nhost: 127.0.0.1:${target.port}\r\n\r\n`);
        s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      });
    const allowed = await send('203.0.113.7');
    assert.match(allowed, /^HTTP\/1\.1 200 /);
    assert.match(allowed, /tunnelled/);
    const denied = await send('198.51.100.9');
    assert.match(denied, /^HTTP\/1\.1 403 /);
    await waitUntil(
      () => proxy.accessLog.some((l) => l.error === 'connect_client_denied' && l.client === '198.51.100.9'),
      'the refusal logged with the PROXY client',
    );
  });

  test('ring_hash on source_ip hashes the PROXY client: one client sticks, many spread', async (t) => {
    const hits: string[] = [];
    const b2 = await httpBackend((_req, res) => {
      hits.push('b2');
      res.end('ok');
    });
    t.after(() => b2.close());
    const b1 = await httpBackend((_req, res) => {
      hits.push('b1');
      res.end('ok');
    });
    t.after(() => b1.close());
    const proxy = await startProxy({
      upstreams: [b1.addr, b2.addr],
      cluster: { lb: 'ring_hash', hash_key: { source_ip: true } },
      listener: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
    });
    t.after(() => proxy.close());
    const via = async (client: string): Promise<string> => {
      hits.length = 0;
      await rawRequests(proxy.port, `PROXY TCP4 ${client} 198.51.100.1 40000 80\r\n`, ['/', '/', '/']);
      assert.equal(new Set(hits).size, 1, `${client} went to ${hits.join(', ')}`);
      return hits[0]!;
    };
    // The peer is 127.0.0.1 every time; 20 clients all landing on one of two endpoints would be a 1 in 2^19 chance.
    const seen = new Set<string>();
    for (let i = 1; i <= 20; i++) seen.add(await via(`203.0.113.${i}`));
    assert.equal(seen.size, 2);
  });

  test('an untrusted peer, or no header, closes the connection unanswered', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { proxy_protocol: { trusted: ['10.0.0.0/8'] } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const trusting = await startProxy({
      upstreams: [backend.addr],
      listener: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => trusting.close());
    const before = seen.length;
    assert.equal(await rawRequests(proxy.port, 'PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n', ['/']), '');
    assert.equal(await rawRequests(trusting.port, '', ['/']), '');
    await waitUntil(() => proxy.accessLog.length === 1 && trusting.accessLog.length === 1, 'the access log lines');
    assert.equal(proxy.accessLog[0]?.error, 'proxy_protocol_untrusted');
    assert.equal(trusting.accessLog[0]?.error, 'proxy_protocol_missing');
    assert.equal(seen.length, before, 'nothing was forwarded');
  });
});

describe('HAProxy with send-proxy-v2 in front of an HTTP listener', { skip: skipWithoutHaproxy }, () => {
  let dir: string;
  before(() => {
    dir = tmpDir('muxgate-pp-http-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("the original client's address reaches the backend's X-Forwarded-For", async (t) => {
    const xff: (string | undefined)[] = [];
    const backend = await httpBackend((req, res) => {
      xff.push(req.headers['x-forwarded-for'] as string | undefined);
      res.end('ok');
    });
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { proxy_protocol: { trusted: ['127.0.0.1/32'] } },
    });
    t.after(() => proxy.close());
    const haproxy = await startHaproxy(
      dir,
      'defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n' +
        `frontend f\n  mode tcp\n  bind fd@3\n  default_backend m\nbackend m\n  mode tcp\n  server muxgate 127.0.0.1:${proxy.port} send-proxy-v2\n`,
    );
    t.after(() => haproxy.stop());
    const body = await getFrom(haproxy.port, '127.0.0.7');
    assert.equal(body, 'ok', haproxy.output());
    assert.deepEqual(xff, ['127.0.0.7']);
  });
});
