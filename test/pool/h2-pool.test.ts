/**
 * The HTTP/2 upstream pool against real node:http2 servers on 127.0.0.1: how streams pack into
 * sessions under each side's concurrency limit, the pending queue, GOAWAY and REFUSED_STREAM
 * (which streams may be retried), PING keepalive, connect failures, idle and budget retirement,
 * flow control with 10 MB bodies, and TLS with ALPN fallback to HTTP/1.1.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import type { ErrorCode } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/log.ts';
import { errorName } from '../../src/http2/frame.ts';
import type { Http2Stream, StreamSink } from '../../src/http2/stream.ts';
import type { ConnectObserver } from '../../src/pool/upstream-pool.ts';
import { type H2Options, H2Pool, type H2PoolOptions } from '../../src/pool/h2-pool.ts';
import type { H2UpstreamConnection } from '../../src/pool/h2-upstream-connection.ts';
import type { PoolWaiter } from '../../src/pool/pool-waiter.ts';
import type { UpstreamTls } from '../../src/pool/upstream-tls.ts';
import { Dialer } from '../../src/ports/dialer.ts';
import { PortAllocator } from '../../src/ports/port-allocator.ts';
import { makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { echoPath, type H2Backend, type H2BackendOptions, h2cBackend } from '../helpers/h2-backend.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } =
  http2.constants;

const silentLog = { warn() {}, error() {}, info() {}, debug() {} } as unknown as Logger;

function newDialer(): Dialer {
  return new Dialer(new PortAllocator(silentLog, () => ({ first: 32768, last: 60999 })), null, 'h2-test', 0.8);
}

/** Source ports the dialer still counts as held (every closed socket must give its port back). */
function portsInUse(d: Dialer): number {
  return d.allocator.budgets(performance.now()).reduce((n, b) => n + b.in_use, 0);
}

interface Over extends Partial<Omit<H2PoolOptions, 'h2'>> {
  h2?: Partial<H2Options>;
}

function options(over: Over = {}): H2PoolOptions {
  const { h2, ...rest } = over;
  return {
    maxConnections: 100,
    maxPending: 1000,
    pendingTimeoutMs: 10_000,
    maxRequestsPerConnection: 0,
    idleTimeoutMs: 60_000,
    connectTimeoutMs: 2000,
    directIo: true,
    tls: null,
    alpn: ['h2'],
    host: '127.0.0.1',
    ...rest,
    h2: {
      maxConcurrentStreams: 100,
      initialWindowSize: 1 << 20,
      connectionWindowSize: 16 << 20,
      maxHeaderListSize: 256 * 1024,
      stallTimeoutMs: 30_000,
      pingIntervalMs: 0,
      pingTimeoutMs: 1000,
      ...h2,
    },
  };
}

class CountingObserver implements ConnectObserver {
  ok = 0;
  failed = 0;
  connectSucceeded(): void {
    this.ok++;
  }
  connectFailed(): void {
    this.failed++;
  }
}

/** A pool on `port` that the test closes (with its dialer's ports checked) when it ends. */
function poolFor(
  t: TestContext,
  port: number,
  over: Over = {},
): { pool: H2Pool; observer: CountingObserver; dialer: Dialer } {
  const dialer = newDialer();
  const observer = new CountingObserver();
  const pool = new H2Pool(`127.0.0.1:${port}`, '127.0.0.1', port, options(over), dialer, observer);
  t.after(() => pool.close());
  return { pool, observer, dialer };
}

async function backendFor(t: TestContext, opts: H2BackendOptions = {}): Promise<H2Backend> {
  const b = await h2cBackend(opts);
  t.after(() => b.close());
  return b;
}

interface Result {
  status: number;
  body: Buffer;
  /** Pool error code, or the stream's error code (ERR_HTTP2_...). */
  error: string | null;
  refused: boolean;
  rstCode: number;
  streamId: number;
  session: H2UpstreamConnection | null;
}

/** One request as the proxy makes it: a PoolWaiter that opens its stream when a slot is reserved. */
class Req implements PoolWaiter {
  queuedAt = 0;
  queuePrev: PoolWaiter | null = null;
  queueNext: PoolWaiter | null = null;
  queued = false;
  queueOwner: object | null = null;
  readonly path: string;
  readonly body: Buffer | null;
  readonly done: Promise<Result>;
  session: H2UpstreamConnection | null = null;
  stream: Http2Stream | null = null;
  private resolve: (r: Result) => void = () => {};

  constructor(path: string, body: Buffer | null = null) {
    this.path = path;
    this.body = body;
    this.done = new Promise((r) => {
      this.resolve = r;
    });
  }

