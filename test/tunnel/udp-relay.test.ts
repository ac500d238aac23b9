/**
 * The CONNECT-UDP relay between a real TCP tunnel stream and a real UDP target on 127.0.0.1: the test
 * holds the client end of the stream, writes DATAGRAM capsules and reads them back through the echo
 * target, and checks every way a relay ends (client close, idle, capsule errors, UDP errors, close())
 * along with the bounded queues: datagrams waiting for connect and datagrams behind a slow client.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { describe, type TestContext, test } from 'node:test';
import { CapsuleParser, encodeCapsule, encodeDatagramCapsule } from '../../src/tunnel/capsule.ts';
import { UdpRelay, type UdpRelayOptions, type UdpRelayResult, type UdpTarget } from '../../src/tunnel/udp-relay.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

interface UdpPeer {
  socket: dgram.Socket;
  port: number;
  /** Every datagram received, with where it came from. */
  received: { msg: Buffer; from: dgram.RemoteInfo }[];
}

/** A UDP socket on `host` port 0 that echoes (or, with echo false, only records) what it receives. */
async function udpPeer(t: TestContext, echo = true, type: 'udp4' | 'udp6' = 'udp4'): Promise<UdpPeer> {
  const socket = dgram.createSocket(type);
  const received: UdpPeer['received'] = [];
  socket.on('message', (msg, from) => {
    received.push({ msg, from });
    if (echo) socket.send(msg, from.port, from.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', () => resolve());
  });
  t.after(() => closeQuietly(socket));
  return { socket, port: socket.address().port, received };
}

/** Closes a UDP socket a test may already have closed. */
function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {}
}

/** Both ends of a real TCP connection on 127.0.0.1. */
async function tcpPair(t: TestContext): Promise<{ server: net.Socket; client: net.Socket }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  await new Promise<void>((r) => (client.connecting ? client.once('connect', () => r()) : r()));
  listener.close();
  t.after(() => {
    client.destroy();
    server.destroy();
  });
  return { server, client };
}

interface Harness {
  relay: UdpRelay;
  client: net.Socket;
  /** UDP payloads the client read back from the stream. */
  back: Buffer[];
  result: Promise<UdpRelayResult>;
  doneCalls: () => number;
  clientEnded: Promise<void>;
  clientClosed: Promise<void>;
}

async function relayTo(t: TestContext, target: UdpTarget, opts: Partial<UdpRelayOptions> = {}): Promise<Harness> {
  const { server, client } = await tcpPair(t);
  const back: Buffer[] = [];
  const parser = new CapsuleParser({ onDatagram: (p) => back.push(Buffer.from(p)), onError: assert.fail });
  client.on('data', (c: Buffer) => parser.feed(c));
  client.on('error', () => {}); // a destroyed relay stream may reset the connection
  const clientEnded = new Promise<void>((r) => client.once('end', r));
  const clientClosed = new Promise<void>((r) => client.once('close', () => r()));
  let calls = 0;
  let resolve: (r: UdpRelayResult) => void = () => {};
  const result = new Promise<UdpRelayResult>((r) => (resolve = r));
  const relay = new UdpRelay(server, target, { idleTimeoutMs: 5000, ...opts }, (r) => {
    calls++;
    resolve(r);
  });
  t.after(() => relay.close());
  return { relay, client, back, result, doneCalls: () => calls, clientEnded, clientClosed };
}

const local = (port: number): UdpTarget => ({ address: '127.0.0.1', port, family: 4 });

/** True once `port` can be bound again on 127.0.0.1, i.e. the relay's UDP socket is closed. */
async function udpPortFree(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, '127.0.0.1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    closeQuietly(s);
  }
}

const sorted = (bufs: Buffer[]): string[] => bufs.map((b) => b.toString('hex')).sort();

