/**
 * WebSockets through muxgate: HTTP/1.1 Upgrade and RFC 8441 (extended CONNECT) on either side, with
 * real `ws` peers. Frames, close codes, ping/pong, fragmentation, large messages and backpressure
 * pass through intact; the multiplexing claims are counted at the backend.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { describe, it, type TestContext } from 'node:test';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { connect, field, rawHttpBackend, type WireRequest } from '../helpers/wire.ts';
import { closed, nextMessage, type WsBackend, wsBackend, wsConnect, wsOverH2 } from '../helpers/ws.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup(
  t: TestContext,
  o: {
    h2Backend?: boolean;
    cluster?: Record<string, unknown>;
    listener?: Record<string, unknown>;
    routes?: unknown[];
  } = {},
): Promise<{ b: WsBackend; p: TestProxy }> {
  const b = await wsBackend({ h2: o.h2Backend ?? false });
  const p = await startProxy({
    upstreams: [b.addr],
    routes: o.routes ?? [{ cluster: 'up', upgrades: ['websocket'] }],
    cluster: o.cluster,
    listener: o.listener,
    config: { access_log: { enabled: true } },
  });
  t.after(async () => {
    await p.close();
    await b.close();
  });
  return { b, p };
}

describe('WebSocket over HTTP/1.1 Upgrade', () => {
  it('echoes text and binary, keeps close codes both ways, and logs the tunnel', async (t) => {
    const { b, p } = await setup(t);
    const ws = await wsConnect(`ws://127.0.0.1:${p.port}/chat`);
    ws.send('hello');
    const m1 = await nextMessage(ws);
    assert.equal(m1.data.toString(), 'hello');
    assert.equal(m1.binary, false);
    const bin = randomBytes(1000);
    ws.send(bin);
    const m2 = await nextMessage(ws);
    assert.equal(m2.binary, true);
    assert.deepEqual(m2.data, bin);
    // Server-initiated close with a custom code and reason.
    ws.send('close 4001 bye now');
    assert.deepEqual(await closed(ws), { code: 4001, reason: 'bye now' });
    // Client-initiated close.
    const ws2 = await wsConnect(`ws://127.0.0.1:${p.port}/chat`);
    ws2.close(4002, 'client done');
    await closed(ws2);
    await waitUntil(() => b.closeCodes.includes(4002), 'b.closeCodes.includes(4002)');
    assert.equal(b.h1Upgrades, 2);
    const headers = b.lastHeaders as Record<string, string>;
    assert.equal(headers['x-forwarded-for'], '127.0.0.1');
    assert.match(headers.via ?? '', /1\.1 muxgate/);
    await waitUntil(
      () => p.accessLog.filter((l) => l.tunnel === 'websocket').length === 2,
      'p.accessLog.filter((l) => l.tunnel === "websocket").length === 2',
    );
    const line = p.accessLog.find((l) => l.tunnel === 'websocket') as Record<string, unknown>;
    assert.equal(line.status, 101);
    assert.equal(line.upstream_protocol, 'HTTP/1.1');
    assert.ok((line.bytes_in as number) > 0 && (line.bytes_out as number) > 0);
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.tunnels_total, 2);
    assert.equal(snap?.tunnels_open, 0);
    assert.deepEqual(snap?.tunnels_by_kind, { websocket: 0, upgrade: 0, connect: 0, connect_udp: 0, tcp: 0 });
  });

  it('passes ping/pong, fragmented messages and a 16 MiB message intact', async (t) => {
    const { p } = await setup(t);
    const ws = await wsConnect(`ws://127.0.0.1:${p.port}/`);
    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve));
    ws.ping(Buffer.from('are you there'));
    assert.equal((await pong).toString(), 'are you there');
    // A message in three fragments (continuation frames) arrives as one.
    ws.send('frag-', { fin: false });
    ws.send('ment-', { fin: false });
    ws.send('ed', { fin: true });
    assert.equal((await nextMessage(ws)).data.toString(), 'frag-ment-ed');
    const big = randomBytes(16 * 1024 * 1024);
    ws.send(big);
    const back = await nextMessage(ws);
    assert.equal(back.data.length, big.length);
    assert.equal(sha(back.data), sha(big));
    ws.close();
    await closed(ws);
  });

  it('holds back a fast sender when the reader stops (backpressure both ways)', async (t) => {
    const { b, p } = await setup(t, {});
    const ws = await wsConnect(`ws://127.0.0.1:${p.port}/`);
    await waitUntil(() => b.sockets.size === 1, 'b.sockets.size === 1');
    const server = [...b.sockets][0]!;
    // Upstream -> client: the client stops reading; the backend keeps sending.
    const sock = (ws as unknown as { _socket: import('node:net').Socket })._socket;
    sock.pause();
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < 48; i++) server.send(chunk);
    // If muxgate buffered without bound, the backend's socket would drain; instead the backpressure
    // reaches it and data waits in the backend's own buffer.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(server.bufferedAmount > 8 * 1024 * 1024, `backend bufferedAmount ${server.bufferedAmount}`);
    let got = 0;
    const all = new Promise<void>((resolve) =>
      ws.on('message', (d: Buffer) => {
        got += d.length;
        if (got === 48 * chunk.length) resolve();
      }),
    );
    sock.resume();
    await all;
    await waitUntil(() => server.bufferedAmount === 0, 'server.bufferedAmount === 0');
    ws.removeAllListeners('message');
    // Client -> upstream: the backend stops reading.
    const ssock = (server as unknown as { _socket: import('node:net').Socket })._socket;
    ssock.pause();
    for (let i = 0; i < 48; i++) ws.send(chunk);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(ws.bufferedAmount > 8 * 1024 * 1024, `client bufferedAmount ${ws.bufferedAmount}`);
    ssock.resume();
    // Echoes come back; count them.
    let echoed = 0;
    await new Promise<void>((resolve) =>
      ws.on('message', (d: Buffer) => {
        echoed += d.length;
        if (echoed === 48 * chunk.length) resolve();
      }),
    );
    ws.close();
    await closed(ws);
  });

  it('an upgraded connection is its own, out of the pool, and holds a source port of the budget', async (t) => {
    const { b, p } = await setup(t, {
      cluster: { source_addresses: ['127.0.0.11'], source_port_range: '22400-22409' },
    });
    const budget = () => p.server.snapshot().ports.budgets[0];
    const socks = await Promise.all([0, 1, 2].map(() => wsConnect(`ws://127.0.0.1:${p.port}/`)));
    assert.equal(budget()?.in_use, 3, 'one source port per WebSocket');
    assert.equal(b.accepted, 3);
    const pool = p.server.snapshot().clusters[0]?.endpoints[0]?.pool;
    assert.equal(pool?.open, 0, 'the pool holds none of them');
    // A plain request meanwhile gets a pooled connection of its own.
    const res = await fetch(`http://127.0.0.1:${p.port}/`);
    assert.equal(await res.text(), 'plain http\n');
    for (const w of socks) w.close();
    await Promise.all(socks.map((w) => closed(w)));
    await waitUntil(() => budget()?.in_use === 1, 'the WebSockets gave their ports back (the pooled one stays)');
  });

  it('relays a refusal from the upstream as it was sent', async (t) => {
    const { b, p } = await setup(t);
    b.refuseWith = 403;
    const err = (await wsConnect(`ws://127.0.0.1:${p.port}/`).catch((e: unknown) => e)) as {
      status: number;
      body: string;
      headers: Record<string, string>;
    };
    assert.equal(err.status, 403);
    assert.equal(err.body, 'go away\n');
    assert.equal(err.headers['x-reason'], 'test');
  });

  it('forwards Upgrade as a plain request when the route does not allow it', async (t) => {
    const { b, p } = await setup(t, { routes: [{ cluster: 'up' }] });
    const c = await connect(p.port);
    c.write(
      'GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n' +
        `sec-websocket-key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
    );
    const res = await c.readResponse();
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'plain http\n');
    assert.equal(b.h1Upgrades, 0);
    c.destroy();
  });

  it('refuses a malformed WebSocket handshake with invalid_upgrade', async (t) => {
    const { b, p } = await setup(t);
    const c = await connect(p.port);
    c.write(
      'GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: short\r\n\r\n',
    );
    const res = await c.readResponse();
    assert.equal(res.status, 400);
    assert.equal(field(res, 'muxgate-error'), 'invalid_upgrade');
    assert.equal(b.accepted, 0);
    c.destroy();
  });
});

describe('other Upgrade tokens', () => {
  it('passes an Upgrade token the route lists, and carries the new protocol both ways', async (t) => {
    let seen: WireRequest | null = null;
    const backend = await rawHttpBackend(async (req, r) => {
      seen = req;
      r.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: chat/2\r\n\r\nhello from chat/2\n');
      // The connection now speaks "chat/2": a line in, the same line upper-cased out.
      const line = await r.readUntil('\n');
      r.write(line.toString().toUpperCase());
      return false;
    });
    t.after(() => backend.close());
    const p = await startProxy({ upstreams: [backend.addr], routes: [{ cluster: 'up', upgrades: ['chat/2'] }] });
    t.after(() => p.close());
    const c = await connect(p.port, t);
    c.write('GET /room HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: chat/2\r\n\r\n');
    const head = (await c.readUntil('\r\n\r\n')).toString();
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.match(head, /upgrade: chat\/2/i);
    assert.equal((await c.readUntil('\n')).toString(), 'hello from chat/2\n');
    c.write('ping me\n');
    assert.equal((await c.readUntil('\n')).toString(), 'PING ME\n');
    const req = seen as WireRequest | null;
    assert.equal(req === null ? undefined : field(req, 'upgrade'), 'chat/2');
    assert.match(req === null ? '' : (field(req, 'connection') ?? ''), /upgrade/i);
  });
});

describe('RFC 8441: WebSockets over HTTP/2 from clients', () => {
  it('advertises SETTINGS_ENABLE_CONNECT_PROTOCOL only where a route accepts WebSockets', async (t) => {
    const { p } = await setup(t, { listener: { protocol: 'http2' } });
    const other = await startProxy({ upstreams: ['127.0.0.1:1'], listener: { protocol: 'http2' } });
    t.after(() => other.close());
    for (const [port, want] of [
      [p.port, true],
      [other.port, false],
    ] as const) {
      const s = http2.connect(`http://127.0.0.1:${port}`);
      await new Promise((r) => s.once('remoteSettings', r));
      assert.equal(s.remoteSettings.enableConnectProtocol, want, `port ${port}`);
      s.close();
    }
  });

  it('carries RFC 8441 streams to an HTTP/1.1 backend with a handshake of their own', async (t) => {
    const { b, p } = await setup(t, { listener: { protocol: 'http2' } });
    const s = http2.connect(`http://127.0.0.1:${p.port}`);
    t.after(() => s.close());
    const socks = await Promise.all([0, 1, 2].map(async () => (await wsOverH2(s, '/chat', `127.0.0.1:${p.port}`)).ws));
    for (const [i, w] of socks.entries()) {
      w.send(`msg ${i}`);
      assert.equal((await nextMessage(w)).data.toString(), `msg ${i}`);
    }
    assert.equal(b.h1Upgrades, 3);
    const h = b.lastHeaders as Record<string, string>;
    assert.equal(h.upgrade, 'websocket');
    assert.match(h['sec-websocket-key'] ?? '', /^[A-Za-z0-9+/]{22}==$/);
    socks[0]!.send('close 4003 from backend');
    assert.equal((await closed(socks[0]!)).code, 4003);
    socks[1]!.close(4004);
    await waitUntil(() => b.closeCodes.includes(4004), 'b.closeCodes.includes(4004)');
    socks[2]!.close();
    await closed(socks[2]!);
    await waitUntil(
      () => p.accessLog.filter((l) => l.tunnel === 'websocket').length === 3,
      'p.accessLog.filter((l) => l.tunnel === "websocket").length === 3',
    );
    assert.equal(p.accessLog.find((l) => l.tunnel === 'websocket')?.protocol, 'HTTP/2');
  });

  it('refuses extended CONNECT to a route without WebSockets', async (t) => {
    const { p } = await setup(t, {
      listener: { protocol: 'http2' },
      routes: [{ match: { path: { prefix: '/ws' } }, cluster: 'up', upgrades: ['websocket'] }, { cluster: 'up' }],
    });
    const s = http2.connect(`http://127.0.0.1:${p.port}`);
    t.after(() => s.close());
    const err = (await wsOverH2(s, '/plain', `127.0.0.1:${p.port}`).catch((e: unknown) => e)) as { status: number };
    assert.equal(err.status, 405);
    const ok = await wsOverH2(s, '/ws', `127.0.0.1:${p.port}`);
    ok.ws.close();
  });
});

describe('RFC 8441 towards the backends (cluster websocket: h2)', () => {
  const h2cluster = { protocol: 'http2', websocket: 'h2' };

  it('carries HTTP/1.1 client WebSockets as streams of one upstream connection', async (t) => {
    // Also guards the tunnel's copy of the request head (parsed in place from the shared read buffer):
    // each 101 carries an accept computed from the client's key after the upstream stream answers.
    const { b, p } = await setup(t, { h2Backend: true, cluster: h2cluster });
    const socks = await Promise.all(Array.from({ length: 50 }, () => wsConnect(`ws://127.0.0.1:${p.port}/x`)));
    await Promise.all(
      socks.map(async (w, i) => {
        w.send(`n${i}`);
        assert.equal((await nextMessage(w)).data.toString(), `n${i}`);
      }),
    );
    assert.equal(b.h2Streams, 50);
    assert.equal(b.h1Upgrades, 0);
    assert.equal(b.accepted, 1, 'one upstream TCP connection');
    assert.equal(b.peakStreamsPerSession, 50);
    const h = b.lastHeaders as Record<string, string>;
    assert.equal(h[':protocol'], 'websocket');
    assert.equal(h['sec-websocket-key'], undefined);
    socks[0]!.send('close 4005 h2 side');
    assert.equal((await closed(socks[0]!)).code, 4005);
    for (const w of socks.slice(1)) w.close(1000);
    await Promise.all(socks.slice(1).map((w) => closed(w)));
    await waitUntil(
      () => p.accessLog.filter((l) => l.tunnel === 'websocket').length === 50,
      'p.accessLog.filter((l) => l.tunnel === "websocket").length === 50',
    );
    assert.equal(p.accessLog.find((l) => l.tunnel === 'websocket')?.upstream_protocol, 'HTTP/2');
  });

  it('carries RFC 8441 client streams as RFC 8441 upstream streams', async (t) => {
    const { b, p } = await setup(t, { h2Backend: true, cluster: h2cluster, listener: { protocol: 'http2' } });
    const s = http2.connect(`http://127.0.0.1:${p.port}`);
    t.after(() => s.close());
    const { ws } = await wsOverH2(s, '/both', `127.0.0.1:${p.port}`);
    const big = randomBytes(3 * 1024 * 1024);
    ws.send(big);
    assert.equal(sha((await nextMessage(ws)).data), sha(big));
    assert.equal(b.h2Streams, 1);
    ws.close(4006);
    await waitUntil(() => b.closeCodes.includes(4006), 'b.closeCodes.includes(4006)');
  });

  it('a client stream reset with NO_ERROR before its END_STREAM ends the tunnel and its upstream stream', async (t) => {
    // Node resets every open stream with NO_ERROR when a session is destroyed: the tunnel must not
    // wait for the other side to end (it used to stay open until upgrade_idle_timeout).
    const { b, p } = await setup(t, { h2Backend: true, cluster: h2cluster, listener: { protocol: 'http2' } });
    const s = http2.connect(`http://127.0.0.1:${p.port}`);
    t.after(() => s.destroy());
    const opened = await Promise.all([0, 1, 2].map(() => wsOverH2(s, '/reset', `127.0.0.1:${p.port}`)));
    for (const [i, { ws }] of opened.entries()) {
      ws.send(`r${i}`);
      assert.equal((await nextMessage(ws)).data.toString(), `r${i}`);
    }
    await waitUntil(() => p.server.snapshot().listeners[0]!.tunnels_open === 3, 'three tunnels up');
    // Echoes still on their way back when the streams are reset.
    for (const { ws } of opened) ws.send(randomBytes(256 * 1024));
    s.destroy();
    await waitUntil(() => p.server.snapshot().listeners[0]!.tunnels_open === 0, 'every tunnel closed', {
      timeoutMs: 10_000,
    });
    await waitUntil(() => p.accessLog.filter((l) => l.tunnel === 'websocket').length === 3, 'three tunnel lines');
    assert.equal(b.h2Streams, 3);
  });

  it('falls back to an HTTP/1.1 Upgrade when the backend does not advertise extended CONNECT', async (t) => {
    const b = await wsBackend({ h2: true, connectProtocol: false });
    const p = await startProxy({
      upstreams: [b.addr],
      routes: [{ cluster: 'up', upgrades: ['websocket'] }],
      cluster: h2cluster,
    });
    t.after(async () => {
      await p.close();
      await b.close();
    });
    const ws = await wsConnect(`ws://127.0.0.1:${p.port}/`);
    ws.send('via h1');
    assert.equal((await nextMessage(ws)).data.toString(), 'via h1');
    assert.equal(b.h1Upgrades, 1);
    assert.equal(b.h2Streams, 0);
    ws.close();
  });

  it('relays an HTTP/2 refusal to an HTTP/1.1 client', async (t) => {
    const { b, p } = await setup(t, { h2Backend: true, cluster: h2cluster });
    b.refuseWith = 403;
    const err = (await wsConnect(`ws://127.0.0.1:${p.port}/`).catch((e: unknown) => e)) as {
      status: number;
      body: string;
    };
    assert.equal(err.status, 403);
    assert.equal(err.body, 'go away\n');
  });
});