  onPoolReady(): void {
    throw new Error('an H2Pool must never lease an HTTP/1.1 connection');
  }

  onSessionReady(session: H2UpstreamConnection): void {
    this.session = session;
    const post = this.body !== null;
    let status = 0;
    let error: string | null = null;
    const chunks: Buffer[] = [];
    const finish = (): void => {
      const st = stream!;
      this.resolve({
        status,
        body: Buffer.concat(chunks),
        error,
        refused: session.wasRefused(st),
        rstCode: st.resetCode,
        streamId: st.id,
        session,
      });
    };
    const sink: StreamSink = {
      onHeaders(fields, endStream) {
        const i = fields.indexOf(':status');
        if (i >= 0 && i % 2 === 0) status = Number(fields[i + 1]);
        if (endStream) queueMicrotask(finish);
      },
      onData(buf, start, end) {
        chunks.push(Buffer.from(buf.subarray(start, end)));
      },
      onEnd() {
        queueMicrotask(finish);
      },
      onReset(code) {
        error = code === 0 ? null : errorName(code);
        queueMicrotask(finish);
      },
      onWritable() {},
    };
    const fields = [':method', post ? 'POST' : 'GET', ':scheme', 'http', ':authority', 'localhost', ':path', this.path];
    const stream = session.request(fields, !post, sink);
    if (stream === null) throw new Error('no stream');
    this.stream = stream;
    if (this.body !== null) {
      stream.write(this.body);
      stream.end();
    }
  }

  onPoolError(code: ErrorCode): void {
    this.resolve({
      status: 0,
      body: Buffer.alloc(0),
      error: code,
      refused: false,
      rstCode: -1,
      streamId: -1,
      session: null,
    });
  }
}

function send(
  pool: H2Pool,
  path: string,
  body: Buffer | null = null,
  avoid: H2UpstreamConnection | null = null,
): Promise<Result> {
  const r = new Req(path, body);
  pool.acquire(r, avoid);
  return r.done;
}

/** Sends again, elsewhere, while the upstream reports the stream refused (as the proxy does). */
async function sendRetrying(pool: H2Pool, path: string): Promise<{ result: Result; attempts: number }> {
  let avoid: H2UpstreamConnection | null = null;
  for (let attempts = 1; ; attempts++) {
    const result = await send(pool, path, null, avoid);
    if (!result.refused || attempts === 5) return { result, attempts };
    avoid = result.session;
  }
}

/** Server streams parked by a handler until the test releases them. */
function holder(): {
  onStream: H2BackendOptions['onStream'];
  held: [http2.ServerHttp2Stream, http2.IncomingHttpHeaders][];
  releaseAll(): void;
} {
  const held: [http2.ServerHttp2Stream, http2.IncomingHttpHeaders][] = [];
  return {
    held,
    onStream: (stream, headers) => {
      held.push([stream, headers]);
    },
    releaseAll() {
      for (const [s, h] of held.splice(0)) if (!s.destroyed) echoPath(s, h, s.session as http2.ServerHttp2Session);
    },
  };
}

