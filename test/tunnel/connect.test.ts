/**
 * The CONNECT forward proxy end to end: deny by default (special ranges, unlisted ports, listeners
 * without `connect`), tunnels through curl's proxytunnel and raw sockets (early data, 1 MiB both ways,
 * half-close, byte counts in the access log), Proxy-Authorization, HTTP/2 CONNECT streams sharing one
 * connection, and the 502s for a refused or unresolvable target. Every target is a real server on
 * 127.0.0.1 that counts what reaches it.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { startProxy, startForwardProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { closedPort, connect, curl, field, type SocketReader, within } from '../helpers/wire.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface EchoServer {
  port: number;
  /** Connections accepted so far. */
  accepts: number;
  /** Connections whose client half-closed (FIN seen). */
  ends: number;
  /** Remote ports of accepted connections. */
  peers: Set<number>;
  /** Bytes received per connection, in accept order. */
  received: Buffer[][];
}

/** A TCP echo server on 127.0.0.1 port 0: echoes everything, and ends its side when the peer ends. */
async function echoServer(t: TestContext): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  const e: EchoServer = { port: 0, accepts: 0, ends: 0, peers: new Set(), received: [] };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    e.accepts++;
    e.peers.add(s.remotePort ?? 0);
    const mine: Buffer[] = [];
    e.received.push(mine);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.on('data', (c: Buffer) => mine.push(c));
    s.on('end', () => e.ends++);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  e.port = (server.address() as AddressInfo).port;
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return e;
}

