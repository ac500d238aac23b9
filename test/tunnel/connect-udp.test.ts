/**
 * CONNECT-UDP (RFC 9298) end to end, with HTTP Datagrams in DATAGRAM capsules (RFC 9297): the
 * HTTP/1.1 Upgrade and the HTTP/2 extended CONNECT forms against a real UDP echo server on 127.0.0.1,
 * the refusals (policy, `udp: false`, a path that does not fit the template), the idle timeout and a
 * malformed capsule.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { CapsuleParser, encodeCapsule, encodeDatagramCapsule } from '../../src/tunnel/capsule.ts';
import { startForwardProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { closedPort, connect, field, type SocketReader, within } from '../helpers/wire.ts';

interface UdpEcho {
  port: number;
  /** Every datagram received, with its sender. */
  received: { msg: Buffer; from: dgram.RemoteInfo }[];
}

/** A UDP echo server on 127.0.0.1 port 0. */
async function udpEcho(t: TestContext): Promise<UdpEcho> {
  const socket = dgram.createSocket('udp4');
  const e: UdpEcho = { port: 0, received: [] };
  socket.on('message', (msg, from) => {
    e.received.push({ msg, from });
    socket.send(msg, from.port, from.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  e.port = socket.address().port;
  t.after(() => socket.close());
  return e;
}

const masquePath = (host: string, port: number | string) =>
  `/.well-known/masque/udp/${encodeURIComponent(host)}/${port}/`;

function upgradeRequest(path: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n` +
    'Capsule-Protocol: ?1\r\n\r\n'
  );
}

/** Datagrams decoded from the capsules a stream delivers. */
class Datagrams {
  readonly got: Buffer[] = [];
  error: string | null = null;
  /** The stream delivered its end or closed: no more datagrams will come. */
  ended = false;
  readonly parser = new CapsuleParser({
    onDatagram: (d) => this.got.push(Buffer.from(d)),
    onError: (code) => {
      this.error = code;
    },
  });

  feedFrom(stream: Duplex): void {
    stream.on('data', (c: Buffer) => this.parser.feed(c));
    stream.once('end', () => {
      this.ended = true;
    });
    stream.once('close', () => {
      this.ended = true;
    });
  }

  async waitFor(n: number, what: string): Promise<Buffer[]> {
    await waitUntil(() => this.got.length >= n || this.error !== null || this.ended, what);
    assert.equal(this.error, null);
    assert.ok(this.got.length >= n, `the tunnel ended after ${this.got.length} of ${n} datagrams (${what})`);
    return this.got.slice(0, n);
  }
}

/** The capsule stream after an HTTP/1.1 101: bytes the reader already holds, then the socket's. */
async function h1Datagrams(c: SocketReader): Promise<Datagrams> {
  const d = new Datagrams();
  if (c.pending > 0) d.parser.feed(await c.readExactly(c.pending));
  d.feedFrom(c.socket);
  return d;
}

const hexSorted = (bs: Buffer[]) => bs.map((b) => b.toString('hex')).sort();

describe('CONNECT-UDP over HTTP/1.1', () => {
  it('upgrades, relays datagrams both ways (early ones too) and logs the tunnel', async (t) => {
    const echo = await udpEcho(t);
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true },
    });
    const c = await connect(p.port, t);
    const first = Buffer.from('early: right behind the request head');
    c.write(
      Buffer.concat([Buffer.from(upgradeRequest(masquePath('127.0.0.1', echo.port))), encodeDatagramCapsule(first)]),
    );
    const res = await c.readResponse();
    assert.equal(res.status, 101);
    assert.equal(field(res, 'upgrade'), 'connect-udp');
    assert.equal(field(res, 'capsule-protocol'), '?1');
    assert.match(field(res, 'connection') ?? '', /upgrade/i);
    const d = await h1Datagrams(c);
    const sent = [first, Buffer.from('hello'), Buffer.alloc(0), randomBytes(1200), randomBytes(1), randomBytes(64)];
    // All of these in one write, then one capsule split across writes.
    c.write(Buffer.concat(sent.slice(1).map((b) => encodeDatagramCapsule(b))));
    const split = randomBytes(900);
    const cap = encodeDatagramCapsule(split);
    c.write(cap.subarray(0, 1));
    c.write(cap.subarray(1, 500));
    await waitUntil(() => echo.received.length >= sent.length, 'the echo server got the first datagrams');
    c.write(cap.subarray(500));
    sent.push(split);
    const back = await d.waitFor(sent.length, `${sent.length} echoed datagrams`);
    assert.deepEqual(hexSorted(back), hexSorted(sent));
    assert.deepEqual(hexSorted(echo.received.map((r) => r.msg)), hexSorted(sent));
    // One connected UDP socket of muxgate's sent them all.
    const senders = new Set(echo.received.map((r) => `${r.from.address}:${r.from.port}`));
    assert.equal(senders.size, 1);
    assert.equal(echo.received[0]?.from.address, '127.0.0.1');
    assert.equal(p.server.snapshot().listeners[0]?.tunnels_by_kind.connect_udp, 1, 'counted while up');

    c.socket.end();
    assert.equal(await c.waitEnded(), true, 'muxgate ends the tunnel after the client does');
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect-udp'), 'a connect-udp line');
    const line = p.accessLog.find((l) => l.tunnel === 'connect-udp') as Record<string, unknown>;
    const bytes = sent.reduce((n, b) => n + b.length, 0);
    assert.equal(line.status, 101);
    assert.equal(line.host, `127.0.0.1:${echo.port}`);
    assert.equal(line.upstream, `127.0.0.1:${echo.port}`);
    assert.equal(line.upstream_protocol, 'UDP');
    assert.equal(line.bytes_in, bytes);
    assert.equal(line.bytes_out, bytes);
    assert.equal(line.end, 'client_closed');
    assert.equal(line.error, undefined);
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.tunnels_total, 1);
    assert.equal(snap?.tunnels_open, 0);
    assert.deepEqual(snap?.tunnels_by_kind, { websocket: 0, upgrade: 0, connect: 0, connect_udp: 0, tcp: 0 });
  });

  it('reaches an IPv4 target written as an IPv4-mapped IPv6 literal', async (t) => {
    const echo = await udpEcho(t);
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true },
    });
    const c = await connect(p.port, t);
    c.write(upgradeRequest(masquePath('::ffff:127.0.0.1', echo.port)));
    const res = await c.readResponse();
    assert.equal(res.status, 101);
    const d = await h1Datagrams(c);
    c.write(encodeDatagramCapsule(Buffer.from('mapped')));
    assert.equal((await d.waitFor(1, 'the echo'))[0]?.toString(), 'mapped');
    c.destroy();
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect-udp'), 'a connect-udp line');
    const line = p.accessLog.find((l) => l.tunnel === 'connect-udp') as Record<string, unknown>;
    assert.equal(line.upstream, `127.0.0.1:${echo.port}`);
    assert.equal(line.end, 'client_closed');
  });

  it('refuses a denied target, a malformed template, and serves nothing with udp: false', async (t) => {
    const echo = await udpEcho(t);
    const unlisted = await closedPort();
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true },
    });
    const cases: [string, number, string][] = [
      [masquePath('127.0.0.1', unlisted), 403, 'connect_denied'],
      [masquePath('127.0.0.2', echo.port), 403, 'connect_denied'],
      // The cidr rule opens its port to any name; this one does not resolve (RFC 6761).
      [masquePath('muxgate-test.invalid', echo.port), 502, 'connect_resolve_failed'],
      [masquePath('127.0.0.1', 'notaport'), 400, 'invalid_upgrade'],
      [masquePath('127.0.0.1', 0), 400, 'invalid_upgrade'],
      [masquePath('127.0.0.1', 70000), 400, 'invalid_upgrade'],
      [`/.well-known/masque/udp/127.0.0.1/${echo.port}`, 400, 'invalid_upgrade'],
      [`/.well-known/masque/udp/127.0.0.1/${echo.port}/extra/`, 400, 'invalid_upgrade'],
      [`/.well-known/masque/udp//${echo.port}/`, 400, 'invalid_upgrade'],
    ];
    for (const [path, status, code] of cases) {
      const c = await connect(p.port, t);
      c.write(upgradeRequest(path));
      const res = await c.readResponse();
      assert.equal(res.status, status, path);
      assert.equal(field(res, 'muxgate-error'), code, path);
      assert.equal(await c.waitEnded(), true, `${path}: closed after the refusal`);
    }
    // A POST is not a CONNECT-UDP request.
    const post = await connect(p.port, t);
    post.write(
      `POST ${masquePath('127.0.0.1', echo.port)} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n` +
        'Upgrade: connect-udp\r\nContent-Length: 0\r\n\r\n',
    );
    const pr = await post.readResponse();
    assert.equal(pr.status, 400);
    assert.equal(field(pr, 'muxgate-error'), 'invalid_upgrade');
    assert.equal(echo.received.length, 0);

    // udp: false: the request is an ordinary one, and there is no route for it.
    const off = await startForwardProxy(t, { connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }] } });
    const c = await connect(off.port, t);
    c.write(upgradeRequest(masquePath('127.0.0.1', echo.port)));
    const res = await c.readResponse();
    assert.equal(res.status, 404);
    assert.equal(field(res, 'muxgate-error'), 'no_route');
    assert.equal(off.server.snapshot().listeners[0]?.tunnels_total, 0);
  });

  it('closes an idle tunnel after udp_idle_timeout', async (t) => {
    // The relay ends when no datagram has passed either way for IDLE_MS by its own clock, never sooner.
    // IDLE_MS is large next to a loaded machine's timer lateness, so the 100 ms pauses of the traffic
    // below stay far from it; the lower bound on the silence is exact (measured from a point before
    // the relay's last activity), the upper bound generous.
    const IDLE_MS = 1000;
    const echo = await udpEcho(t);
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true, udp_idle_timeout: `${IDLE_MS}ms` },
    });
    const c = await connect(p.port, t);
    c.write(upgradeRequest(masquePath('127.0.0.1', echo.port)));
    assert.equal((await c.readResponse()).status, 101);
    // The relay exists before the 101 leaves: without traffic it would end by up + IDLE_MS.
    const up = performance.now();
    const d = await h1Datagrams(c);
    // Traffic keeps it open past that point...
    let lastWrite = 0;
    let lastEcho = up;
    for (let i = 0; i === 0 || performance.now() - up < 1.5 * IDLE_MS; i++) {
      lastWrite = performance.now();
      c.write(encodeDatagramCapsule(Buffer.from(`keepalive ${i}`)));
      await d.waitFor(i + 1, `echo ${i}`);
      lastEcho = performance.now();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(
        c.ended,
        false,
        `still open ${Math.round(performance.now() - up)}ms into the traffic, ` +
          `${Math.round(performance.now() - lastEcho)}ms after the last echo`,
      );
    }
    // ...silence ends it. The relay's last activity (the last echo passing it back) came after lastWrite,
    // so it cannot end before lastWrite + IDLE_MS; it should end soon after lastEcho + IDLE_MS.
    assert.equal(await c.waitEnded(IDLE_MS + 5000), true, 'the tunnel ended within 5 s of the idle timeout');
    const ended = performance.now();
    assert.ok(
      ended - lastWrite >= IDLE_MS,
      `ended ${Math.round(ended - lastWrite)}ms after the last datagram was sent, before udp_idle_timeout (${IDLE_MS}ms)`,
    );
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect-udp'), 'a connect-udp line');
    const line = p.accessLog.find((l) => l.tunnel === 'connect-udp') as Record<string, unknown>;
    assert.equal(line.end, 'idle_timeout');
    assert.equal(line.error, undefined);
  });

  it('closes the tunnel on a malformed capsule and counts malformed_capsule', async (t) => {
    const echo = await udpEcho(t);
    const p = await startForwardProxy(t, {
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true },
    });
    const c = await connect(p.port, t);
    c.write(upgradeRequest(masquePath('127.0.0.1', echo.port)));
    assert.equal((await c.readResponse()).status, 101);
    const d = await h1Datagrams(c);
    c.write(encodeDatagramCapsule(Buffer.from('fine')));
    await d.waitFor(1, 'the first echo');
    // An unknown capsule type is skipped; a DATAGRAM capsule with an empty value is malformed.
    c.write(Buffer.concat([encodeCapsule(0x2a, Buffer.from('ignored')), encodeCapsule(0x00, Buffer.alloc(0))]));
    assert.equal(await c.waitEnded(), true, 'the tunnel closed');
    assert.equal(c.closed || c.socket.destroyed || c.ended, true);
    await waitUntil(
      () => p.server.snapshot().listeners[0]?.error_codes.malformed_capsule === 1,
      'error_codes.malformed_capsule === 1',
    );
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect-udp'), 'a connect-udp line');
    const line = p.accessLog.find((l) => l.tunnel === 'connect-udp') as Record<string, unknown>;
    assert.equal(line.error, 'malformed_capsule');
    assert.equal(line.end, 'malformed_capsule');
    assert.equal(echo.received.length, 1);
  });
});

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