describe('UdpRelay', () => {
  test('echoes datagrams both ways, including a 1,200-byte and an empty one', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    const payloads = [Buffer.from('one'), randomBytes(1200), Buffer.alloc(0), Buffer.from('last')];
    for (const p of payloads) h.client.write(encodeDatagramCapsule(p));
    await waitUntil(() => h.back.length === payloads.length, 'every datagram came back');
    assert.deepEqual(sorted(h.back), sorted(payloads));
    assert.deepEqual(sorted(echo.received.map((r) => r.msg)), sorted(payloads));
    // A connected socket: one source port for the whole tunnel.
    assert.equal(new Set(echo.received.map((r) => r.from.port)).size, 1);

    h.client.end();
    const r = await h.result;
    const bytes = payloads.reduce((n, p) => n + p.length, 0);
    assert.deepEqual(r, {
      reason: 'client_closed',
      datagramsIn: 4,
      bytesIn: bytes,
      datagramsOut: 4,
      bytesOut: bytes,
      dropped: 0,
    });
    await h.clientEnded;
    await waitUntil(() => h.client.destroyed, 'the client connection closed');
    assert.equal(h.doneCalls(), 1);
  });

  test('capsules split byte by byte, with unknown capsules and foreign contexts between them', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    const wire = Buffer.concat([
      encodeDatagramCapsule(Buffer.from('a')),
      encodeCapsule(0x2028d7ee, randomBytes(40)),
      encodeCapsule(0, hex('07 ffff')), // context 7: dropped
      encodeDatagramCapsule(Buffer.from('b')),
    ]);
    for (let i = 0; i < wire.length; i++) {
      h.client.write(wire.subarray(i, i + 1));
      if (i % 8 === 0) await sleep(1); // let some bytes arrive alone
    }
    await waitUntil(() => h.back.length === 2, 'both datagrams came back');
    assert.deepEqual(sorted(h.back), sorted([Buffer.from('a'), Buffer.from('b')]));
    h.relay.close();
    const r = await h.result;
    assert.equal(r.reason, 'closed');
    assert.equal(r.datagramsIn, 2);
    assert.equal(r.dropped, 1);
  });

  test('only the target may answer: datagrams from other sources never reach the client', async (t) => {
    const target = await udpPeer(t, false);
    const stranger = await udpPeer(t, false);
    const h = await relayTo(t, local(target.port));
    h.client.write(encodeDatagramCapsule(Buffer.from('hello')));
    await waitUntil(() => target.received.length === 1, 'the target heard the client');
    const relayPort = target.received[0]!.from.port;
    stranger.socket.send('spoofed', relayPort, '127.0.0.1');
    await sleep(30);
    target.socket.send('real', relayPort, '127.0.0.1');
    await waitUntil(() => h.back.length >= 1, 'the reply came back');
    await sleep(30);
    assert.deepEqual(
      h.back.map((b) => b.toString()),
      ['real'],
    );
  });

  test('idle for idleTimeoutMs ends the client stream and closes the UDP socket', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port), { idleTimeoutMs: 200 });
    const start = performance.now();
    h.client.write(encodeDatagramCapsule(Buffer.from('ping')));
    await waitUntil(() => h.back.length === 1, 'the echo');
    const relayPort = echo.received[0]!.from.port;
    const r = await h.result;
    assert.equal(r.reason, 'idle_timeout');
    assert.ok(performance.now() - start >= 195, 'not before the idle time');
    await h.clientEnded;
    assert.equal(await udpPortFree(relayPort), true);
    h.client.end();
    await h.clientClosed;
    assert.equal(h.doneCalls(), 1);
  });

  test('traffic either way keeps the tunnel alive past idleTimeoutMs', async (t) => {
    // Gaps of 80 ms against an idle time of IDLE_MS: far apart even when a loaded machine runs timers late.
    const IDLE_MS = 1000;
    const target = await udpPeer(t, false);
    const h = await relayTo(t, local(target.port), { idleTimeoutMs: IDLE_MS });
    // The relay exists already: without traffic it would end by start + IDLE_MS.
    const start = performance.now();
    h.client.write(encodeDatagramCapsule(Buffer.from('first')));
    await waitUntil(() => target.received.length === 1, 'the first datagram');
    const relayPort = target.received[0]!.from.port;
    let ended = false;
    void h.result.then(() => (ended = true));
    // Traffic every 80 ms, alternating directions, for one and a half idle periods: never idle.
    let up = 1;
    let down = 0;
    let lastSent = start;
    for (let i = 0; performance.now() - start < 1.5 * IDLE_MS; i++) {
      await sleep(80);
      assert.equal(ended, false, `still open ${Math.round(performance.now() - start)} ms into the traffic`);
      lastSent = performance.now();
      if (i % 2 === 0) {
        target.socket.send('down', relayPort, '127.0.0.1');
        down++;
      } else {
        h.client.write(encodeDatagramCapsule(Buffer.from('up')));
        up++;
      }
    }
    const r = await h.result;
    assert.equal(r.reason, 'idle_timeout');
    // The last datagram reached the relay after lastSent: not on the schedule of the first arming,
    // never before one idle period of silence, and not much later.
    const quiet = performance.now() - lastSent;
    assert.ok(quiet >= IDLE_MS && quiet < IDLE_MS + 3000, `ended ${quiet} ms after the last datagram`);
    assert.equal(r.datagramsOut, down);
    assert.equal(r.datagramsIn, up);
  });

  test('closing the client stream closes the relay with client_closed', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    h.client.write(encodeDatagramCapsule(Buffer.from('x')));
    await waitUntil(() => h.back.length === 1, 'the echo');
    const relayPort = echo.received[0]!.from.port;
    h.client.destroy();
    const r = await h.result;
    assert.equal(r.reason, 'client_closed');
    assert.equal(await udpPortFree(relayPort), true);
    await sleep(20);
    assert.equal(h.doneCalls(), 1);
  });

  test('a DATAGRAM capsule without a context id closes with malformed_capsule', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    h.client.write(Buffer.concat([encodeDatagramCapsule(Buffer.from('ok')), hex('00 00')]));
    const r = await h.result;
    assert.equal(r.reason, 'malformed_capsule');
    await h.clientClosed;
    assert.equal(h.doneCalls(), 1);
  });

  test('a stream that ends inside a capsule is malformed_capsule', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    h.client.end(encodeDatagramCapsule(Buffer.from('cut short')).subarray(0, 5));
    assert.equal((await h.result).reason, 'malformed_capsule');
  });

  test('a capsule over maxCapsuleBytes closes with capsule_too_large', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port), { maxCapsuleBytes: 100 });
    h.client.write(encodeDatagramCapsule(Buffer.alloc(99)));
    await waitUntil(() => h.back.length === 1, 'the echo of a capsule at the limit');
    h.client.write(encodeDatagramCapsule(Buffer.alloc(100)).subarray(0, 3)); // the header is enough
    const r = await h.result;
    assert.equal(r.reason, 'capsule_too_large');
    await h.clientClosed;
  });

  test('close() ends the stream and reports closed once', async (t) => {
    const echo = await udpPeer(t);
    const h = await relayTo(t, local(echo.port));
    h.relay.close();
    h.relay.close();
    assert.equal(h.doneCalls(), 1);
    assert.equal((await h.result).reason, 'closed');
    await h.clientEnded;
    h.client.end();
    await h.clientClosed;
    assert.equal(h.doneCalls(), 1);
  });

  test('a target the socket cannot connect to is udp_error, reported after the constructor', async (t) => {
    const h = await relayTo(t, { address: '::1', port: 9, family: 4 });
    assert.equal((await h.result).reason, 'udp_error');
    await h.clientClosed;

    const bad = await relayTo(t, { address: '127.0.0.1', port: 0, family: 4 });
    assert.equal(bad.doneCalls(), 0); // not from within the constructor
    assert.equal((await bad.result).reason, 'udp_error');
  });

  test('an ICMP port unreachable is not fatal: the target may come up later', async (t) => {
    const gone = await udpPeer(t, false);
    const port = gone.port;
    gone.socket.close();
    const h = await relayTo(t, local(port));
    for (let i = 0; i < 3; i++) {
      h.client.write(encodeDatagramCapsule(Buffer.from(`lost ${i}`)));
      await sleep(20);
    }
    const late = dgram.createSocket('udp4');
    t.after(() => closeQuietly(late));
    late.on('message', (msg, from) => late.send(msg, from.port, from.address));
    await new Promise<void>((r) => late.bind(port, '127.0.0.1', r));
    h.client.write(encodeDatagramCapsule(Buffer.from('found')));
    await waitUntil(() => h.back.length === 1, 'the late target answered');
    assert.equal(h.doneCalls(), 0);
  });

  test('datagrams that arrive before the socket connects are queued, at most 64', async (t) => {
    const echo = await udpPeer(t);
    // The head is parsed inside the constructor, long before the connect completes.
    const head = Buffer.concat(Array.from({ length: 70 }, (_, i) => encodeDatagramCapsule(Buffer.from(`d${i}`))));
    const h = await relayTo(t, local(echo.port), { head });
    await waitUntil(() => h.back.length === 64, '64 echoes');
    await sleep(30);
    h.relay.close();
    const r = await h.result;
    assert.equal(echo.received.length, 64);
    assert.deepEqual(
      sorted(echo.received.map((x) => x.msg)),
      sorted(Array.from({ length: 64 }, (_, i) => Buffer.from(`d${i}`))),
    );
    assert.equal(r.datagramsIn, 64);
    assert.equal(r.dropped, 6);
  });

  test('while the stream is backpressured, datagrams from the target are dropped, not queued', async (t) => {
    const target = await udpPeer(t, false);
    // A stream whose writes complete only when the test says so, and that is full after one byte.
    const written: Buffer[] = [];
    let release: (() => void) | null = null;
    const stream = new Duplex({
      writableHighWaterMark: 1,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        written.push(chunk);
        release = () => cb();
      },
    });
    let result: UdpRelayResult | null = null;
    const relay = new UdpRelay(stream, local(target.port), { idleTimeoutMs: 5000 }, (r) => (result = r));
    t.after(() => relay.close());
    stream.push(encodeDatagramCapsule(Buffer.from('hello')));
    await waitUntil(() => target.received.length === 1, 'the target heard the client');
    const relayPort = target.received[0]!.from.port;
    const send = (s: string) => target.socket.send(s, relayPort, '127.0.0.1');

    for (let i = 0; i < 10; i++) send(`burst ${i}`);
    send('marker');
    // Loopback delivers in microseconds; the relay gets the burst well before the stream drains.
    await sleep(100);
    assert.equal(written.length, 1, 'only the first of the burst was written');
    assert.equal(stream.writableNeedDrain, true);
    release!();
    send('after drain');
    await waitUntil(() => written.length === 2, 'a write after drain');
    assert.deepEqual(written[1], encodeDatagramCapsule(Buffer.from('after drain')));
    relay.close();
    assert.ok(result !== null);
    const r = result as UdpRelayResult;
    assert.equal(r.datagramsOut, 2);
    assert.equal(r.dropped, 10); // nine of the burst and the marker
    assert.deepEqual(written[0], encodeDatagramCapsule(Buffer.from('burst 0')));
  });

  test('IPv6 targets use a udp6 socket', async (t) => {
    let echo: UdpPeer;
    try {
      echo = await udpPeer(t, true, 'udp6');
    } catch {
      t.skip('no IPv6 loopback here');
      return;
    }
    const h = await relayTo(t, { address: '::1', port: echo.port, family: 6 });
    h.client.write(encodeDatagramCapsule(Buffer.from('six')));
    await waitUntil(() => h.back.length === 1, 'the echo over IPv6');
    assert.equal(h.back[0]!.toString(), 'six');
    assert.equal(echo.received[0]!.from.family, 'IPv6');
  });
});
