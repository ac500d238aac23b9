/**
 * The engine's output path over real TCP sockets (written through their handles): every connection
 * appends into one shared arena per turn and keeps its own slices of it. Connections whose output
 * interleaves within a turn, an arena filling up mid-turn, large owned payloads between copied bytes,
 * heads encoded in place or, when they may not fit a frame, apart (HEADERS + CONTINUATION), and
 * END_STREAM set on a DATA frame already in the arena.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { type ConnectionHandler, type ConnectionOptions, Http2Connection } from '../../src/http2/connection.ts';
import { DEFAULT_FLOOD_LIMITS } from '../../src/http2/flood-guard.ts';
import type { Http2Stream } from '../../src/http2/stream.ts';
import {
  DATA,
  FLAG_END_STREAM,
  GOAWAY,
  H2FrameClient,
  HEADERS,
  MAX_STREAM_ID,
  NO_ERROR,
  SETTINGS_INITIAL_WINDOW_SIZE,
} from '../helpers/h2-frames.ts';

const OPTIONS: ConnectionOptions = {
  maxConcurrentStreams: 100,
  initialWindowSize: 1 << 20,
  connectionWindowSize: 1 << 20,
  maxHeaderListSize: 1 << 20,
  maxHeaderBlockBytes: 1 << 20,
  headerTableSize: 4096,
  enableConnectProtocol: false,
  settingsTimeoutMs: 120_000,
  stallTimeoutMs: 30_000,
  floods: DEFAULT_FLOOD_LIMITS,
};

/** A server whose connections hand every stream to `onStream`; `n` clients connected to it. */
async function setup(
  t: TestContext,
  n: number,
  onStream: (s: Http2Stream) => void,
  onClose: () => void = () => {},
): Promise<{ clients: H2FrameClient[]; conns: Http2Connection[] }> {
  const conns: Http2Connection[] = [];
  const server = net.createServer({ noDelay: true }, (socket) => {
    const handler: ConnectionHandler = { onStream, onGoaway() {}, onClose };
    const conn = new Http2Connection(socket, 'server', handler, OPTIONS);
    conns.push(conn);
    conn.start(null);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const clients: H2FrameClient[] = [];
  for (let i = 0; i < n; i++) {
    // A large window: bodies are not held back by flow control.
    const c = await H2FrameClient.connect(port, { settings: [[SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24]] });
    c.windowUpdate(0, (1 << 24) - 65535);
    t.after(() => c.destroy());
    clients.push(c);
  }
  return { clients, conns };
}

/** Resolves once `n` streams arrived, with them in arrival order. */
function collect(n: number): { onStream: (s: Http2Stream) => void; all: Promise<Http2Stream[]> } {
  const got: Http2Stream[] = [];
  let done!: (v: Http2Stream[]) => void;
  const all = new Promise<Http2Stream[]>((r) => {
    done = r;
  });
  return {
    onStream: (s) => {
      got.push(s);
      if (got.length === n) done(got);
    },
    all,
  };
}

/** The position in `streams` of the stream `cl` opened (streams arrive in any order). */
const indexOf = (streams: Http2Stream[], cl: H2FrameClient): number =>
  streams.findIndex((s) => s.conn.transport.socket.remotePort === cl.socket.localPort);

const bytes = (n: number, seed: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe('HTTP/2 output: one shared arena per turn', () => {
  it('connections whose output interleaves in one turn each get theirs, in order; END_STREAM joins the last DATA', async (t) => {
    const n = 6;
    const c = collect(n);
    const { clients } = await setup(t, n, c.onStream);
    for (const cl of clients) cl.request(1, '/');
    const streams = await c.all;
    // One turn: heads, then body pieces, round-robin over the connections; small pieces are copied,
    // 6000-byte ones (owned) referenced between them.
    for (const s of streams) s.respond([':status', '200', 'x-conn', String(s.conn.transport.socket.remotePort)], false);
    for (let round = 0; round < 4; round++) {
      for (const [i, s] of streams.entries()) s.write(bytes(round % 2 === 0 ? 100 + i : 6000, round * 16 + i));
    }
    for (const s of streams) s.end();
    for (const cl of clients) {
      const i = indexOf(streams, cl);
      const r = await cl.response(1);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-conn'], String(cl.socket.localPort));
      const want = Buffer.concat([0, 1, 2, 3].map((round) => bytes(round % 2 === 0 ? 100 + i : 6000, round * 16 + i)));
      assert.ok(r.body.equals(want), `connection ${i}: body`);
      const data = cl.frames.filter((f) => f.type === DATA && f.streamId === 1);
      assert.equal(data.length, 4, 'no empty DATA frame for the end');
      assert.equal(data.at(-1)!.flags & FLAG_END_STREAM, FLAG_END_STREAM);
    }
  });

  it('more output in one turn than an arena holds', async (t) => {
    const n = 24;
    const c = collect(n);
    const { clients } = await setup(t, n, c.onStream);
    for (const cl of clients) cl.request(1, '/');
    const streams = await c.all;
    // 24 × 2 × 4000 copied bytes: 192 KB, three arenas' worth.
    for (const [i, s] of streams.entries()) {
      s.respond([':status', '200'], false);
      s.write(bytes(4000, i));
    }
    for (const [i, s] of streams.entries()) {
      s.write(bytes(4000, i + 100));
      s.end();
    }
    for (const cl of clients) {
      const i = indexOf(streams, cl);
      const r = await cl.response(1);
      assert.ok(r.body.equals(Buffer.concat([bytes(4000, i), bytes(4000, i + 100)])), `connection ${i}: body`);
    }
  });

  it('heads encoded in place, over the frame size (CONTINUATION) and over an arena', async (t) => {
    const c = collect(3);
    const { clients } = await setup(t, 1, c.onStream);
    const [cl] = clients;
    cl!.batch(() => {
      for (const id of [1, 3, 5]) cl!.request(id, `/${id}`);
    });
    const [small, overFrame, overArena] = await c.all;
    const sizes = new Map([
      [small!, 10],
      [overFrame!, 20_000],
      [overArena!, 70_000],
    ]);
    for (const [s, size] of sizes) s.respond([':status', '200', 'x-big', 'b'.repeat(size), 'x-after', 'a'], true);
    for (const [s, size] of sizes) {
      const r = await cl!.response(s.id);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-big'], 'b'.repeat(size));
      assert.equal(r.headers['x-after'], 'a');
      assert.ok(r.ended);
    }
    // The small head is one HEADERS frame; the others are cut to the peer's 16384-byte frames.
    const headers = cl!.frames.filter((f) => f.type === HEADERS);
    assert.equal(headers.length, 3);
    assert.ok(headers[0]!.payload.length < 100);
  });

  it('after our GOAWAY and FIN, the last bytes and the FIN of the peer close the socket at once', async (t) => {
    let closedAt = 0;
    const { clients, conns } = await setup(
      t,
      1,
      () => {},
      () => {
        closedAt = performance.now();
      },
    );
    const [cl] = clients;
    conns[0]!.shutdown();
    // The second GOAWAY (after the PING round trip) comes with our FIN; the client answers with a
    // GOAWAY of its own, then its FIN. Both reach a socket no longer read directly: they must still
    // end it (not the 2 s timer that is there for peers that never close).
    await cl!.next((f) => f.type === GOAWAY && f.payload.readUInt32BE(0) !== MAX_STREAM_ID);
    cl!.goaway(0, NO_ERROR);
    cl!.end();
    const endedAt = performance.now();
    await cl!.waitClosed();
    const deadline = Date.now() + 5000;
    while (closedAt === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(closedAt > 0, 'the server side closed');
    assert.ok(closedAt - endedAt < 1000, `closed ${Math.round(closedAt - endedAt)} ms after the peer's FIN`);
  });
});