/** A node:http backend on 127.0.0.1 port 0 answering every request with `hello <url>`. */
async function httpBackend(t: TestContext): Promise<{ port: number; requests: number }> {
  const b = { port: 0, requests: 0 };
  const server = http.createServer((req, res) => {
    b.requests++;
    res.end(`hello ${req.url}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as AddressInfo).port;
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return b;
}

/** Sends a CONNECT head (plus `extra` fields, and `early` bytes in the same write) on a new connection. */
async function rawConnect(t: TestContext, port: number, target: string, extra = '', early?: Buffer) {
  const c = await connect(port, t);
  const head = Buffer.from(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extra}\r\n`, 'latin1');
  c.write(early === undefined ? head : Buffer.concat([head, early]));
  return c;
}

/** Reads the head of a 2xx answer to CONNECT (it has no body framing: the tunnel follows). */
async function tunnelHead(c: SocketReader): Promise<string> {
  return (await c.readUntil('\r\n\r\n', 'the CONNECT response head')).toString('latin1');
}

const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

describe('CONNECT over HTTP/1.1', () => {
  it('denies by default: loopback behind a host rule, unlisted ports, and listeners without connect', async (t) => {
    const echo = await echoServer(t);
    const other = await echoServer(t);
    const p = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] } });
    // localhost resolves to loopback, a special range: a host rule alone does not open it...
    const hostOnly = await startForwardProxy(t, { connect: { allow: [{ host: 'localhost', ports: [echo.port] }] } });
    for (const target of [`localhost:${echo.port}`, `127.0.0.1:${echo.port}`, `[::1]:${echo.port}`]) {
      const c = await rawConnect(t, hostOnly.port, target);
      const res = await c.readResponse();
      assert.equal(res.status, 403, target);
      assert.equal(field(res, 'muxgate-error'), 'connect_denied', target);
      assert.equal(await c.waitEnded(), true, `${target}: the connection is closed after the refusal`);
    }
    // ...a port no rule lists is refused even with a cidr rule for the address.
    const c2 = await rawConnect(t, p.port, `127.0.0.1:${other.port}`);
    const r2 = await c2.readResponse();
    assert.equal(r2.status, 403);
    assert.equal(field(r2, 'muxgate-error'), 'connect_denied');
    assert.equal(echo.accepts, 0, 'nothing connected to the target');
    assert.equal(other.accepts, 0, 'nothing connected to the unlisted port');
    // The same target through the cidr rule does connect: the counters above could have moved.
    const ok = await rawConnect(t, p.port, `127.0.0.1:${echo.port}`);
    assert.match(await tunnelHead(ok), /^HTTP\/1\.1 200 /);
    await waitUntil(() => echo.accepts === 1, 'echo.accepts === 1');
    ok.destroy();
    await waitUntil(
      () => hostOnly.accessLog.filter((l) => l.error === 'connect_denied').length === 3,
      'three connect_denied lines in the access log',
    );
    assert.equal(hostOnly.server.snapshot().listeners[0]?.error_codes.connect_denied, 3);

    // No `connect` on the listener: CONNECT is not a method it serves.
    const plain = await startProxy({ upstreams: ['127.0.0.1:1'] });
    t.after(() => plain.close());
    const c3 = await rawConnect(t, plain.port, `127.0.0.1:${echo.port}`);
    const r3 = await c3.readResponse();
    assert.equal(r3.status, 405);
    assert.equal(field(r3, 'muxgate-error'), 'method_not_allowed');
    assert.equal(echo.accepts, 1);
  });

  it('a catch-all rule ("anywhere on this port") does not reach loopback by any spelling', async (t) => {
    const echo = await echoServer(t);
    const p = await startForwardProxy(t, {
      connect: {
        allow: [
          { cidr: '0.0.0.0/0', ports: [echo.port] },
          { cidr: '::/0', ports: [echo.port] },
        ],
      },
    });
    for (const target of [
      `127.0.0.1:${echo.port}`,
      `[::ffff:127.0.0.1]:${echo.port}`,
      `localhost:${echo.port}`,
      `0.0.0.0:${echo.port}`,
      `[::1]:${echo.port}`,
      `127.1.2.3:${echo.port}`,
    ]) {
      const c = await rawConnect(t, p.port, target);
      const res = await c.readResponse();
      assert.equal(res.status, 403, target);
      assert.equal(field(res, 'muxgate-error'), 'connect_denied', target);
    }
    assert.equal(echo.accepts, 0, 'nothing reached the loopback echo server');
    // The rule an operator writes for loopback does reach it.
    const inside = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] } });
    const ok = await rawConnect(t, inside.port, `127.0.0.1:${echo.port}`);
    assert.match(await tunnelHead(ok), /^HTTP\/1\.1 200 /);
    await waitUntil(() => echo.accepts === 1, 'echo.accepts === 1');
    ok.destroy();
  });

  it('tunnels curl --proxytunnel to an HTTP backend and logs the tunnel', async (t) => {
    const b = await httpBackend(t);
    const p = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [b.port] }] } });
    const res = await curl([
      '-sS',
      '--noproxy',
      '',
      '-p',
      '-x',
      `http://127.0.0.1:${p.port}`,
      `http://127.0.0.1:${b.port}/through/the/tunnel`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.toString(), 'hello /through/the/tunnel\n');
    assert.equal(b.requests, 1);
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect'), 'a connect line in the access log');
    const line = p.accessLog.find((l) => l.tunnel === 'connect') as Record<string, unknown>;
    assert.equal(line.status, 200);
    assert.equal(line.host, `127.0.0.1:${b.port}`);
    assert.equal(line.upstream, `127.0.0.1:${b.port}`);
    assert.equal(line.upstream_protocol, 'TCP');
    assert.equal(line.protocol, 'HTTP/1.1');
    assert.equal(line.error, undefined);
    assert.ok((line.bytes_in as number) > 0 && (line.bytes_out as number) > 0, JSON.stringify(line));
  });

  it('carries early data, 1 MiB both ways and a half-close; the log counts every byte', async (t) => {
    const echo = await echoServer(t);
    const p = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] } });
    const early = Buffer.from('early bytes right behind the head\n');
    const c = await rawConnect(t, p.port, `127.0.0.1:${echo.port}`, '', early);
    const head = await tunnelHead(c);
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(head, /content-length|transfer-encoding/i, 'a 2xx to CONNECT has no body framing');
    assert.deepEqual(await c.readExactly(early.length, 'the echoed early data'), early);

    const big = randomBytes(1024 * 1024);
    c.write(big);
    const back = await c.readExactly(big.length, 'the echoed 1 MiB', 20_000);
    assert.equal(sha(back), sha(big));
    assert.equal(sha(Buffer.concat(echo.received[0] ?? [])), sha(Buffer.concat([early, big])));
    assert.equal(echo.accepts, 1);

    assert.equal(p.server.snapshot().listeners[0]?.tunnels_by_kind.connect, 1, 'counted while up');
    // Half-close: the client's FIN reaches the target, whose own FIN comes back.
    assert.equal(c.ended, false);
    c.socket.end();
    await waitUntil(() => echo.ends === 1, 'the echo server saw the end');
    assert.equal(await c.waitEnded(), true, 'the client sees the end the target sent');

    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect'), 'a connect line in the access log');
    const line = p.accessLog.find((l) => l.tunnel === 'connect') as Record<string, unknown>;
    const moved = early.length + big.length;
    assert.equal(line.bytes_in, moved);
    assert.equal(line.bytes_out, moved);
    assert.equal(line.end, 'closed');
    assert.equal(line.closed_first, 'client');
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.tunnels_total, 1);
    assert.equal(snap?.tunnels_open, 0);
    assert.deepEqual(snap?.tunnels_by_kind, { websocket: 0, upgrade: 0, connect: 0, connect_udp: 0, tcp: 0 });
  });

  it('asks for Proxy-Authorization when users are configured', async (t) => {
    const b = await httpBackend(t);
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [b.port] }], users: [{ user: 'alice', password: 's3cret' }] },
    });
    const target = `127.0.0.1:${b.port}`;
    for (const extra of ['', `Proxy-Authorization: ${basic('alice:wrong')}\r\n`, 'Proxy-Authorization: Basic\r\n']) {
      const c = await rawConnect(t, p.port, target, extra);
      const res = await c.readResponse();
      assert.equal(res.status, 407, extra);
      assert.equal(field(res, 'proxy-authenticate'), 'Basic realm="muxgate"', extra);
      assert.equal(field(res, 'muxgate-error'), 'proxy_auth_required', extra);
    }
    // The right credentials on a raw CONNECT.
    const ok = await rawConnect(t, p.port, target, `Proxy-Authorization: ${basic('alice:s3cret')}\r\n`);
    assert.match(await tunnelHead(ok), /^HTTP\/1\.1 200 /);
    ok.destroy();
    const base = ['-sS', '--noproxy', '', '-p', '-x', `http://127.0.0.1:${p.port}`, `http://${target}/`];
    const denied = await curl(base);
    assert.notEqual(denied.code, 0, 'curl without credentials fails');
    assert.match(denied.stderr, /407/);
    const res = await curl(['-U', 'alice:s3cret', ...base]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.toString(), 'hello /\n');
    assert.equal(b.requests, 1);
  });

  it('refuses a CONNECT that is not host:port, or that carries a body, with 400 invalid_connect', async (t) => {
    const echo = await echoServer(t);
    const p = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] } });
    const target = `127.0.0.1:${echo.port}`;
    for (const req of [
      `CONNECT 127.0.0.1 HTTP/1.1\r\nHost: ${target}\r\n\r\n`,
      `CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: ${target}\r\n\r\n`,
      `CONNECT / HTTP/1.1\r\nHost: ${target}\r\n\r\n`,
      `CONNECT http://${target}/ HTTP/1.1\r\nHost: ${target}\r\n\r\n`,
      `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nContent-Length: 3\r\n\r\nabc`,
      `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ]) {
      const c = await connect(p.port, t);
      c.write(req);
      const res = await c.readResponse();
      assert.equal(res.status, 400, req);
      assert.equal(field(res, 'muxgate-error'), 'invalid_connect', req);
    }
    assert.equal(echo.accepts, 0);
  });

  it('answers 502 for a refused target and for a name that does not resolve', async (t) => {
    const port = await closedPort();
    const p = await startForwardProxy(t, {
      connect: {
        allow: [
          { cidr: '127.0.0.1/32', ports: [port] },
          { host: '*.invalid', ports: [443] },
        ],
      },
    });
    const c = await rawConnect(t, p.port, `127.0.0.1:${port}`);
    const r = await c.readResponse();
    assert.equal(r.status, 502);
    assert.equal(field(r, 'muxgate-error'), 'upstream_connect_failed');
    const c2 = await rawConnect(t, p.port, 'muxgate-test.invalid:443');
    const r2 = await c2.readResponse();
    assert.equal(r2.status, 502);
    assert.equal(field(r2, 'muxgate-error'), 'connect_resolve_failed');
    await waitUntil(() => p.accessLog.filter((l) => l.tunnel === 'connect').length === 2, 'two connect lines');
    const codes = p.accessLog.filter((l) => l.tunnel === 'connect').map((l) => [l.status, l.error]);
    assert.deepEqual(codes.sort(), [
      [502, 'connect_resolve_failed'],
      [502, 'upstream_connect_failed'],
    ]);
  });
});

/** One CONNECT stream; resolves with the response headers. */
function h2Connect(
  session: ClientHttp2Session,
  authority: string,
): { stream: ClientHttp2Stream; response: Promise<IncomingHttpHeaders> } {
  const stream = session.request({ ':method': 'CONNECT', ':authority': authority });
  const response = new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`stream closed before a response (rst ${stream.rstCode})`)));
  });
  return { stream, response };
}

/** Everything a stream delivers until its end. */
function readAll(stream: ClientHttp2Stream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

function h2session(t: TestContext, port: number): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    t.after(() => s.destroy());
    s.once('error', reject);
    s.once('remoteSettings', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
  });
}

describe('CONNECT over HTTP/2', () => {
  it('multiplexes 20 tunnels on one connection, each to its own TCP connection', async (t) => {
    const echo = await echoServer(t);
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] },
    });
    const session = await h2session(t, p.port);
    const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(10_000 + i * 997));
    const tunnels = payloads.map(() => h2Connect(session, `127.0.0.1:${echo.port}`));
    const heads = await within(Promise.all(tunnels.map((x) => x.response)), 10_000, '20 CONNECT responses');
    for (const h of heads) assert.equal(h[':status'], 200);
    await waitUntil(() => echo.accepts === 20, 'echo.accepts === 20');
    const echoed = await within(
      Promise.all(
        tunnels.map(({ stream }, i) => {
          const all = readAll(stream);
          stream.end(payloads[i]);
          return all;
        }),
      ),
      20_000,
      '20 echoes',
    );
    for (const [i, b] of echoed.entries()) assert.equal(sha(b), sha(payloads[i] as Buffer), `stream ${i}`);
    assert.equal(echo.accepts, 20);
    assert.equal(echo.peers.size, 20, '20 distinct TCP connections reached the target');
    assert.equal(echo.ends, 20, 'each END_STREAM reached the target as a FIN');
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.connections_total, 1, 'the client used one connection to muxgate');
    await waitUntil(
      () => p.accessLog.filter((l) => l.tunnel === 'connect').length === 20,
      'twenty connect lines in the access log',
    );
    const lines = p.accessLog.filter((l) => l.tunnel === 'connect');
    for (const l of lines) {
      assert.equal(l.protocol, 'HTTP/2');
      assert.equal(l.status, 200);
    }
    const moved = payloads.reduce((n, b) => n + b.length, 0);
    assert.equal(
      lines.reduce((n, l) => n + (l.bytes_in as number), 0),
      moved,
    );
    assert.equal(
      lines.reduce((n, l) => n + (l.bytes_out as number), 0),
      moved,
    );
  });

  it('asks for Proxy-Authorization on the stream', async (t) => {
    const echo = await echoServer(t);
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: {
        allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }],
        users: [{ user: 'alice', password: 's3cret' }],
      },
    });
    const session = await h2session(t, p.port);
    const authority = `127.0.0.1:${echo.port}`;
    for (const auth of [undefined, basic('alice:nope')]) {
      const stream = session.request({
        ':method': 'CONNECT',
        ':authority': authority,
        ...(auth === undefined ? {} : { 'proxy-authorization': auth }),
      });
      stream.on('error', () => {});
      const h = await within(new Promise<IncomingHttpHeaders>((r) => stream.once('response', r)), 5000, 'the 407');
      assert.equal(h[':status'], 407);
      assert.equal(h['proxy-authenticate'], 'Basic realm="muxgate"');
      assert.equal(h['muxgate-error'], 'proxy_auth_required');
    }
    assert.equal(echo.accepts, 0);
    const stream = session.request({
      ':method': 'CONNECT',
      ':authority': authority,
      'proxy-authorization': basic('alice:s3cret'),
    });
    const h = await within(new Promise<IncomingHttpHeaders>((r) => stream.once('response', r)), 5000, 'the 200');
    assert.equal(h[':status'], 200);
    const all = readAll(stream);
    stream.end('authorized');
    assert.equal((await within(all, 5000, 'the echo')).toString(), 'authorized');
  });

  it('refuses a denied target with 403 connect_denied on the stream only', async (t) => {
    const echo = await echoServer(t);
    const other = await echoServer(t);
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] },
    });
    const session = await h2session(t, p.port);
    // A port no rule lists, and an address outside the cidr (localhost would pass: it resolves into it).
    for (const authority of [`127.0.0.1:${other.port}`, `127.0.0.2:${echo.port}`, `[::1]:${echo.port}`]) {
      const { stream, response } = h2Connect(session, authority);
      const body = readAll(stream);
      const h = await within(response, 5000, 'the 403');
      assert.equal(h[':status'], 403, authority);
      assert.equal(h['muxgate-error'], 'connect_denied', authority);
      assert.match((await within(body, 5000, 'the 403 body')).toString(), /connect_denied/);
    }
    assert.equal(other.accepts, 0);
    assert.equal(echo.accepts, 0);
    // The session is still good for an allowed tunnel.
    const ok = h2Connect(session, `127.0.0.1:${echo.port}`);
    assert.equal((await within(ok.response, 5000, 'the 200'))[':status'], 200);
    const all = readAll(ok.stream);
    ok.stream.end('ping');
    assert.equal((await within(all, 5000, 'the echo')).toString(), 'ping');
  });
});