describe('streams pack into sessions', () => {
  test('250 concurrent, peer allows 10 per session: 25 connections, never more than 10 streams on one', {
    timeout: 20_000,
  }, async (t) => {
    const N = 250;
    const hold = holder();
    const backend = await backendFor(t, {
      settings: { maxConcurrentStreams: 10 },
      onStream: (stream, headers, session) => {
        hold.onStream?.(stream, headers, session);
        // Answer only once every request is in: all 25 sessions must be open at the same time.
        if (hold.held.length === N) hold.releaseAll();
      },
    });
    const { pool, observer, dialer } = poolFor(t, backend.port, { h2: { maxConcurrentStreams: 100 } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) => send(pool, `/r${i}`)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.error, null, `request ${i}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), `/r${i}`);
    }
    assert.equal(backend.accepted, Math.ceil(N / 10));
    assert.equal(pool.connectsTotal, 25);
    assert.equal(observer.ok, 25);
    assert.ok(backend.peakStreamsPerSession <= 10, `peak ${backend.peakStreamsPerSession} streams on one session`);
    assert.equal(pool.streamsTotal, N);
    assert.equal(pool.streamsActive, 0);
    assert.equal(pool.sessions, 25);
    pool.close();
    await waitUntil(() => backend.open === 0 && portsInUse(dialer) === 0, 'every session closed, ports back');
  });

  test('local cap 50 under a peer allowing 1000: 120 concurrent use 3 connections', { timeout: 15_000 }, async (t) => {
    const N = 120;
    const hold = holder();
    const backend = await backendFor(t, {
      settings: { maxConcurrentStreams: 1000 },
      onStream: (stream, headers, session) => {
        hold.onStream?.(stream, headers, session);
        if (hold.held.length === N) hold.releaseAll();
      },
    });
    const { pool } = poolFor(t, backend.port, { h2: { maxConcurrentStreams: 50 } });
    const results = await Promise.all(Array.from({ length: N }, (_, i) => send(pool, `/r${i}`)));
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(backend.accepted, 3);
    assert.ok(backend.peakStreamsPerSession <= 50);
  });

  test('after a burst, streams pack into the oldest session and the surplus one idles out', {
    timeout: 10_000,
  }, async (t) => {
    const hold = holder();
    let holding = true;
    const backend = await backendFor(t, {
      settings: { maxConcurrentStreams: 2 },
      onStream: (stream, headers, session) => {
        if (holding) hold.onStream?.(stream, headers, session);
        else echoPath(stream, headers, session);
      },
    });
    const { pool } = poolFor(t, backend.port, { idleTimeoutMs: 400 });
    const burst = Array.from({ length: 4 }, (_, i) => send(pool, `/burst${i}`));
    await waitUntil(() => hold.held.length === 4, 'four streams over two sessions');
    holding = false;
    hold.releaseAll();
    const sessions = new Set((await Promise.all(burst)).map((r) => r.session));
    assert.equal(sessions.size, 2);
    const [oldest] = sessions;
    // Two at a time fit in the first session; the second one gets nothing and closes when idle.
    for (let i = 0; i < 8; i++) {
      const pair = await Promise.all([send(pool, `/a${i}`), send(pool, `/b${i}`)]);
      for (const r of pair) assert.equal(r.session, oldest);
    }
    // A stream held open on the oldest session keeps it busy while the other one idles out.
    holding = true;
    const held = send(pool, '/held');
    await waitUntil(() => hold.held.length === 1, 'a stream held on the oldest session');
    await waitUntil(() => backend.open === 1 && pool.sessions === 1, 'the surplus session closed');
    hold.releaseAll();
    assert.equal((await held).session, oldest);
    assert.equal(backend.accepted, 2);
  });

  test('the peer lowering SETTINGS_MAX_CONCURRENT_STREAMS later applies to new streams', {
    timeout: 10_000,
  }, async (t) => {
    const hold = holder();
    let lowered = false;
    const backend = await backendFor(t, {
      settings: { maxConcurrentStreams: 10 },
      onStream: (stream, headers, session) => {
        if (!lowered) {
          lowered = true;
          session.settings({ maxConcurrentStreams: 2 });
          echoPath(stream, headers, session);
          return;
        }
        hold.onStream?.(stream, headers, session);
      },
    });
    const { pool } = poolFor(t, backend.port, { maxConnections: 1 });
    assert.equal((await send(pool, '/first')).status, 200);
    const all = Array.from({ length: 6 }, (_, i) => send(pool, `/r${i}`));
    await waitUntil(() => hold.held.length === 2 && pool.pendingCount === 4, '2 streams open, 4 queued');
    assert.equal(backend.openStreams, 2);
    // Each release frees two slots at once; the queue refills them two at a time.
    while (hold.held.length > 0) {
      hold.releaseAll();
      await waitUntil(() => hold.held.length > 0 || pool.pendingCount === 0, 'the next pair dispatched');
      assert.ok(backend.openStreams <= 2);
    }
    assert.ok((await Promise.all(all)).every((r) => r.status === 200));
    assert.equal(backend.accepted, 1);
  });
});

describe('pending queue', () => {
  test('1 session, peer allows 2, max_pending 3: 2 in flight, 3 queued, the 6th gets pool_queue_full', {
    timeout: 10_000,
  }, async (t) => {
    const hold = holder();
    const backend = await backendFor(t, { settings: { maxConcurrentStreams: 2 }, onStream: hold.onStream });
    const { pool } = poolFor(t, backend.port, { maxConnections: 1, maxPending: 3 });
    const five = Array.from({ length: 5 }, (_, i) => send(pool, `/r${i}`));
    await waitUntil(() => hold.held.length === 2, 'two streams at the backend');
    assert.equal(pool.pendingCount, 3);
    assert.equal(pool.streamsActive, 2);
    const sixth = await send(pool, '/r5');
    assert.equal(sixth.error, 'pool_queue_full');
    assert.equal(pool.queueFull, 1);
    // Streams finish two at a time; the queue drains in order through the same session.
    const served: string[] = [];
    while (served.length < 5) {
      const batch = hold.held.map(([, h]) => String(h[':path']));
      served.push(...batch);
      hold.releaseAll();
      if (served.length < 5) await waitUntil(() => hold.held.length > 0, 'next streams');
    }
    assert.deepEqual(served, ['/r0', '/r1', '/r2', '/r3', '/r4']);
    assert.ok((await Promise.all(five)).every((r) => r.status === 200));
    assert.equal(backend.accepted, 1);
  });

  test('pending_timeout: a waiter queued behind a slow stream gets pool_queue_timeout', {
    timeout: 10_000,
  }, async (t) => {
    const hold = holder();
    const backend = await backendFor(t, { settings: { maxConcurrentStreams: 1 }, onStream: hold.onStream });
    const { pool } = poolFor(t, backend.port, { maxConnections: 1, pendingTimeoutMs: 200 });
    const first = send(pool, '/slow');
    await waitUntil(() => hold.held.length === 1, 'the first stream at the backend');
    const started = performance.now();
    const second = await send(pool, '/queued');
    const waited = performance.now() - started;
    assert.equal(second.error, 'pool_queue_timeout');
    assert.ok(waited >= 190 && waited < 1500, `waited ${waited} ms`);
    assert.equal(pool.queueTimeouts, 1);
    hold.releaseAll();
    assert.equal((await first).status, 200);
  });

  test('cancel drops a queued waiter; close fails the queue with shutting_down', { timeout: 10_000 }, async (t) => {
    const hold = holder();
    const backend = await backendFor(t, { settings: { maxConcurrentStreams: 1 }, onStream: hold.onStream });
    const { pool } = poolFor(t, backend.port, { maxConnections: 1 });
    const first = send(pool, '/a');
    const gone = new Req('/gone');
    pool.acquire(gone);
    const last = send(pool, '/b');
    await waitUntil(() => hold.held.length === 1, 'the first stream at the backend');
    assert.equal(pool.pendingCount, 2);
    pool.cancel(gone);
    assert.equal(pool.pendingCount, 1);
    pool.close();
    assert.equal((await last).error, 'shutting_down');
    assert.equal((await send(pool, '/late')).error, 'shutting_down');
    // The stream in flight still completes: close is a GOAWAY, not a reset.
    hold.releaseAll();
    assert.equal((await first).status, 200);
    assert.equal(gone.queued, false);
  });
});

describe('GOAWAY and REFUSED_STREAM', () => {
  /** A backend whose first session sends GOAWAY once 10 streams are open, last-stream-id = the 5th. */
  async function goawayBackend(t: TestContext, code: number) {
    const first: http2.ServerHttp2Stream[] = [];
    let firstSession: http2.ServerHttp2Session | null = null;
    let last = -1;
    const backend = await backendFor(t, {
      onStream: (stream, headers, session) => {
        firstSession ??= session;
        if (session !== firstSession) {
          echoPath(stream, headers, session);
          return;
        }
        first.push(stream);
        if (first.length < 10) return;
        last = first[4]?.id ?? -1;
        session.goaway(code, last);
        // Streams at or below the last id were taken: answer them after the GOAWAY went out.
        setImmediate(() => {
          for (const s of first) if (!s.destroyed && (s.id ?? 0) <= last) echoPath(s, { ':path': 'kept' }, session);
        });
      },
    });
    return { backend, lastId: () => last };
  }

  test('NO_ERROR GOAWAY: streams up to last-stream-id finish, the others are refused and retried elsewhere', {
    timeout: 10_000,
  }, async (t) => {
    const { backend, lastId } = await goawayBackend(t, NGHTTP2_NO_ERROR);
    const { pool } = poolFor(t, backend.port);
    const firstTries = Array.from({ length: 10 }, (_, i) => send(pool, `/r${i}`));
    const results = await Promise.all(firstTries);
    const kept = results.filter((r) => r.streamId <= lastId());
    const refused = results.filter((r) => r.streamId > lastId());
    assert.equal(kept.length, 5);
    assert.equal(refused.length, 5);
    for (const r of kept) {
      assert.equal(r.status, 200);
      assert.equal(r.refused, false);
    }
    for (const r of refused) {
      assert.equal(r.status, 0);
      assert.equal(r.refused, true);
      // The engine closes them locally as REFUSED_STREAM (RFC 9113 §6.8: never processed).
      assert.equal(r.rstCode, NGHTTP2_REFUSED_STREAM);
      assert.equal(r.error, 'REFUSED_STREAM');
    }
    assert.equal(pool.goaways, 1);
    assert.equal(pool.refusedStreams, 5);
    // The retries go to a new session (the old one takes nothing after GOAWAY) and all succeed.
    const retried = await Promise.all(refused.map((r) => send(pool, '/again', null, r.session)));
    assert.ok(retried.every((r) => r.status === 200 && r.session !== refused[0]?.session));
    assert.equal(backend.accepted, 2);
    assert.equal(pool.goaways, 1);
  });

  test('a retry loop gets every request through a GOAWAY mid-load', { timeout: 10_000 }, async (t) => {
    const { backend } = await goawayBackend(t, NGHTTP2_NO_ERROR);
    // One session allowed: the draining one does not count, so the retries get a new one at once.
    const { pool } = poolFor(t, backend.port, { maxConnections: 1 });
    const done = await Promise.all(Array.from({ length: 10 }, (_, i) => sendRetrying(pool, `/r${i}`)));
    assert.ok(done.every((d) => d.result.status === 200));
    assert.equal(done.filter((d) => d.attempts === 2).length, 5);
    assert.equal(pool.goaways, 1);
    assert.equal(backend.accepted, 2);
  });

  test('GOAWAY with an error code: streams above last-stream-id are refused, the others may still finish', {
    timeout: 10_000,
  }, async (t) => {
    const { backend, lastId } = await goawayBackend(t, NGHTTP2_ENHANCE_YOUR_CALM);
    const { pool } = poolFor(t, backend.port);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => send(pool, `/r${i}`)));
    for (const r of results) {
      // Only the id tells a refused stream (safe to send again) from one the upstream processed.
      assert.equal(r.refused, r.streamId > lastId(), `stream ${r.streamId}, last ${lastId()}`);
      if (r.refused) assert.equal(r.rstCode, NGHTTP2_REFUSED_STREAM);
      // Node's server answers the kept ones before it closes; either way none is reported refused.
      else assert.ok(r.status === 200 || r.error !== null, `stream ${r.streamId}: ${r.status} ${r.error}`);
    }
    assert.equal(results.filter((r) => r.refused).length, 5);
    assert.equal(pool.goaways, 1);
    await waitUntil(() => pool.sessions === 0, 'the destroyed session left the pool');
    assert.equal((await send(pool, '/after')).status, 200);
  });

  test('RST_STREAM REFUSED_STREAM is refused; CANCEL or INTERNAL_ERROR after headers is not', {
    timeout: 10_000,
  }, async (t) => {
    const backend = await backendFor(t, {
      onStream: (stream, headers, session) => {
        const path = String(headers[':path']);
        if (path === '/refuse') stream.close(NGHTTP2_REFUSED_STREAM);
        else if (path === '/cancel' || path === '/internal' || path === '/refuse-late') {
          // waitForTrailers holds END_STREAM back: otherwise Node ends the stream cleanly before the
          // RST_STREAM goes out and the client never sees the reset.
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.write('partial');
          const code: Record<string, number> = { '/cancel': NGHTTP2_CANCEL, '/internal': NGHTTP2_INTERNAL_ERROR };
          setImmediate(() => stream.close(code[path] ?? NGHTTP2_REFUSED_STREAM));
        } else echoPath(stream, headers, session);
      },
    });
    const { pool } = poolFor(t, backend.port);
    const [refuse, cancel, internal, late, ok] = await Promise.all(
      ['/refuse', '/cancel', '/internal', '/refuse-late', '/ok'].map((p) => send(pool, p)),
    );
    assert.equal(refuse?.refused, true);
    assert.equal(refuse?.rstCode, NGHTTP2_REFUSED_STREAM);
    assert.equal(cancel?.refused, false);
    assert.equal(cancel?.rstCode, NGHTTP2_CANCEL);
    assert.equal(internal?.refused, false);
    assert.equal(internal?.rstCode, NGHTTP2_INTERNAL_ERROR);
    // REFUSED_STREAM after response headers is a peer bug: the request was processed, never retry it.
    assert.equal(late?.status, 200);
    assert.equal(late?.refused, false);
    assert.equal(ok?.status, 200);
    assert.equal(pool.refusedStreams, 1);
    // Resets end streams, not the session: one connection throughout, all slots back.
    assert.equal(backend.accepted, 1);
    assert.equal(pool.streamsActive, 0);
    // A refused request retried with avoid=session may go back to the only session when no other is allowed.
    const { pool: single } = poolFor(t, backend.port, { maxConnections: 1 });
    const r1 = await send(single, '/refuse');
    assert.equal(r1.refused, true);
    const r2 = await send(single, '/ok', null, r1.session);
    assert.equal(r2.status, 200);
    assert.equal(r2.session, r1.session);
  });
});

/** A TCP relay to `port` that can be told to swallow everything, both ways, with the sockets left open. */
async function relay(t: TestContext, port: number): Promise<{ port: number; frozen: boolean }> {
  const state = { port: 0, frozen: false };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    down.on('data', (d) => {
      if (!state.frozen) up.write(d);
    });
    up.on('data', (d) => {
      if (!state.frozen) down.write(d);
    });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as AddressInfo).port;
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return state;
}

describe('PING keepalive', () => {
  test('a frozen peer: no PING ack within the timeout destroys the session and its streams', {
    timeout: 10_000,
  }, async (t) => {
    const INTERVAL = 200;
    const TIMEOUT = 300;
    const hold = holder();
    const backend = await backendFor(t, {
      onStream: (stream, headers, session) => {
        if (headers[':path'] === '/hang') hold.onStream?.(stream, headers, session);
        else echoPath(stream, headers, session);
      },
    });
    const r = await relay(t, backend.port);
    const { pool, dialer } = poolFor(t, r.port, { h2: { pingIntervalMs: INTERVAL, pingTimeoutMs: TIMEOUT } });
    assert.equal((await send(pool, '/a')).status, 200);
    const hanging = send(pool, '/hang');
    await waitUntil(() => hold.held.length === 1, 'the hanging stream at the backend');
    r.frozen = true;
    const frozenAt = performance.now();
    await waitUntil(() => pool.sessions === 0, 'the session dropped', { timeoutMs: 5000 });
    const took = performance.now() - frozenAt;
    assert.equal(pool.pingTimeouts, 1);
    // Silence noticed within about an interval (+ a quarter interval of sampling, + sweeper ticks),
    // then the timeout.
    assert.ok(took >= TIMEOUT && took < INTERVAL + TIMEOUT + 500, `took ${took} ms`);
    const h = await hanging;
    assert.equal(h.status, 0);
    // The dead connection ends its streams (CANCEL); pingTimeouts above says why.
    assert.equal(h.error, 'CANCEL');
    assert.equal(h.refused, false);
    assert.equal(pool.streamsActive, 0);
    assert.equal(portsInUse(dialer), 0);
    // The next request opens a new session (through the thawed relay).
    r.frozen = false;
    assert.equal((await send(pool, '/b')).status, 200);
    assert.equal(pool.connectsTotal, 2);
  });

  test('a healthy idle session answers its PINGs and stays open across several intervals', {
    timeout: 10_000,
  }, async (t) => {
    const INTERVAL = 150;
    const backend = await backendFor(t);
    const { pool } = poolFor(t, backend.port, { h2: { pingIntervalMs: INTERVAL, pingTimeoutMs: 300 } });
    assert.equal((await send(pool, '/a')).status, 200);
    await sleep(INTERVAL * 6);
    assert.ok(backend.pings >= 3, `${backend.pings} pings`);
    assert.equal(pool.pingTimeouts, 0);
    assert.equal(pool.sessions, 1);
    assert.equal((await send(pool, '/b')).status, 200);
    assert.equal(backend.accepted, 1);
  });
});

describe('connect failures', () => {
  test('nothing listening: upstream_connect_failed for every waiter the connect covered', {
    timeout: 10_000,
  }, async (t) => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const { pool, observer, dialer } = poolFor(t, port);
    const results = await Promise.all([send(pool, '/a'), send(pool, '/b'), send(pool, '/c')]);
    assert.deepEqual(
      results.map((r) => r.error),
      ['upstream_connect_failed', 'upstream_connect_failed', 'upstream_connect_failed'],
    );
    assert.equal(pool.connectsTotal, 1);
    assert.equal(pool.connectFailures, 1);
    assert.equal(observer.failed, 1);
    assert.equal(observer.ok, 0);
    assert.equal(pool.pendingCount, 0);
    assert.equal(pool.connecting, 0);
    await waitUntil(() => portsInUse(dialer) === 0, 'the port given back');
  });

  test('a listener that never sends SETTINGS: upstream_connect_failed after connect_timeout', {
    timeout: 10_000,
  }, async (t) => {
    const accepted = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      accepted.add(s);
      s.resume(); // read (and drop) the client preface, so the client's close is noticed
      s.on('error', () => {});
      s.on('close', () => accepted.delete(s));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    t.after(
      () =>
        new Promise<void>((r) => {
          for (const s of accepted) s.destroy();
          silent.close(() => r());
        }),
    );
    const { pool, observer, dialer } = poolFor(t, (silent.address() as AddressInfo).port, { connectTimeoutMs: 300 });
    const started = performance.now();
    const r = await send(pool, '/a');
    const took = performance.now() - started;
    assert.equal(r.error, 'upstream_connect_failed');
    assert.ok(took >= 290 && took < 2000, `took ${took} ms`);
    assert.equal(observer.failed, 1);
    await waitUntil(() => accepted.size === 0 && portsInUse(dialer) === 0, 'the silent connection closed');
  });
});

describe('session lifetime', () => {
  test('a session without streams for idle_timeout is closed', { timeout: 15_000 }, async (t) => {
    const backend = await backendFor(t);
    const { pool, dialer } = poolFor(t, backend.port, { idleTimeoutMs: 1000 });
    // Taken before the request: the idle clock starts after it, so the close cannot come sooner.
    const before = performance.now();
    assert.equal((await send(pool, '/a')).status, 200);
    // Both sides: the backend sees the close first, the pool a moment later (its own 'close' event).
    await waitUntil(() => backend.open === 0 && pool.sessions === 0, 'the idle session closed', { timeoutMs: 10_000 });
    const took = performance.now() - before;
    // The sweeper checks every 100 ms; the upper bound only says "it did close", with room for a loaded machine.
    assert.ok(took >= 1000 && took < 8000, `closed ${took} ms after the request started`);
    assert.equal(pool.sessions, 0);
    assert.equal(pool.goaways, 0, 'our own GOAWAY, and the answer to it, are not counted');
    assert.equal(portsInUse(dialer), 0);
  });

  test('a connection about to run out of stream ids retires and a new one takes the next request', {
    timeout: 10_000,
  }, async (t) => {
    const backend = await backendFor(t);
    const { pool } = poolFor(t, backend.port);
    const first = await send(pool, '/a');
    assert.equal(first.status, 200);
    // Jump the connection to its last client stream id (2^31 - 1) instead of sending 2^30 requests.
    const conn = (first.session as unknown as { conn: { nextStreamId: number } }).conn;
    conn.nextStreamId = 2 ** 31 - 1;
    const last = await send(pool, '/b');
    assert.equal(last.status, 200);
    assert.equal(last.streamId, 2 ** 31 - 1);
    assert.equal(last.session, first.session);
    const next = await send(pool, '/c');
    assert.equal(next.status, 200);
    assert.notEqual(next.session, first.session, 'a new connection');
    assert.equal(next.streamId, 1);
    assert.equal(backend.accepted, 2);
    await waitUntil(() => pool.sessions === 1, 'the exhausted connection closed');
  });

  test('max_requests_per_connection 3: 7 sequential requests use 3 connections', { timeout: 10_000 }, async (t) => {
    const backend = await backendFor(t);
    const { pool } = poolFor(t, backend.port, { maxRequestsPerConnection: 3 });
    for (let i = 0; i < 7; i++) assert.equal((await send(pool, `/r${i}`)).status, 200);
    assert.equal(backend.accepted, 3);
    // The retired sessions closed once their last stream ended.
    await waitUntil(() => backend.open === 1, 'only the last session open');
  });

  test('releaseSlot gives an unused slot back', { timeout: 10_000 }, async (t) => {
    const backend = await backendFor(t, { settings: { maxConcurrentStreams: 1 } });
    const { pool } = poolFor(t, backend.port, { maxConnections: 1 });
    assert.equal((await send(pool, '/warm')).status, 200);
    let reserved: H2UpstreamConnection | null = null;
    const quitter: PoolWaiter = {
      queuedAt: 0,
      queuePrev: null,
      queueNext: null,
      queued: false,
      queueOwner: null,
      onPoolReady: () => {
        throw new Error('unexpected');
      },
      onSessionReady: (s) => {
        reserved = s;
      },
      onPoolError: () => {},
    };
    pool.acquire(quitter);
    assert.ok(reserved !== null);
    assert.equal(pool.streamsActive, 1);
    const next = send(pool, '/next');
    assert.equal(pool.pendingCount, 1);
    (reserved as H2UpstreamConnection).releaseSlot();
    (reserved as H2UpstreamConnection).releaseSlot(); // a second release must not free a slot it does not hold
    assert.equal((await next).status, 200);
    assert.equal(pool.streamsActive, 0);
  });
});

describe('flow control', () => {
  const BIG = randomBytes(10 * 1024 * 1024);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  test('a 10 MB response body and a 10 MB request body complete', { timeout: 15_000 }, async (t) => {
    const backend = await backendFor(t, {
      onStream: (stream, headers) => {
        if (headers[':path'] === '/big') {
          stream.respond({ ':status': 200 });
          stream.end(BIG);
          return;
        }
        const h = createHash('sha256');
        let n = 0;
        stream.on('data', (c: Buffer) => {
          h.update(c);
          n += c.length;
        });
        stream.on('end', () => {
          stream.respond({ ':status': 200 });
          stream.end(`${n} ${h.digest('hex')}`);
        });
      },
    });
    const { pool } = poolFor(t, backend.port);
    const down = await send(pool, '/big');
    assert.equal(down.status, 200);
    assert.equal(down.body.length, BIG.length);
    assert.equal(sha(down.body), sha(BIG));
    const up = await send(pool, '/upload', BIG);
    assert.equal(up.status, 200);
    assert.equal(up.body.toString(), `${BIG.length} ${sha(BIG)}`);
    assert.equal(backend.accepted, 1);
  });
});

describe('TLS', () => {
  const dir = tmpDir('muxgate-h2-pool-');
  const ca = makeCa(dir);
  const leaf = makeCert(dir, ca, ['localhost', '127.0.0.1']);
  const otherDir = tmpDir('muxgate-h2-pool-other-');
  const otherCa = makeCa(otherDir, 'another CA');
  const tlsFor = (caPath: string): UpstreamTls => ({
    servername: 'localhost',
    ca: readFileSync(caPath),
    cert: undefined,
    key: undefined,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  });
  const serverTls = { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
  process.on('exit', () => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(otherDir, { recursive: true, force: true });
  });

  async function h1Only(t: TestContext): Promise<number> {
    const server = https.createServer({ ...serverTls, ALPNProtocols: ['http/1.1'] }, (_req, res) => res.end('h1'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(
      () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    );
    return (server.address() as AddressInfo).port;
  }

  test('h2 over TLS with ALPN h2', { timeout: 10_000 }, async (t) => {
    const backend = await backendFor(t, { tls: serverTls });
    const { pool, dialer } = poolFor(t, backend.port, { tls: tlsFor(ca.cert), alpn: ['h2'], host: 'localhost' });
    assert.equal(pool.scheme, 'https');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => send(pool, `/s${i}`)));
    assert.ok(results.every((r, i) => r.status === 200 && r.body.toString() === `/s${i}`));
    assert.equal(backend.accepted, 1);
    pool.close();
    await waitUntil(() => backend.open === 0 && portsInUse(dialer) === 0, 'closed, ports back');
  });

  test('ALPN auto against an HTTP/1.1-only server: the pool falls back and hands its waiters over', {
    timeout: 10_000,
  }, async (t) => {
    const port = await h1Only(t);
    const { pool, dialer } = poolFor(t, port, { tls: tlsFor(ca.cert), alpn: ['h2', 'http/1.1'], host: 'localhost' });
    const handed: PoolWaiter[] = [];
    pool.onFallback = (ws) => handed.push(...ws);
    const waiters = [new Req('/a'), new Req('/b'), new Req('/c')];
    for (const w of waiters) pool.acquire(w);
    await waitUntil(() => pool.fellBack, 'fell back');
    assert.deepEqual(handed, waiters);
    assert.equal(pool.pendingCount, 0);
    const late = new Req('/late');
    pool.acquire(late);
    assert.equal(handed.at(-1), late, 'later waiters go straight to the HTTP/1.1 side');
    assert.equal(pool.connectFailures, 0);
    await waitUntil(() => portsInUse(dialer) === 0, 'the TLS connection given back');
  });

  test('ALPN h2 required against an HTTP/1.1-only server: upstream_connect_failed', { timeout: 10_000 }, async (t) => {
    const port = await h1Only(t);
    const { pool } = poolFor(t, port, { tls: tlsFor(ca.cert), alpn: ['h2'], host: 'localhost' });
    assert.equal((await send(pool, '/a')).error, 'upstream_connect_failed');
    assert.equal(pool.fellBack, false);
  });

  test('a certificate from an untrusted CA: upstream_connect_failed', { timeout: 10_000 }, async (t) => {
    const backend = await backendFor(t, { tls: serverTls });
    const { pool, observer } = poolFor(t, backend.port, { tls: tlsFor(otherCa.cert), host: 'localhost' });
    assert.equal((await send(pool, '/a')).error, 'upstream_connect_failed');
    assert.equal(observer.failed, 1);
  });
});
