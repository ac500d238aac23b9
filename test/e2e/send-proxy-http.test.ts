/**
 * `send_proxy_protocol` behind HTTP routes: every HTTP/1.1 upstream connection starts with a PROXY
 * header naming one client connection, and carries only that client connection's requests (the pool
 * keys on it), reused along the client's keep-alive. The pool's cap holds across clients: an idle
 * connection of another client is closed to make room, and a queued client gets a connection of its
 * own when one is released. A WebSocket upgrade and a TLS upstream get the header too (before the
 * ClientHello). HAProxy with `accept-proxy` is the real peer: the client's address reaches the
 * backend's X-Forwarded-For. HTTP/2 upstreams are refused by the config check (test/config).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { parseProxyHeader } from '../../src/proxy-protocol/proxy-header-parser.ts';
import type { ProxyHeader } from '../../src/proxy-protocol/proxy-header.ts';
import { httpBackend } from '../helpers/backend.ts';
import { makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { RawClient } from '../helpers/client.ts';
import { skipWithoutHaproxy, startHaproxy } from '../helpers/haproxy.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

const run = promisify(execFile);

interface Accepted {
  /** "address:port" of the header's source, "LOCAL", or "none" when the connection had no header. */
  from: string;
  version: number;
  closed: boolean;
}

interface ProxyBackend {
  port: number;
  addr: string;
  conns: Accepted[];
  /** Requests to /hold wait until this is called. */
  release(): void;
  close(): Promise<void>;
}

function describeHeader(h: ProxyHeader): string {
  return h.source === null ? 'LOCAL' : `${h.source.address}:${h.source.port}`;
}

/**
 * An HTTP/1.1 server behind a PROXY header reader: each connection's header is parsed (its bytes
 * consumed) before node:http (or node:https) sees the connection. Answers every request with
 * `<connection index> <header source>`; a WebSocket is answered the same way as its first message.
 */
async function proxyBackend(tlsOpts: { key: Buffer; cert: Buffer } | null = null): Promise<ProxyBackend> {
  const conns: Accepted[] = [];
  const index = new WeakMap<net.Socket, number>();
  let holding: (() => void)[] = [];
  const handler: http.RequestListener = (req, res) => {
    const raw = (req.socket as net.Socket & { _parent?: net.Socket })._parent ?? req.socket;
    const i = index.get(raw) ?? -1;
    const answer = (): void => {
      res.end(`${i} ${conns[i]?.from ?? 'unknown'}`);
    };
    if (req.url === '/hold') holding.push(answer);
    else answer();
  };
  const server = tlsOpts === null ? http.createServer(handler) : https.createServer(tlsOpts, handler);
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const i = index.get(socket as net.Socket) ?? -1;
    wss.handleUpgrade(req, socket, head, (ws) => ws.send(`${i} ${conns[i]?.from ?? 'unknown'}`));
  });
  const sockets = new Set<net.Socket>();
  const front = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {}); // a client reset; the server's own handlers see the close
    let got = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      const r = parseProxyHeader(got);
      if (r.kind === 'more') return;
      s.off('data', onData);
      s.pause();
      const entry: Accepted =
        r.kind === 'done'
          ? { from: describeHeader(r.header), version: r.header.version, closed: false }
          : { from: 'none', version: 0, closed: false };
      index.set(s, conns.length);
      conns.push(entry);
      s.on('close', () => {
        entry.closed = true;
      });
      if (r.kind === 'error') {
        s.destroy();
        return;
      }
      const rest = got.subarray(r.consumed);
      if (tlsOpts !== null) {
        // node:tls reads what was put back.
        s.unshift(rest);
        server.emit('connection', s);
        return;
      }
      // node:http reads a TCP socket's handle directly and would miss bytes put back: hand it a stream.
      const d = plainStream(s, rest);
      index.set(d as unknown as net.Socket, index.get(s)!);
      server.emit('connection', d);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const port = (front.address() as AddressInfo).port;
  return {
    port,
    addr: `127.0.0.1:${port}`,
    conns,
    release() {
      const h = holding;
      holding = [];
      for (const f of h) f();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        for (const s of sockets) s.destroy();
        front.close(() => r());
      }),
  };
}