/** An extended CONNECT for connect-udp; resolves with the response headers. */
function h2Udp(
  session: ClientHttp2Session,
  path: string,
): { stream: ClientHttp2Stream; response: Promise<IncomingHttpHeaders> } {
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': 'connect-udp',
    ':scheme': 'http',
    ':path': path,
    ':authority': 'proxy.test',
    'capsule-protocol': '?1',
  });
  stream.on('error', () => {});
  const response = new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error(`stream closed before a response (rst ${stream.rstCode})`)));
  });
  return { stream, response };
}

describe('CONNECT-UDP over HTTP/2', () => {
  it('advertises extended CONNECT and runs two independent tunnels on one session', async (t) => {
    const a = await udpEcho(t);
    const b = await udpEcho(t);
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: {
        allow: [
          { cidr: '127.0.0.1/32', ports: [a.port] },
          { cidr: '127.0.0.1/32', ports: [b.port] },
        ],
        udp: true,
      },
    });
    const session = await h2session(t, p.port);
    assert.equal(session.remoteSettings.enableConnectProtocol, true);
    const ta = h2Udp(session, masquePath('127.0.0.1', a.port));
    const tb = h2Udp(session, masquePath('127.0.0.1', b.port));
    const [ha, hb] = await within(Promise.all([ta.response, tb.response]), 5000, 'two responses');
    for (const h of [ha, hb]) {
      assert.equal(h[':status'], 200);
      assert.equal(h['capsule-protocol'], '?1');
    }
    const da = new Datagrams();
    da.feedFrom(ta.stream);
    const db = new Datagrams();
    db.feedFrom(tb.stream);
    const forA = [Buffer.from('to a'), randomBytes(1200), randomBytes(7)];
    const forB = [Buffer.from('to b'), randomBytes(300)];
    ta.stream.write(Buffer.concat(forA.map((x) => encodeDatagramCapsule(x))));
    tb.stream.write(Buffer.concat(forB.map((x) => encodeDatagramCapsule(x))));
    assert.deepEqual(hexSorted(await da.waitFor(forA.length, 'echoes on a')), hexSorted(forA));
    assert.deepEqual(hexSorted(await db.waitFor(forB.length, 'echoes on b')), hexSorted(forB));
    assert.deepEqual(hexSorted(a.received.map((r) => r.msg)), hexSorted(forA));
    assert.deepEqual(hexSorted(b.received.map((r) => r.msg)), hexSorted(forB));
    // Ending one tunnel leaves the other up.
    const aEnded = new Promise<void>((r) => ta.stream.once('end', r));
    ta.stream.resume();
    ta.stream.end();
    await within(aEnded, 5000, 'tunnel a to end');
    const more = randomBytes(500);
    tb.stream.write(encodeDatagramCapsule(more));
    const got = await db.waitFor(forB.length + 1, 'one more echo on b');
    assert.deepEqual(got.at(-1), more);
    assert.equal(a.received.length, forA.length);
    assert.equal(db.got.length, forB.length + 1);
    assert.equal(p.server.snapshot().listeners[0]?.connections_total, 1);
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'connect-udp'), 'a connect-udp line for a');
    const line = p.accessLog.find((l) => l.tunnel === 'connect-udp') as Record<string, unknown>;
    assert.equal(line.protocol, 'HTTP/2');
    assert.equal(line.status, 200);
    assert.equal(line.host, `127.0.0.1:${a.port}`);
    assert.equal(
      line.bytes_in,
      forA.reduce((n, x) => n + x.length, 0),
    );
    tb.stream.close();
  });

  it('refuses denied targets and malformed templates on the stream', async (t) => {
    const echo = await udpEcho(t);
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [echo.port] }], udp: true },
    });
    const session = await h2session(t, p.port);
    for (const [path, status, code] of [
      [masquePath('127.0.0.1', echo.port + (echo.port === 65535 ? -1 : 1)), 403, 'connect_denied'],
      [masquePath('127.0.0.1', 'notaport'), 400, 'invalid_upgrade'],
    ] as const) {
      const { response } = h2Udp(session, path);
      const h = await within(response, 5000, `the answer to ${path}`);
      assert.equal(h[':status'], status, path);
      assert.equal(h['muxgate-error'], code, path);
    }
    assert.equal(echo.received.length, 0);
  });

  it('does not advertise extended CONNECT with udp: false', async (t) => {
    const p = await startForwardProxy(t, {
      protocol: 'http2',
      connect: { allow: [{ cidr: '127.0.0.1/32', ports: [443] }] },
    });
    const session = await h2session(t, p.port);
    assert.equal(session.remoteSettings.enableConnectProtocol, false);
  });
});
