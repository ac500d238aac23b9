/**
 * The splice that joins the two ends of a tunnel (src/tunnel/splice.ts), seen from real peers on
 * 127.0.0.1: half-close both ways through an HTTP/2 CONNECT stream, resets passed on as resets (TCP
 * RST one way, RST_STREAM CONNECT_ERROR the other), the connect idle timeout, backpressure through an
 * HTTP/2 CONNECT stream in both directions, early DATA on an HTTP/2 CONNECT stream, and a WebSocket
 * to a TLS backend (SocketSide's 'data'/write path rather than direct I/O). connect.test.ts already
 * covers early data on an HTTP/1.1 CONNECT (head and bytes in one write). The proxy runs in-process,
 * but for the END_STREAM-then-RST_STREAM cases (a child process: see there).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, describe, it, type TestContext } from 'node:test';
import { WebSocketServer } from 'ws';
import { makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { portOf, type RunningMuxgate, startMuxgate } from '../helpers/cli.ts';
import {
  CANCEL,
  CONNECT_ERROR,
  DATA,
  FLAG_END_STREAM,
  type Frame,
  H2FrameClient,
  RST_STREAM,
} from '../helpers/h2-frames.ts';
import { startProxy, type TestProxy, startForwardProxy } from '../helpers/proxy.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { connect, SocketReader, within } from '../helpers/wire.ts';
import { closed, nextMessage, type WebSocket, wsConnect } from '../helpers/ws.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;
/** Generous waits: the suite must pass on a loaded two-core machine. */
const WAIT = 15_000;

// ---------------------------------------------------------------------------------------------
// Peers

/** How a socket ended, in the order its events came. */
interface SocketFate {
  /** The peer's FIN ('end'). */
  ended: boolean;
  error: NodeJS.ErrnoException | null;
  closed: boolean;
  /** 'end', 'error:ECONNRESET', 'close', in order. */
  events: string[];
  whenEnded: Promise<void>;
  whenClosed: Promise<void>;
}

function watchSocket(s: net.Socket): SocketFate {
  const f: SocketFate = {
    ended: false,
    error: null,
    closed: false,
    events: [],
    whenEnded: Promise.resolve(),
    whenClosed: Promise.resolve(),
  };
  f.whenEnded = new Promise<void>((resolve) =>
    s.once('end', () => {
      f.ended = true;
      f.events.push('end');
      resolve();
    }),
  );
  f.whenClosed = new Promise<void>((resolve) =>
    s.once('close', () => {
      f.closed = true;
      f.events.push('close');
      resolve();
    }),
  );
  s.on('error', (e: NodeJS.ErrnoException) => {
    f.error ??= e;
    f.events.push(`error:${e.code ?? e.message}`);
  });
  return f;
}

/** One connection accepted by a target: what it read, and how it ended. */
interface TargetConn extends SocketFate {
  socket: net.Socket;
  chunks: Buffer[];
  bytes: number;
  received(): Buffer;
}

interface Target {
  port: number;
  accepts: number;
  /** The next accepted connection, in accept order. */
  next(): Promise<TargetConn>;
}

/**
 * A raw TCP server on 127.0.0.1 port 0, half-open capable, that records what each connection sends
 * and does nothing else (the test drives its answers). `paused`: connections do not read until the
 * test resumes their socket.
 */
async function tcpTarget(t: TestContext, o: { paused?: boolean } = {}): Promise<Target> {
  const sockets = new Set<net.Socket>();
  const ready: TargetConn[] = [];
  const waiting: ((c: TargetConn) => void)[] = [];
  const target: Target = {
    port: 0,
    accepts: 0,
    next: () => {
      const c = ready.shift();
      if (c !== undefined) return Promise.resolve(c);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    target.accepts++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    const chunks: Buffer[] = [];
    const c: TargetConn = Object.assign(watchSocket(s), {
      socket: s,
      chunks,
      bytes: 0,
      received: () => Buffer.concat(chunks),
    });
    s.on('data', (b: Buffer) => {
      c.chunks.push(b);
      c.bytes += b.length;
    });
    if (o.paused === true) s.pause();
    const w = waiting.shift();
    if (w !== undefined) w(c);
    else ready.push(c);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  target.port = (server.address() as AddressInfo).port;
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return target;
}

/** A `connect` map that opens exactly 127.0.0.1:`port`. */
const allow = (port: number, extra: Record<string, unknown> = {}) => ({
  allow: [{ cidr: '127.0.0.1/32', ports: [port] }],
  ...extra,
});

/** An HTTP/1.1 CONNECT to `target`; resolves once the 200 head is read (the tunnel follows). */
async function h1Tunnel(t: TestContext, port: number, target: string): Promise<SocketReader> {
  const c = await connect(port, t);
  c.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const head = (await c.readUntil('\r\n\r\n', 'the CONNECT response head', WAIT)).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 200 /);
  return c;
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

/** How a client stream ended: what it delivered, whether it saw END_STREAM, its RST_STREAM code. */
interface StreamFate {
  body: Buffer;
  /** 'end': the peer's END_STREAM came. */
  ended: boolean;
  /** The code the stream closed with (NGHTTP2_NO_ERROR for a clean close). */
  rstCode: number | undefined;
  error: Error | null;
}

/** A CONNECT stream whose incoming bytes are collected from the start. */
interface H2Tunnel {
  stream: ClientHttp2Stream;
  response: Promise<IncomingHttpHeaders>;
  /** Bytes received so far. */
  bytes(): number;
  /** Settles when the stream closes. */
  fate: Promise<StreamFate>;
}

function h2Tunnel(session: ClientHttp2Session, authority: string): H2Tunnel {
  const stream = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
  const chunks: Buffer[] = [];
  let bytes = 0;
  let ended = false;
  let error: Error | null = null;
  stream.on('data', (c: Buffer) => {
    chunks.push(c);
    bytes += c.length;
  });
  stream.on('end', () => {
    ended = true;
  });
  stream.on('error', (e: Error) => {
    error ??= e;
  });
  const response = new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error(`stream closed before a response (rst ${stream.rstCode})`)));
  });
  response.catch(() => {});
  const fate = new Promise<StreamFate>((resolve) =>
    stream.once('close', () => resolve({ body: Buffer.concat(chunks), ended, rstCode: stream.rstCode, error })),
  );
  return { stream, response, bytes: () => bytes, fate };
}