/** A Duplex over `s` that first yields `first`, with the socket methods node:http and ws call. */
function plainStream(s: net.Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      s.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      s.write(chunk, cb);
    },
    final(cb) {
      s.end();
      cb();
    },
    destroy(err, cb) {
      s.destroy();
      cb(err);
    },
  });
  Object.assign(d, { setTimeout: () => d, setNoDelay: () => d, setKeepAlive: () => d });
  if (first.length > 0) d.push(first);
  s.on('data', (c: Buffer) => {
    if (!d.push(c)) s.pause();
  });
  s.on('end', () => d.push(null));
  s.on('close', () => d.destroy());
  s.resume();
  return d;
}

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nhost: example.test\r\n\r\n`;

/** The pool of the cluster's one endpoint, as /stats shows it. */
function poolOf(proxy: TestProxy) {
  return proxy.server.snapshot().clusters[0]!.endpoints[0]!.pool;
}

describe('send_proxy_protocol on an HTTP/1.1 pool', () => {
  let backend: ProxyBackend;
  before(async () => {
    backend = await proxyBackend();
  });
  after(() => backend.close());

  for (const version of ['v1', 'v2'] as const) {
    for (const directIo of [true, false]) {
      test(`${version}, ${directIo ? 'direct I/O' : 'streams'}: each client connection gets a connection of its own, reused along its keep-alive`, async (t) => {
        const proxy = await startProxy({
          upstreams: [backend.addr],
          cluster: { send_proxy_protocol: version },
          config: { direct_io: directIo },
        });
        t.after(() => proxy.close());
        const start = backend.conns.length;
        const a = await RawClient.connect(proxy.port, { localAddress: '127.0.0.2' });
        const b = await RawClient.connect(proxy.port, { localAddress: '127.0.0.3' });
        t.after(() => {
          a.socket.destroy();
          b.socket.destroy();
        });
        const aFrom = `127.0.0.2:${a.socket.localPort}`;
        const bFrom = `127.0.0.3:${b.socket.localPort}`;
        // Interleaved: a connection b could reuse sits idle each time b asks.
        const answers: string[] = [];
        for (let i = 0; i < 3; i++) {
          answers.push((await a.request(get('/'))).body.toString());
          answers.push((await b.request(get('/'))).body.toString());
        }
        const aConn = start;
        const bConn = start + 1;
        assert.deepEqual(answers, [
          `${aConn} ${aFrom}`,
          `${bConn} ${bFrom}`,
          `${aConn} ${aFrom}`,
          `${bConn} ${bFrom}`,
          `${aConn} ${aFrom}`,
          `${bConn} ${bFrom}`,
        ]);
        assert.equal(backend.conns.length, start + 2);
        assert.deepEqual(
          backend.conns.slice(start).map((c) => c.version),
          [version === 'v1' ? 1 : 2, version === 'v1' ? 1 : 2],
        );
        const pool = poolOf(proxy);
        assert.equal(pool.connects_total, 2);
        assert.equal(pool.reused, 4);
      });
    }
  }

  test('the client a PROXY header in front named is the one passed on', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      cluster: { send_proxy_protocol: 'v2' },
      listener: { proxy_protocol: { trusted: ['127.0.0.0/8'] } },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.socket.destroy());
    c.send('PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n');
    const r = await c.request(get('/'));
    assert.match(r.body.toString(), / 203\.0\.113\.7:40000$/);
  });

  test('at max_connections: an idle connection of another client makes room, a queued client gets one of its own', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      cluster: { send_proxy_protocol: 'v1', pool: { max_connections: 1, max_pending: 4 } },
    });
    t.after(() => proxy.close());
    const start = backend.conns.length;
    const a = await RawClient.connect(proxy.port, { localAddress: '127.0.0.4' });
    const b = await RawClient.connect(proxy.port, { localAddress: '127.0.0.5' });
    t.after(() => {
      a.socket.destroy();
      b.socket.destroy();
    });
    const aFrom = `127.0.0.4:${a.socket.localPort}`;
    const bFrom = `127.0.0.5:${b.socket.localPort}`;
    assert.equal((await a.request(get('/'))).body.toString(), `${start} ${aFrom}`);
    // a's connection is idle; b needs one and the pool is at its cap: a's is closed, b's opened.
    assert.equal((await b.request(get('/'))).body.toString(), `${start + 1} ${bFrom}`);
    await waitUntil(() => backend.conns[start]!.closed, "a's idle upstream connection closed");
    // b holds the only connection; a queues behind it.
    b.send(get('/hold'));
    await waitUntil(() => poolOf(proxy).idle === 0 && backend.conns.length === start + 2, 'b busy');
    a.send(get('/'));
    await waitUntil(() => poolOf(proxy).pending === 1, 'a queued');
    backend.release();
    assert.equal((await b.response()).body.toString(), `${start + 1} ${bFrom}`);
    // b's connection, released with nobody of b's waiting, is closed for a, which gets its own.
    assert.equal((await a.response()).body.toString(), `${start + 2} ${aFrom}`);
    assert.equal(backend.conns.length, start + 3);
    await waitUntil(() => backend.conns[start + 1]!.closed, "b's upstream connection closed");
    const pool = poolOf(proxy);
    assert.ok(pool.open <= 1, `open ${pool.open}`);
  });

  test('a WebSocket upgrade to an HTTP/1.1 upstream starts with the header too', async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      cluster: { send_proxy_protocol: 'v2' },
      routes: [{ cluster: 'up', upgrades: ['websocket'] }],
    });
    t.after(() => proxy.close());
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`, { localAddress: '127.0.0.6' });
    t.after(() => ws.terminate());
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (m) => resolve(String(m)));
      ws.once('error', reject);
    });
    const port = (ws as unknown as { _socket: net.Socket })._socket.localPort;
    assert.match(first, new RegExp(` 127\\.0\\.0\\.6:${port}$`));
  });

  test('over TLS to the upstream: the header comes before the ClientHello', async (t) => {
    const dir = tmpDir('muxgate-send-proxy-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ca = makeCa(dir);
    const server = makeCert(dir, ca, ['localhost']);
    const tlsBackend = await proxyBackend({ key: readFileSync(server.key), cert: readFileSync(server.cert) });
    t.after(() => tlsBackend.close());
    const proxy = await startProxy({
      upstreams: [tlsBackend.addr],
      cluster: { send_proxy_protocol: 'v1', tls: { ca: ca.cert, server_name: 'localhost' } },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port, { localAddress: '127.0.0.7' });
    t.after(() => c.socket.destroy());
    const r = await c.request(get('/'));
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.body.toString(), new RegExp(` 127\\.0\\.0\\.7:${c.socket.localPort}$`));
  });
});