/** The access-log lines of finished CONNECT tunnels, once there are at least `n`. */
async function connectLine(p: TestProxy, n = 1): Promise<Record<string, unknown>[]> {
  await waitUntil(
    () => p.accessLog.filter((l) => l.tunnel === 'connect').length >= n,
    `${n} connect line(s) in the access log`,
    { timeoutMs: WAIT },
  );
  return p.accessLog.filter((l) => l.tunnel === 'connect');
}

/** The fields of an access-log line that say how a tunnel ended. */
function summary(l: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    status: l?.status,
    end: l?.end,
    closed_first: l?.closed_first,
    error: l?.error,
    bytes_in: l?.bytes_in,
    bytes_out: l?.bytes_out,
  };
}

const dir = tmpDir('muxgate-splice-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** muxgate in a child process, its access log on stdout (JSON lines in `lines`). */
interface ChildMuxgate extends RunningMuxgate {
  port: number;
  /** Everything it wrote to stderr that is not a JSON log line (a crash's stack). */
  stderrText(): string;
}

let configs = 0;

/** The child's exit code, null while it runs (after a moment for an exit under way to be seen). */
async function exitCode(m: ChildMuxgate): Promise<number | null> {
  await Promise.race([m.exited, sleep(300)]);
  return m.child.exitCode;
}

/**
 * Starts muxgate as a child process with `config` (YAML lines; one listener, whose port is read back
 * from its "listening" line); killed when the test ends. For tests where muxgate itself may die or
 * get stuck: the test process must outlive it.
 */
async function muxgateProcess(t: TestContext, config: string[]): Promise<ChildMuxgate> {
  const file = join(dir, `muxgate-${++configs}.yaml`);
  writeFileSync(file, ['log_level: info', 'admin: false', 'access_log: { enabled: true }', ...config, ''].join('\n'));
  const m = startMuxgate(['start', '--config', file]);
  let text = '';
  m.child.stderr?.on('data', (c: Buffer) => {
    for (const line of c.toString('utf8').split('\n')) if (line !== '' && !line.startsWith('{')) text += `${line}\n`;
  });
  t.after(() => m.stop('SIGKILL'));
  const listening = await m.waitFor((l) => l.msg === 'listening', WAIT);
  return Object.assign(m, { port: portOf(listening), stderrText: () => text });
}

/** An HTTP/2 forward proxy listener that may CONNECT to 127.0.0.1:`targetPort`. */
const h2ConnectConfig = (targetPort: number) => [
  'listeners:',
  '  - name: fwd',
  '    address: 127.0.0.1:0',
  '    protocol: http2',
  '    routes: []',
  '    connect:',
  `      allow: [{ cidr: 127.0.0.1/32, ports: [${targetPort}] }]`,
];

/**
 * TCP sockets process `pid` holds to or from 127.0.0.1:`port`, from `ss` (iproute2); [] when ss is
 * not installed (nothing to check then).
 */
function socketsOf(pid: number | undefined, port: number): string[] {
  let out: string;
  try {
    // Filtered by the port: with other tests' thousands of sockets open, the full table is megabytes.
    out = execFileSync('ss', ['-Htanp', `( dport = :${port} or sport = :${port} )`], {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    return [`ss failed: ${(err as Error).message}`];
  }
  return out
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`) && new RegExp(`:${port}\\s`).test(l))
    .map((l) => l.replace(/\s+/g, ' ').trim());
}

/** Resolves once `value()` has not changed for `quietMs` (it stalled), or rejects after `maxMs`. */
async function stalled(value: () => number, what: string, quietMs = 1000, maxMs = WAIT): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = value();
  let since = Date.now();
  for (;;) {
    await sleep(100);
    const v = value();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return v;
    if (Date.now() > deadline) throw new Error(`${what} kept moving for ${maxMs} ms (at ${v})`);
  }
}

/**
 * Writes `payload` into `w` in 64 KiB chunks, waiting for 'drain' whenever it is full, then ends it.
 * `sent()`: bytes whose write callback ran (they left the writer: a write waiting for window or
 * buffer space calls back only once it is sent); `done()`: everything was handed over.
 */
function writeAll(w: Writable, payload: Buffer): { sent(): number; done(): boolean; finished: Promise<void> } {
  let sent = 0;
  let done = false;
  const finished = (async () => {
    for (let off = 0; off < payload.length; off += 64 * 1024) {
      const chunk = payload.subarray(off, off + 64 * 1024);
      const ok = w.write(chunk, (err) => {
        if (err == null) sent += chunk.length;
      });
      if (!ok) await once(w, 'drain');
    }
    w.end();
    done = true;
  })();
  finished.catch(() => {});
  return { sent: () => sent, done: () => done, finished };
}

// ---------------------------------------------------------------------------------------------

describe('splice: half-close and early DATA on an HTTP/2 CONNECT stream', () => {
  it("END_STREAM reaches the target as a FIN after every byte; the target's answer and FIN come back whole", async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    const session = await h2session(t, p.port);
    const tun = h2Tunnel(session, `127.0.0.1:${target.port}`);
    assert.equal((await within(tun.response, WAIT, 'the 200'))[':status'], 200);
    const conn = await within(target.next(), WAIT, 'the target connection');

    // Client -> target, then END_STREAM: the target gets every byte, then the FIN.
    const request = randomBytes(300 * 1024 + 17);
    tun.stream.end(request);
    await within(conn.whenEnded, WAIT, 'the FIN at the target');
    assert.equal(conn.bytes, request.length);
    assert.equal(sha(conn.received()), sha(request));
    assert.equal(conn.closed, false, 'the target socket is half-open: it can still answer');
    assert.equal(conn.error, null);

    // Target -> client after the client's END_STREAM: the stream's receiving half is still open.
    const answer = randomBytes(700 * 1024 + 3);
    conn.socket.write(answer.subarray(0, 1000));
    await waitUntil(() => tun.bytes() >= 1000, 'the first part of the answer at the client', { timeoutMs: WAIT });
    assert.equal(tun.stream.closed, false, 'the stream is still open after the client ended its side');
    conn.socket.end(answer.subarray(1000));

    const fate = await within(tun.fate, WAIT, 'the stream to close');
    assert.equal(fate.error, null, String(fate.error));
    assert.equal(fate.ended, true, "the client saw the target's end as END_STREAM");
    assert.equal(fate.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'a clean close, no RST_STREAM with an error code');
    assert.equal(fate.body.length, answer.length);
    assert.equal(sha(fate.body), sha(answer));
    await within(conn.whenClosed, WAIT, 'the target socket to close');
    assert.equal(conn.error, null, `the target socket closed cleanly (${conn.events.join(', ')})`);
    assert.equal(session.destroyed, false);

    const [line] = await connectLine(p);
    assert.equal(line?.status, 200);
    assert.equal(line?.protocol, 'HTTP/2');
    assert.equal(line?.bytes_in, request.length);
    assert.equal(line?.bytes_out, answer.length);
    assert.equal(line?.end, 'closed');
    assert.equal(line?.error, undefined);
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.tunnels_open, 0);
  });

  it('carries DATA sent in the same write as the CONNECT HEADERS first and intact', async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    const c = await H2FrameClient.connect(p.port);
    t.after(() => c.destroy());
    // HEADERS and DATA in one write, before any answer: the DATA waits on the stream until the tunnel
    // is up (40 KiB: within the default 64 KiB window, whatever the proxy advertises).
    const early = randomBytes(40 * 1024 + 5);
    c.batch(() => {
      c.headers(1, [':method', 'CONNECT', ':authority', `127.0.0.1:${target.port}`], { endStream: false });
      c.data(1, early.subarray(0, 16_384));
      c.data(1, early.subarray(16_384, 32_768));
      c.data(1, early.subarray(32_768));
    });
    assert.equal((await c.waitHeaders(1, WAIT)).fields?.find(([n]) => n === ':status')?.[1], '200');
    const conn = await within(target.next(), WAIT, 'the target connection');
    await waitUntil(() => conn.bytes >= early.length, 'the early bytes at the target', { timeoutMs: WAIT });
    const later = Buffer.from('and then the rest');
    c.data(1, later, { endStream: true });
    await within(conn.whenEnded, WAIT, 'the FIN at the target');
    assert.equal(sha(conn.received()), sha(Buffer.concat([early, later])));
    conn.socket.end('bye');
    const res = await c.response(1, WAIT);
    assert.equal(res.rst, null, 'no RST_STREAM');
    assert.equal(res.ended, true);
    assert.equal(res.body.toString(), 'bye');
    const [line] = await connectLine(p);
    assert.equal(line?.bytes_in, early.length + later.length);
    assert.equal(line?.bytes_out, 3);
    assert.equal(line?.end, 'closed');
  });
});

describe('splice: resets pass through as resets', () => {
  it('HTTP/1.1 CONNECT: a target RST resets the client, with nothing written into the tunnel', async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { connect: allow(target.port) });
    const c = await h1Tunnel(t, p.port, `127.0.0.1:${target.port}`);
    const clientFate = watchSocket(c.socket);
    const conn = await within(target.next(), WAIT, 'the target connection');
    c.write('ping');
    await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
    conn.socket.write('pong');
    assert.equal((await c.readExactly(4, 'pong', WAIT)).toString(), 'pong');
    conn.socket.resetAndDestroy();
    await within(clientFate.whenClosed, WAIT, 'the client socket to close');
    // The tunnel carries the target's bytes only: no proxy response may follow a 200.
    const extra = await c.readToEnd(1);
    assert.equal(extra.length, 0, `bytes after the target's last: ${JSON.stringify(extra.toString('latin1'))}`);
    assert.equal(clientFate.error?.code, 'ECONNRESET', `client socket events: ${clientFate.events.join(', ')}`);
    assert.equal(clientFate.ended, false, 'no FIN before the reset: the client must not take it for a clean end');

    const lines = await connectLine(p);
    await sleep(100); // a second line for the same tunnel would be a bug
    assert.deepEqual(
      p.accessLog.filter((l) => l.tunnel === 'connect').map(summary),
      [{ status: 200, end: 'upstream_reset', closed_first: 'upstream', error: undefined, bytes_in: 4, bytes_out: 4 }],
      JSON.stringify(lines),
    );
    assert.deepEqual(p.server.snapshot().listeners[0]?.error_codes, {}, 'a reset tunnel is not a failed connect');
  });

  it('HTTP/1.1 CONNECT: a client RST resets the target', async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { connect: allow(target.port) });
    const c = await h1Tunnel(t, p.port, `127.0.0.1:${target.port}`);
    const conn = await within(target.next(), WAIT, 'the target connection');
    c.write('ping');
    await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
    c.socket.resetAndDestroy();
    await within(conn.whenClosed, WAIT, 'the target socket to close');
    assert.equal(conn.error?.code, 'ECONNRESET', `target socket events: ${conn.events.join(', ')}`);
    assert.equal(conn.ended, false, 'no FIN at the target before the reset');
    const [line] = await connectLine(p);
    assert.deepEqual(summary(line), {
      status: 200,
      end: 'client_reset',
      closed_first: 'client',
      error: undefined,
      bytes_in: 4,
      bytes_out: 0,
    });
  });

  it('HTTP/2 CONNECT: a target RST becomes RST_STREAM CONNECT_ERROR; the session lives on', async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    const session = await h2session(t, p.port);
    const authority = `127.0.0.1:${target.port}`;
    const tun = h2Tunnel(session, authority);
    assert.equal((await within(tun.response, WAIT, 'the 200'))[':status'], 200);
    const conn = await within(target.next(), WAIT, 'the target connection');
    tun.stream.write('ping');
    await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
    conn.socket.write('pong');
    await waitUntil(() => tun.bytes() === 4, 'pong at the client', { timeoutMs: WAIT });
    conn.socket.resetAndDestroy();
    const fate = await within(tun.fate, WAIT, 'the stream to close');
    assert.equal(fate.rstCode, CONNECT_ERROR, `rstCode ${fate.rstCode}, ended ${fate.ended}`);
    assert.equal(fate.ended, false, 'no END_STREAM before the reset');
    assert.equal(fate.body.toString(), 'pong');

    // Only the stream was cut: the same session opens another tunnel.
    assert.equal(session.destroyed, false);
    const tun2 = h2Tunnel(session, authority);
    assert.equal((await within(tun2.response, WAIT, 'the second 200'))[':status'], 200);
    const conn2 = await within(target.next(), WAIT, 'the second target connection');
    tun2.stream.end('again');
    await within(conn2.whenEnded, WAIT, 'the FIN at the target');
    assert.equal(conn2.received().toString(), 'again');
    conn2.socket.end();
    assert.equal((await within(tun2.fate, WAIT, 'the second stream to close')).rstCode, 0);

    await connectLine(p, 2);
    await sleep(100);
    const lines = p.accessLog.filter((l) => l.tunnel === 'connect').map(summary);
    // Which side of a clean close is gone first is not the point here.
    for (const l of lines) if (l.end === 'closed') delete l.closed_first;
    assert.deepEqual(
      lines,
      [
        { status: 200, end: 'upstream_reset', closed_first: 'upstream', error: undefined, bytes_in: 4, bytes_out: 4 },
        { status: 200, end: 'closed', error: undefined, bytes_in: 5, bytes_out: 0 },
      ],
      'one line per tunnel, each as it ended',
    );
    assert.deepEqual(p.server.snapshot().listeners[0]?.error_codes, {});
  });

  it('HTTP/2 CONNECT: RST_STREAM CANCEL from the client resets the target (raw frames)', async (t) => {
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    const c = await H2FrameClient.connect(p.port);
    t.after(() => c.destroy());
    const id = 1;
    c.headers(id, [':method', 'CONNECT', ':authority', `127.0.0.1:${target.port}`], { endStream: false });
    assert.equal((await c.waitHeaders(id, WAIT)).fields?.find(([n]) => n === ':status')?.[1], '200');
    const conn = await within(target.next(), WAIT, 'the target connection');
    c.data(id, 'ping');
    await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
    c.rstStream(id, CANCEL);
    await within(conn.whenClosed, WAIT, 'the target socket to close');
    assert.equal(conn.error?.code, 'ECONNRESET', `target socket events: ${conn.events.join(', ')}`);
    assert.equal(conn.ended, false, 'no FIN at the target before the reset');
    const [line] = await connectLine(p);
    assert.deepEqual(summary(line), {
      status: 200,
      end: 'client_reset',
      closed_first: 'client',
      error: undefined,
      bytes_in: 4,
      bytes_out: 0,
    });
    assert.equal(p.server.snapshot().listeners[0]?.tunnels_open, 0);
  });

  // node:http2's stream.close(NGHTTP2_CANCEL) on a stream still open for writing sends an empty DATA
  // with END_STREAM and then RST_STREAM CANCEL in one write. The proxy ends the target socket (FIN)
  // on the END_STREAM and must still cut it on the RST_STREAM, while that FIN is not yet out. These
  // run muxgate as a child process: when the cut fails, the socket's handle is lost unclosed and the
  // process can no longer exit (it spins in Node's exit cleanup), which would hang this test file.
  for (const client of ['node:http2', 'raw frames'] as const) {
    it(`HTTP/2 CONNECT: END_STREAM then RST_STREAM CANCEL (${client}) cuts the target and ends the tunnel`, async (t) => {
      const target = await tcpTarget(t);
      const m = await muxgateProcess(t, h2ConnectConfig(target.port));
      const authority = `127.0.0.1:${target.port}`;
      let cancel: () => void;
      if (client === 'node:http2') {
        const session = await h2session(t, m.port);
        const tun = h2Tunnel(session, authority);
        assert.equal((await within(tun.response, WAIT, 'the 200'))[':status'], 200);
        tun.stream.write('ping');
        cancel = () => tun.stream.close(http2.constants.NGHTTP2_CANCEL);
      } else {
        const c = await H2FrameClient.connect(m.port);
        t.after(() => c.destroy());
        c.headers(1, [':method', 'CONNECT', ':authority', authority], { endStream: false });
        assert.equal((await c.waitHeaders(1, WAIT)).fields?.find(([n]) => n === ':status')?.[1], '200');
        c.data(1, 'ping');
        cancel = () =>
          c.batch(() => {
            c.data(1, '', { endStream: true });
            c.rstStream(1, CANCEL);
          });
      }
      const conn = await within(target.next(), WAIT, 'the target connection');
      await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
      cancel();

      // Everything is gathered first, so that a failure shows the whole picture.
      const line = await m.waitFor((l) => l.tunnel === 'connect', WAIT);
      // The target may see the FIN first (the END_STREAM); then the connection must be gone: a write
      // from the target fails (the proxy's RST, or its closed socket) instead of vanishing.
      const deadline = Date.now() + 5000;
      while (!conn.closed && Date.now() < deadline) {
        if (conn.ended && !conn.socket.destroyed) conn.socket.write('anyone there?');
        await sleep(100);
      }
      assert.deepEqual(
        {
          log: summary(line),
          targetClosed: conn.closed,
          targetCut: /^(ECONNRESET|EPIPE)$/.test(String(conn.error?.code)),
          socketsToTarget: socketsOf(m.child.pid, target.port),
        },
        {
          log: {
            status: 200,
            end: 'client_reset',
            closed_first: 'client',
            error: undefined,
            bytes_in: 4,
            bytes_out: 0,
          },
          targetClosed: true,
          targetCut: true,
          socketsToTarget: [],
        },
        `target socket events: ${conn.events.join(', ')}; access log: ${JSON.stringify(line)}`,
      );
    });
  }
});

describe('splice: connect idle timeout', () => {
  it('closes both sides of a quiet tunnel (HTTP/1.1 and HTTP/2 clients); bytes keep a tunnel open', async (t) => {
    const IDLE = 1500;
    const target = await tcpTarget(t);
    const p1 = await startForwardProxy(t, { connect: allow(target.port, { idle_timeout: `${IDLE}ms` }) });
    const p2 = await startForwardProxy(t, {
      protocol: 'http2',
      connect: allow(target.port, { idle_timeout: `${IDLE}ms` }),
    });
    const authority = `127.0.0.1:${target.port}`;

    // Three tunnels: quiet over HTTP/1.1, quiet over HTTP/2, and one a byte crosses every 200 ms.
    const quiet = await h1Tunnel(t, p1.port, authority);
    const quietFate = watchSocket(quiet.socket);
    const quietConn = await within(target.next(), WAIT, 'the target connection');
    const session = await h2session(t, p2.port);
    const tun = h2Tunnel(session, authority);
    assert.equal((await within(tun.response, WAIT, 'the 200'))[':status'], 200);
    const streamConn = await within(target.next(), WAIT, 'the target connection of the stream');
    const busy = await h1Tunnel(t, p1.port, authority);
    const busyFate = watchSocket(busy.socket);
    const busyConn = await within(target.next(), WAIT, 'the busy target connection');
    const quietSince = Date.now();

    let ticks = 0;
    let maxGap = 0;
    let last = Date.now();
    const ticker = setInterval(() => {
      const now = Date.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
      busy.write('.');
    }, 200);
    t.after(() => clearInterval(ticker));

    await within(
      Promise.all([quietFate.whenClosed, quietConn.whenClosed, tun.fate, streamConn.whenClosed]),
      IDLE + 8000,
      'the quiet tunnels to close on idle_timeout',
    );
    const took = Date.now() - quietSince;
    assert.ok(took >= IDLE / 2, `closed after ${took} ms, before idle_timeout ${IDLE} ms`);
    // Keep the busy tunnel going past twice the timeout.
    while (Date.now() - quietSince < 2 * IDLE + 500) await sleep(50);
    clearInterval(ticker);
    if (maxGap < IDLE / 2) {
      assert.equal(busyFate.closed, false, 'a tunnel with a byte every 200 ms stays open');
      assert.equal(busyConn.closed, false);
      assert.equal(busyConn.bytes, ticks);
    } else t.diagnostic(`the ticker stalled for ${maxGap} ms: not checking that the busy tunnel stayed open`);
    // Then quiet too: it goes the same way.
    await within(
      Promise.all([busyFate.whenClosed, busyConn.whenClosed]),
      IDLE + 8000,
      'the busy tunnel to close once quiet',
    );

    const fate = await tun.fate;
    assert.notEqual(fate.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the stream was cut, not ended cleanly');
    assert.equal(fate.ended, false);
    const h1Lines = await connectLine(p1, 2);
    const h2Lines = await connectLine(p2, 1);
    for (const l of [...h1Lines, ...h2Lines]) assert.equal(l.end, 'idle_timeout', JSON.stringify(l));
  });
});

describe('splice: backpressure through an HTTP/2 CONNECT stream', () => {
  it('client -> target: a target that stops reading stops the client, then every byte arrives', async (t) => {
    const TOTAL = 16 * MiB;
    const target = await tcpTarget(t, { paused: true });
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    const session = await h2session(t, p.port);
    const tun = h2Tunnel(session, `127.0.0.1:${target.port}`);
    assert.equal((await within(tun.response, WAIT, 'the 200'))[':status'], 200);
    const conn = await within(target.next(), WAIT, 'the target connection');

    const payload = randomBytes(TOTAL);
    // What left the client's HTTP/2 session.
    const writer = writeAll(tun.stream, payload);

    const held = await stalled(writer.sent, 'what the client sent while the target does not read');
    t.diagnostic(`sent while the target was paused: ${(held / MiB).toFixed(2)} MiB of ${TOTAL / MiB} MiB`);
    // What is in flight is the stream window (1 MiB) plus socket buffers, not the whole upload.
    assert.ok(held > 0, 'something was sent');
    assert.ok(held < TOTAL / 2, `the client sent ${held} bytes into a tunnel whose target reads nothing`);
    assert.equal(writer.done(), false);

    conn.socket.resume();
    await within(writer.finished, 60_000, 'the client to write everything');
    await within(conn.whenEnded, 60_000, 'the FIN at the target');
    assert.equal(conn.bytes, TOTAL);
    assert.equal(sha(conn.received()), sha(payload));
    conn.socket.end();
    const fate = await within(tun.fate, WAIT, 'the stream to close');
    assert.equal(fate.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    const [line] = await connectLine(p);
    assert.equal(line?.bytes_in, TOTAL);
    assert.equal(line?.end, 'closed');
  });

  it('target -> client: a client that grants no window stops the target, then every byte arrives', async (t) => {
    const TOTAL = 16 * MiB;
    const target = await tcpTarget(t);
    const p = await startForwardProxy(t, { protocol: 'http2', connect: allow(target.port) });
    let flowing = false;
    const c = await H2FrameClient.connect(p.port, { autoWindowUpdate: () => flowing });
    t.after(() => c.destroy());
    const id = 1;
    c.headers(id, [':method', 'CONNECT', ':authority', `127.0.0.1:${target.port}`], { endStream: false });
    const head = await c.waitHeaders(id, WAIT);
    assert.equal(head.fields?.find(([n]) => n === ':status')?.[1], '200');
    const conn = await within(target.next(), WAIT, 'the target connection');

    const onStream = (f: Frame) => f.streamId === id && f.type === DATA;
    const got = () => c.frames.filter(onStream).reduce((n, f) => n + f.payload.length, 0);
    const payload = randomBytes(TOTAL);
    const writer = writeAll(conn.socket, payload);

    const held = await stalled(writer.sent, 'what the target wrote while the client grants no window');
    t.diagnostic(`written while the client granted no window: ${(held / MiB).toFixed(2)} MiB of ${TOTAL / MiB} MiB`);
    assert.equal(got(), 65_535, 'the client got exactly its initial stream window');
    assert.ok(held < TOTAL / 2, `the target wrote ${held} bytes into a tunnel whose client grants no window`);
    assert.equal(writer.done(), false);

    flowing = true;
    c.windowUpdate(id, got());
    const end = await c.next((f) => f.streamId === id && (f.flags & FLAG_END_STREAM) !== 0, 60_000, 'END_STREAM');
    assert.equal(end.type, DATA);
    await within(writer.finished, WAIT, 'the target to write everything');
    const body = Buffer.concat(c.frames.filter(onStream).map((f) => f.payload));
    assert.equal(body.length, TOTAL);
    assert.equal(sha(body), sha(payload));
    assert.equal(
      c.has((f) => f.type === RST_STREAM),
      false,
      'no RST_STREAM',
    );
    c.data(id, '', { endStream: true });
    await within(conn.whenEnded, WAIT, 'the FIN at the target');
    const [line] = await connectLine(p);
    assert.equal(line?.bytes_out, TOTAL);
    assert.equal(line?.end, 'closed');
  });
});

describe('splice: TLS sockets (SocketSide without direct I/O)', () => {
  const ca = makeCa(dir);
  const leaf = makeCert(dir, ca, ['localhost', '127.0.0.1']);

  interface WssBackend {
    port: number;
    /** Handshakes that came over TLS. */
    encrypted: number;
    closeCodes: number[];
    /** Server-side WebSockets closed so far. */
    closes: number;
  }

  /**
   * A `ws` echo server behind https on 127.0.0.1 port 0 (self-signed chain): every message comes back
   * as sent; a text "close <code> <reason>" makes it close with that code and reason.
   */
  async function wssBackend(t: TestContext): Promise<WssBackend> {
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) });
    const wss = new WebSocketServer({ server, maxPayload: 64 * MiB });
    const b: WssBackend = { port: 0, encrypted: 0, closeCodes: [], closes: 0 };
    wss.on('connection', (w, req) => {
      if ((req.socket as TLSSocket).encrypted === true) b.encrypted++;
      w.on('error', () => {});
      w.on('close', (code: number) => {
        b.closes++;
        b.closeCodes.push(code);
      });
      w.on('message', (data: Buffer, binary: boolean) => {
        const m = binary ? null : /^close (\d+) (.*)$/.exec(data.toString());
        if (m !== null) w.close(Number(m[1]), m[2]);
        else w.send(data, { binary });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    b.port = (server.address() as AddressInfo).port;
    t.after(() => {
      for (const w of wss.clients) w.terminate();
      server.closeAllConnections();
      server.close();
    });
    return b;
  }

  /** A route with WebSockets to the wss backend at `port`, verified against the test CA. */
  const wsConfig = (port: number, idle = '1h') => [
    'listeners:',
    '  - name: web',
    '    address: 127.0.0.1:0',
    `    routes: [{ cluster: up, upgrades: [websocket], upgrade_idle_timeout: ${idle} }]`,
    'clusters:',
    '  up:',
    `    endpoints: ["127.0.0.1:${port}"]`,
    `    tls: { ca: ${JSON.stringify(ca.cert)}, server_name: localhost }`,
  ];

  /** Whether a WebSocket through the proxy at `port` still echoes (the process is alive and serving). */
  async function echoes(port: number): Promise<string> {
    try {
      const ws = await within(wsConnect(`ws://127.0.0.1:${port}/again`), WAIT, 'a new WebSocket');
      ws.send('still there?');
      const m = await within(nextMessage(ws), WAIT, 'its echo');
      ws.terminate();
      return m.data.toString();
    } catch (err) {
      return `failed: ${(err as Error).message}`;
    }
  }

  it('WebSocket to a TLS backend: echoes a 1 MiB message and keeps the close code both ways', async (t) => {
    const b = await wssBackend(t);
    const p = await startProxy({
      upstreams: [`127.0.0.1:${b.port}`],
      routes: [{ cluster: 'up', upgrades: ['websocket'] }],
      cluster: { tls: { ca: ca.cert, server_name: 'localhost' } },
      config: { access_log: { enabled: true } },
    });
    t.after(() => p.close());

    // Backend closes: its code and reason reach the client.
    const ws = await within(wsConnect(`ws://127.0.0.1:${p.port}/echo`), WAIT, 'the WebSocket to open');
    assert.equal(b.encrypted, 1, 'the backend was reached over TLS');
    const big = randomBytes(MiB);
    ws.send(big);
    const back = await within(nextMessage(ws), WAIT, 'the 1 MiB echo');
    assert.equal(back.binary, true);
    assert.equal(back.data.length, big.length);
    assert.equal(sha(back.data), sha(big));
    ws.send('hello');
    assert.equal((await within(nextMessage(ws), WAIT, 'the text echo')).data.toString(), 'hello');
    const byServer = closed(ws);
    ws.send('close 4001 server says bye');
    assert.deepEqual(await within(byServer, WAIT, 'the close'), { code: 4001, reason: 'server says bye' });

    // Client closes: its code reaches the backend.
    const ws2: WebSocket = await within(wsConnect(`ws://127.0.0.1:${p.port}/echo`), WAIT, 'the second WebSocket');
    ws2.send(big);
    assert.equal(sha((await within(nextMessage(ws2), WAIT, 'the second echo')).data), sha(big));
    const byClient = closed(ws2);
    ws2.close(4002, 'client says bye');
    assert.equal((await within(byClient, WAIT, 'the second close')).code, 4002);
    await waitUntil(() => b.closeCodes.includes(4002), 'the backend saw 4002', { timeoutMs: WAIT });
    assert.deepEqual(b.closeCodes.sort(), [4001, 4002]);
    assert.equal(b.encrypted, 2);

    await waitUntil(() => p.accessLog.filter((l) => l.tunnel === 'websocket').length === 2, 'two websocket lines', {
      timeoutMs: WAIT,
    });
    for (const l of p.accessLog.filter((x) => x.tunnel === 'websocket')) {
      assert.equal(l.status, 101);
      assert.equal(l.upstream_protocol, 'HTTP/1.1');
      assert.equal(l.end, 'closed', JSON.stringify(l));
      assert.ok((l.bytes_in as number) > MiB && (l.bytes_out as number) > MiB, JSON.stringify(l));
    }
    assert.equal(p.server.snapshot().listeners[0]?.tunnels_open, 0);
  });

  // Cutting a TLS socket cannot be a TCP RST through its handle: these run muxgate as a child process,
  // since a throw there would end the test process too.

  it('WebSocket to a TLS backend: a client reset closes the backend side; muxgate lives on', async (t) => {
    const b = await wssBackend(t);
    const m = await muxgateProcess(t, wsConfig(b.port));
    const ws = await within(wsConnect(`ws://127.0.0.1:${m.port}/echo`), WAIT, 'the WebSocket to open');
    ws.on('error', () => {});
    ws.send('hi');
    assert.equal((await within(nextMessage(ws), WAIT, 'the echo')).data.toString(), 'hi');
    (ws as unknown as { _socket: net.Socket })._socket.resetAndDestroy();

    await waitUntil(() => b.closes === 1 || m.child.exitCode !== null, 'the backend side to close', {
      timeoutMs: WAIT,
    });
    // Read before the next WebSocket, whose own close the backend records too.
    const backendCloseCodes = [...b.closeCodes];
    const nextWebSocket = await echoes(m.port);
    // The access log is written in batches (flush_interval, 1 s): wait for the tunnel's line.
    await waitUntil(
      () => m.lines.some((l) => l.tunnel === 'websocket') || m.child.exitCode !== null,
      'the websocket line',
      { timeoutMs: WAIT },
    );
    const line = m.lines.find((l) => l.tunnel === 'websocket');
    assert.deepEqual(
      {
        exitCode: await exitCode(m),
        backendCloseCodes,
        end: line?.end,
        closedFirst: line?.closed_first,
        nextWebSocket,
      },
      {
        exitCode: null,
        backendCloseCodes: [1006],
        end: 'client_reset',
        closedFirst: 'client',
        nextWebSocket: 'still there?',
      },
      `muxgate stderr: ${m.stderrText()}`,
    );
  });

  it('WebSocket to a TLS backend: upgrade_idle_timeout closes both sides; muxgate lives on', async (t) => {
    const IDLE = 1500;
    const b = await wssBackend(t);
    const m = await muxgateProcess(t, wsConfig(b.port, `${IDLE}ms`));
    const ws = await within(wsConnect(`ws://127.0.0.1:${m.port}/echo`), WAIT, 'the WebSocket to open');
    ws.on('error', () => {});
    const clientClosed = closed(ws);
    ws.send('hi');
    assert.equal((await within(nextMessage(ws), WAIT, 'the echo')).data.toString(), 'hi');
    const quietSince = Date.now();
    const code = await within(clientClosed, IDLE + 8000, 'the client side to close on upgrade_idle_timeout');
    const took = Date.now() - quietSince;
    assert.ok(took >= IDLE / 2, `closed after ${took} ms, before upgrade_idle_timeout ${IDLE} ms`);
    await waitUntil(() => b.closes === 1, 'the backend side to close', { timeoutMs: WAIT });
    await waitUntil(
      () => m.lines.some((l) => l.tunnel === 'websocket') || m.child.exitCode !== null,
      'the websocket line',
      { timeoutMs: WAIT },
    );
    const nextWebSocket = await echoes(m.port);
    assert.deepEqual(
      {
        exitCode: await exitCode(m),
        clientCode: code.code,
        end: m.lines.find((l) => l.tunnel === 'websocket')?.end,
        nextWebSocket,
      },
      { exitCode: null, clientCode: 1006, end: 'idle_timeout', nextWebSocket: 'still there?' },
      `muxgate stderr: ${m.stderrText()}`,
    );
  });

  it('CONNECT on a TLS listener: a target reset resets the client; muxgate lives on', async (t) => {
    const target = await tcpTarget(t);
    const m = await muxgateProcess(t, [
      'listeners:',
      '  - name: fwd',
      '    address: 127.0.0.1:0',
      `    tls: { cert: ${JSON.stringify(leaf.cert)}, key: ${JSON.stringify(leaf.key)} }`,
      '    routes: []',
      '    connect:',
      `      allow: [{ cidr: 127.0.0.1/32, ports: [${target.port}] }]`,
    ]);
    /** A CONNECT over TLS to the target; resolves with the socket after the 200 head. */
    const tunnel = async (): Promise<SocketReader> => {
      const s = tlsConnect({ host: '127.0.0.1', port: m.port, ca: readFileSync(ca.cert), servername: 'localhost' });
      t.after(() => s.destroy());
      await within(once(s, 'secureConnect'), WAIT, 'the TLS handshake');
      const c = new SocketReader(s);
      c.write(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n\r\n`);
      const head = (await c.readUntil('\r\n\r\n', 'the CONNECT response head', WAIT)).toString('latin1');
      assert.match(head, /^HTTP\/1\.1 200 /);
      return c;
    };
    const c = await tunnel();
    const clientFate = watchSocket(c.socket);
    const conn = await within(target.next(), WAIT, 'the target connection');
    c.write('ping');
    await waitUntil(() => conn.bytes === 4, 'ping at the target', { timeoutMs: WAIT });
    conn.socket.write('pong');
    assert.equal((await c.readExactly(4, 'pong', WAIT)).toString(), 'pong');
    conn.socket.resetAndDestroy();
    await within(clientFate.whenClosed, WAIT, 'the client connection to close');

    let again: string;
    try {
      const c2 = await tunnel();
      const conn2 = await within(target.next(), WAIT, 'the second target connection');
      c2.write('again');
      await waitUntil(() => conn2.bytes === 5, 'the second tunnel', { timeoutMs: WAIT });
      again = conn2.received().toString();
    } catch (err) {
      again = `failed: ${(err as Error).message}`;
    }
    const bytesAfterPong = (await c.readToEnd(1)).toString('latin1');
    assert.deepEqual(
      {
        exitCode: await exitCode(m),
        // How a TLS client connection is cut (an error, or a close without close_notify) is not
        // checked here: only that nothing follows the target's bytes and muxgate stays up.
        bytesAfterPong,
        nextTunnel: again,
      },
      { exitCode: null, bytesAfterPong: '', nextTunnel: 'again' },
      `client socket events: ${clientFate.events.join(', ')}; muxgate stderr: ${m.stderrText()}`,
    );
  });
});