describe('send_proxy_protocol to HAProxy (accept-proxy) behind an HTTP route', { skip: skipWithoutHaproxy }, () => {
  const dir = tmpDir('muxgate-send-proxy-haproxy-');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("curl's address reaches the backend's X-Forwarded-For, per client, over kept-alive connections", async (t) => {
    const seen: (string | undefined)[] = [];
    const origin = await httpBackend((req, res) => {
      seen.push(req.headers['x-forwarded-for'] as string | undefined);
      res.end('ok');
    });
    t.after(() => origin.close());
    const haproxy = await startHaproxy(
      dir,
      'global\n  log stderr format raw daemon err\ndefaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n' +
        `frontend f\n  mode http\n  bind fd@3 accept-proxy\n  option forwardfor\n  default_backend web\nbackend web\n  mode http\n  server b ${origin.addr}\n`,
    );
    t.after(() => haproxy.stop());
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${haproxy.port}`],
      cluster: { send_proxy_protocol: 'v2' },
    });
    t.after(() => proxy.close());
    const url = `http://127.0.0.1:${proxy.port}/`;
    // Two requests on one curl connection from each of two addresses.
    for (const from of ['127.0.0.8', '127.0.0.9']) {
      const { stdout } = await run('curl', ['-sS', '--interface', from, url, url]);
      assert.equal(stdout, 'okok', haproxy.output());
    }
    // muxgate's own X-Forwarded-For entry, then HAProxy's from the PROXY header (without it HAProxy would
    // add its peer, 127.0.0.1).
    assert.deepEqual(seen, [
      '127.0.0.8, 127.0.0.8',
      '127.0.0.8, 127.0.0.8',
      '127.0.0.9, 127.0.0.9',
      '127.0.0.9, 127.0.0.9',
    ]);
    assert.equal(poolOf(proxy).connects_total, 2);
  });
});
