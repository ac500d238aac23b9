/**
 * muxgate's HTTP/2 engine on a listener (`protocol: http2`, h2c) in front of an HTTP/1.1 backend,
 * driven frame by frame with a raw client (test/helpers/h2-frames.ts): malformed requests, stream
 * state errors, content-length, the CONTINUATION flood, HPACK bombs, rapid reset and the other flood
 * guards, zero-window stalls, connection leaks, the SETTINGS timeout, graceful GOAWAY and PRIORITY.
 * Each case checks what the client gets and what reached the backend (nothing, for a malformed
 * request). Expected codes are RFC 9113's (and what h2spec checks), section numbers in the cases.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type http from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import {
  CANCEL,
  DATA,
  ENHANCE_YOUR_CALM,
  errorName,
  FLAG_ACK,
  type FrameClientOptions,
  GOAWAY,
  H2FrameClient,
  HEADERS,
  literal,
  MAX_STREAM_ID,
  PING,
  PROTOCOL_ERROR,
  RST_STREAM,
  SETTINGS,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_TIMEOUT,
  STREAM_CLOSED,
} from '../helpers/h2-frames.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { gate, sleep, waitUntil } from '../helpers/wait.ts';

const WAIT = 10_000;
const BIG = Buffer.alloc(100 * 1024, 'x');

interface UpRequest {
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  complete: boolean;
  aborted: boolean;
  /** The backend's whole response was written. */
  responded: boolean;
}

interface Upstream {
  up: Backend<http.Server>;
  /** Every request whose head reached the backend, in order. */
  reqs: UpRequest[];
  /** Holds /slow responses until opened. */
  release: () => void;
  heads(prefix?: string): number;
  complete(prefix?: string): number;
}

/**
 * An HTTP/1.1 backend that records every request it receives. /slow answers once `release` is
 * called, /big answers 100 KiB, anything else "ok <body bytes>".
 */
async function upstream(t: TestContext): Promise<Upstream> {
  const reqs: UpRequest[] = [];
  const hold = gate();
  const up = await httpBackend((req, res) => {
    const r: UpRequest = {
      url: req.url ?? '',
      headers: req.headers,
      bodyBytes: 0,
      complete: false,
      aborted: false,
      responded: false,
    };
    reqs.push(r);
    req.on('data', (c: Buffer) => {
      r.bodyBytes += c.length;
    });
    req.on('end', () => {
      r.complete = true;
      if (r.url.startsWith('/slow')) void hold.promise.then(() => res.end('late'));
      else if (r.url.startsWith('/big')) res.end(BIG);
      else res.end(`ok ${r.bodyBytes}\n`);
    });
    res.on('finish', () => {
      r.responded = true;
    });
    res.on('close', () => {
      if (!res.writableFinished) r.aborted = true;
    });
  });
  t.after(() => {
    hold.open();
    return up.close();
  });
  const match = (prefix?: string) => (r: UpRequest) => prefix === undefined || r.url.startsWith(prefix);
  return {
    up,
    reqs,
    release: hold.open,
    heads: (prefix) => reqs.filter(match(prefix)).length,
    complete: (prefix) => reqs.filter(match(prefix)).filter((r) => r.complete).length,
  };
}

async function proxy(
  t: TestContext,
  u: Upstream,
  http2: Record<string, unknown> = {},
  listener: Record<string, unknown> = {},
): Promise<TestProxy> {
  const p = await startProxy({ upstreams: [u.up.addr], listener: { protocol: 'http2', http2, ...listener } });
  t.after(() => p.close());
  return p;
}

async function client(t: TestContext, p: TestProxy, opts: FrameClientOptions = {}): Promise<H2FrameClient> {
  const c = await H2FrameClient.connect(p.port, opts);
  t.after(() => c.destroy());
  return c;
}

function errorCodes(p: TestProxy): Record<string, number> {
  return p.server.snapshot().listeners[0]!.error_codes;
}

/**
 * Waits until the listener has counted `code` once (a connection error is counted when its socket
 * closes) and, unless the connection is meant to live on, until no connection is left open.
 */
async function counted(p: TestProxy, code: string, o: { connectionLives?: boolean } = {}): Promise<void> {
  await waitUntil(() => (errorCodes(p)[code] ?? 0) >= 1, `error_codes.${code} is 1`, { timeoutMs: WAIT });
  assert.equal(errorCodes(p)[code], 1, `error_codes.${code}: ${JSON.stringify(errorCodes(p))}`);
  if (!o.connectionLives) await noConnections(p);
}

async function noConnections(p: TestProxy): Promise<void> {
  await waitUntil(() => p.server.snapshot().listeners[0]!.connections_open === 0, 'connections_open is 0', {
    timeoutMs: WAIT,
  });
}

let certs: CertPaths | null = null;
function serverCert(): CertPaths {
  if (certs === null) {
    const dir = tmpDir('muxgate-strict-');
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    certs = makeCert(dir, makeCa(dir), ['localhost', '127.0.0.1']);
  }
  return certs;
}

/** GOAWAY with `code`, then the socket closes. */
async function expectGoaway(c: H2FrameClient, code: number, lastStreamId?: number): Promise<void> {
  const g = await c.waitGoaway(WAIT);
  assert.equal(errorName(g.code), errorName(code), `GOAWAY code (debug "${g.debug}"); ${c.transcript()}`);
  if (lastStreamId !== undefined) assert.equal(g.lastStreamId, lastStreamId, 'GOAWAY last-stream-id');
  await c.waitClosed(WAIT);
}

/** The connection still works: a request on `streamId` is answered 200. */
async function stillServes(c: H2FrameClient, streamId: number, path = '/after'): Promise<void> {
  c.request(streamId, path);
  const r = await c.response(streamId, WAIT);
  assert.equal(r.status, 200, `request on stream ${streamId} after the error; ${c.transcript()}`);
  assert.equal(r.rst, null);
  assert.ok(!c.has((f) => f.type === GOAWAY), `no GOAWAY; ${c.transcript()}`);
}

// ---------------------------------------------------------------------------------------------

describe('malformed requests (RFC 9113 §8.2.1, §8.3, §8.1.1): 400 + RST_STREAM PROTOCOL_ERROR, nothing forwarded', () => {
  const cases: [string, Buffer, string][] = [
    ['a field value with CR', literal('x-test', 'a\rb'), 'invalid_header'],
    ['a field value with LF', literal('x-test', 'a\nb'), 'invalid_header'],
    ['a field value with NUL', literal('x-test', 'a\0b'), 'invalid_header'],
    ["a field name with ':' (not a pseudo-field)", literal('x:test', 'v'), 'invalid_header'],
    ['an empty field name', literal('', 'v'), 'invalid_header'],
    ['an upper-case field name', literal('X-Test', 'v'), 'invalid_header'],
    ['a field name with a space', literal('x test', 'v'), 'invalid_header'],
    ['a field name with a byte over 0x7f', literal('x-t\xe9st', 'v'), 'invalid_header'],
    ['a field value with leading space', literal('x-test', ' v'), 'invalid_header'],
    ['a field value with trailing space', literal('x-test', 'v '), 'invalid_header'],
    ['a field value with trailing tab', literal('x-test', 'v\t'), 'invalid_header'],
    ['a connection-specific field (§8.2.2)', literal('connection', 'keep-alive'), 'invalid_header'],
    ['te other than "trailers" (§8.2.2)', literal('te', 'gzip'), 'invalid_header'],
    ['an unknown pseudo-field (§8.3)', literal(':foo', 'bar'), 'invalid_header'],
    ['a pseudo-field after a regular field (§8.3)', literal(':authority', 'a.example'), 'invalid_header'],
  ];
  for (const [what, field, code] of cases) {
    it(`refuses ${what}`, async (t) => {
      const u = await upstream(t);
      const p = await proxy(t, u);
      const c = await client(t, p);
      // Regular field(s) from the encoder first, then the raw literal: a pseudo-field case needs a
      // regular field before it, and the others do not mind one.
      const base = c.requestFields('/bad', ['x-before', '1']);
      c.headers(1, Buffer.concat([c.encode(base), field]), { endStream: true });
      const r = await c.response(1, WAIT);
      assert.equal(r.status, 400, c.transcript());
      assert.equal(r.headers['muxgate-error'], code, c.transcript());
      assert.ok(r.ended, `the 400 is complete before the reset; ${c.transcript()}`);
      assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
      await stillServes(c, 3, '/ok');
      assert.deepEqual(
        u.reqs.map((x) => x.url),
        ['/ok'],
        'only the valid request reached the backend',
      );
    });
  }
});

describe('malformed request heads (RFC 9113 §8.3.1, §8.1.1): 400 + RST_STREAM PROTOCOL_ERROR, nothing forwarded', () => {
  const host = (c: H2FrameClient) => `${c.host}:${c.port}`;
  const cases: [string, (c: H2FrameClient) => string[], string][] = [
    ['no :method', (c) => [':scheme', 'http', ':path', '/bad', ':authority', host(c)], 'invalid_request_line'],
    ['no :path', (c) => [':method', 'GET', ':scheme', 'http', ':authority', host(c)], 'invalid_request_line'],
    [
      'an empty :path',
      (c) => [':method', 'GET', ':scheme', 'http', ':path', '', ':authority', host(c)],
      'invalid_request_line',
    ],
    ['no :scheme', (c) => [':method', 'GET', ':path', '/bad', ':authority', host(c)], 'invalid_request_line'],
    ['a repeated :path', (c) => [...c.requestFields('/bad'), ':path', '/bad2'], 'invalid_header'],
    ['a :status in a request', (c) => [...c.requestFields('/bad').slice(0, 8), ':status', '200'], 'invalid_header'],
    [
      'a non-numeric content-length',
      (c) => c.requestFields('/bad', ['content-length', 'abc']),
      'invalid_content_length',
    ],
    [
      'two different content-lengths',
      (c) => c.requestFields('/bad', ['content-length', '0', 'content-length', '1']),
      'conflicting_content_length',
    ],
  ];
  for (const [what, fields, code] of cases) {
    it(`refuses ${what}`, async (t) => {
      const u = await upstream(t);
      const p = await proxy(t, u);
      const c = await client(t, p);
      c.headers(1, fields(c), { endStream: true });
      const r = await c.response(1, WAIT);
      assert.equal(r.status, 400, c.transcript());
      assert.equal(r.headers['muxgate-error'], code, c.transcript());
      assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
      await stillServes(c, 3, '/ok');
      assert.deepEqual(
        u.reqs.map((x) => x.url),
        ['/ok'],
      );
    });
  }

  it('a malformed request with a body: DATA after the reset is ignored, the connection serves on', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.headers(1, Buffer.concat([c.encode(c.requestFields('/bad', [], 'POST')), literal('x-test', 'a\rb')]));
      c.data(1, 'some body');
      c.data(1, 'more body', { endStream: true });
    });
    const r = await c.response(1, WAIT);
    assert.equal(r.status, 400, c.transcript());
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    await stillServes(c, 3, '/ok');
    assert.deepEqual(
      u.reqs.map((x) => x.url),
      ['/ok'],
    );
  });
});

describe('stream identifiers and closed streams (RFC 9113 §5.1, §5.1.1)', () => {
  it('HEADERS reusing a closed stream id: GOAWAY STREAM_CLOSED (§5.1 "closed", h2spec 5.1/13)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/first');
    assert.equal((await c.response(1, WAIT)).status, 200);
    c.request(1, '/again');
    await expectGoaway(c, STREAM_CLOSED, 1);
    assert.equal(u.heads('/again'), 0);
  });

  it('a stream id lower than one already opened: GOAWAY PROTOCOL_ERROR (§5.1.1, h2spec 5.1.1/2)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.request(5, '/five');
      c.request(3, '/three');
    });
    // §5.1.1: "An endpoint that receives an unexpected stream identifier MUST respond with a
    // connection error of type PROTOCOL_ERROR" (stream 3 was never opened: it is not a frame on a
    // stream that closed after use).
    await expectGoaway(c, PROTOCOL_ERROR, 5);
    await sleep(200);
    assert.equal(u.heads('/three'), 0, 'the lower stream is not forwarded');
  });

  it('an even stream id from a client: GOAWAY PROTOCOL_ERROR (§5.1.1)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(2, '/even');
    await expectGoaway(c, PROTOCOL_ERROR, 0);
    assert.equal(u.heads(), 0);
  });

  it('DATA on a stream closed by END_STREAM both ways: STREAM_CLOSED (§5.1)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/first');
    assert.equal((await c.response(1, WAIT)).status, 200);
    c.data(1, 'late', { endStream: true });
    const f = await c.next((x) => x.type === GOAWAY || (x.type === RST_STREAM && x.streamId === 1), WAIT, 'an error');
    assert.equal(errorName(f.payload.readUInt32BE(f.type === GOAWAY ? 4 : 0)), 'STREAM_CLOSED', c.transcript());
  });

  it('HEADERS after the client reset the stream: STREAM_CLOSED (§5.1, h2spec 5.1/9)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.request(1, '/slow', { endStream: false });
      c.rstStream(1, CANCEL);
      c.request(1, '/slow-again');
    });
    const f = await c.next((x) => x.type === GOAWAY || (x.type === RST_STREAM && x.streamId === 1), WAIT, 'an error');
    assert.equal(errorName(f.payload.readUInt32BE(f.type === GOAWAY ? 4 : 0)), 'STREAM_CLOSED', c.transcript());
    assert.equal(u.heads('/slow-again'), 0);
  });
});

describe('content-length against DATA (RFC 9113 §8.1.1): RST_STREAM PROTOCOL_ERROR on that stream only', () => {
  /** The backend never completed a /cl request, and every one it saw was cut off. */
  async function noCompleteRequest(u: Upstream): Promise<void> {
    await waitUntil(
      () => u.reqs.filter((r) => r.url === '/cl').every((r) => r.aborted),
      'every /cl request the backend saw is aborted',
      { timeoutMs: WAIT },
    );
    assert.equal(u.complete('/cl'), 0, 'no complete /cl request reached the backend');
  }

  it('more DATA than content-length in one frame', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.request(1, '/cl', { method: 'POST', extra: ['content-length', '5'], endStream: false });
      c.request(3, '/other');
      c.data(1, 'abcdefghij', { endStream: true });
    });
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    const other = await c.response(3, WAIT);
    assert.equal(other.status, 200, c.transcript());
    await stillServes(c, 5);
    await noCompleteRequest(u);
    for (const r of u.reqs.filter((x) => x.url === '/cl')) assert.ok(r.bodyBytes <= 5, `${r.bodyBytes} body bytes`);
  });

  it('more DATA than content-length over two frames', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/cl', { method: 'POST', extra: ['content-length', '5'], endStream: false });
    c.data(1, 'abc');
    await sleep(50);
    c.data(1, 'def', { endStream: true });
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    await stillServes(c, 3);
    await noCompleteRequest(u);
    for (const r of u.reqs.filter((x) => x.url === '/cl')) assert.ok(r.bodyBytes <= 3, `${r.bodyBytes} body bytes`);
  });

  it('content-length over 0 on a HEADERS frame that ends the stream', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/cl', { method: 'POST', extra: ['content-length', '5'], endStream: true });
    // Malformed (§8.1.1: the DATA frames, none, do not add up to content-length): a stream error,
    // possibly after a 400.
    const f = await c.next((x) => x.streamId === 1 && x.type === RST_STREAM, WAIT, 'RST_STREAM on stream 1');
    assert.equal(errorName(f.payload.readUInt32BE(0)), 'PROTOCOL_ERROR');
    await stillServes(c, 3);
    await noCompleteRequest(u);
  });

  it('less DATA than content-length before END_STREAM', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/cl', { method: 'POST', extra: ['content-length', '10'], endStream: false });
    c.data(1, 'abcde', { endStream: true });
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    await stillServes(c, 3);
    await noCompleteRequest(u);
  });
});

describe('header block limits', () => {
  const limits = { max_header_block_size: '4KiB' };
  const pad = (n: number) => literal('x-pad', 'a'.repeat(n));

  it('CONTINUATION flood past max_header_block_size: GOAWAY ENHANCE_YOUR_CALM (CVE-2024-27316)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, limits);
    const c = await client(t, p);
    c.batch(() => {
      c.headers(1, c.requestFields('/flood'), { endStream: true, endHeaders: false });
      for (let i = 0; i < 16; i++) c.continuation(1, pad(1000), false);
    });
    await expectGoaway(c, ENHANCE_YOUR_CALM, 0);
    await counted(p, 'h2_header_block_too_large');
    assert.equal(u.heads(), 0);
  });

  it('a block split over CONTINUATIONs below the limit is served', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, limits);
    const c = await client(t, p);
    c.batch(() => {
      c.headers(1, c.requestFields('/split'), { endStream: true, endHeaders: false });
      c.continuation(1, pad(1000), false);
      c.continuation(1, pad(1000), false);
      c.continuation(1, pad(1000), true);
    });
    const r = await c.response(1, WAIT);
    assert.equal(r.status, 200, c.transcript());
    assert.equal(u.reqs[0]?.headers['x-pad'], Array(3).fill('a'.repeat(1000)).join(', '));
  });

  it('a single HEADERS frame whose block is over max_header_block_size is refused too', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, limits);
    const c = await client(t, p);
    // One 8 KiB block in one frame (under the 16 KiB frame size): "largest encoded header block".
    const block = Buffer.concat([
      c.encode(c.requestFields('/one-frame')),
      ...Array.from({ length: 8 }, () => pad(1000)),
    ]);
    c.headers(1, block, { endStream: true });
    const f = await c.next((x) => x.type === GOAWAY || x.streamId === 1, WAIT, 'an answer');
    assert.equal(f.type, GOAWAY, `expected GOAWAY ENHANCE_YOUR_CALM, got ${c.transcript()}`);
    assert.equal(errorName(f.payload.readUInt32BE(4)), 'ENHANCE_YOUR_CALM');
    assert.equal(u.heads(), 0);
  });

  it('an HPACK bomb over max_header_list_size: 431 on that stream, HPACK stays in step', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { max_header_list_size: '16KiB' });
    const c = await client(t, p);
    const value = 'b'.repeat(1000);
    // The encoder indexes the first copy, then refers to it: ~1.2 KB on the wire, ~100 KB decoded.
    const bomb: string[] = [];
    for (let i = 0; i < 100; i++) bomb.push('x-bomb', value);
    const block = c.encode(c.requestFields('/bomb', bomb));
    assert.ok(block.length < 2000, `bomb block is ${block.length} bytes`);
    c.headers(1, block, { endStream: true });
    const r = await c.response(1, WAIT);
    assert.equal(r.status, 431, c.transcript());
    assert.equal(r.headers['muxgate-error'], 'header_too_large');
    // The next request refers to the dynamic-table entry the bomb created: the server's table must
    // have taken it in although the list was refused.
    const next = c.encode(c.requestFields('/after-bomb', ['x-bomb', value]));
    assert.ok(next.length < 100, 'the second block uses the dynamic table');
    c.headers(3, next, { endStream: true });
    const r2 = await c.response(3, WAIT);
    assert.equal(r2.status, 200, c.transcript());
    assert.ok(!c.has((f) => f.type === GOAWAY || f.type === RST_STREAM), c.transcript());
    assert.deepEqual(
      u.reqs.map((x) => x.url),
      ['/after-bomb'],
    );
    assert.equal(u.reqs[0]!.headers['x-bomb'], value);
  });
});

describe('rapid reset (CVE-2023-44487)', () => {
  it('HEADERS + RST_STREAM past rapid_reset.max_resets: GOAWAY ENHANCE_YOUR_CALM before much upstream work', async (t) => {
    const u = await upstream(t);
    const maxResets = 20;
    const p = await proxy(t, u, { rapid_reset: { max_resets: maxResets, interval: '60s' } });
    const c = await client(t, p);
    c.batch(() => {
      for (let i = 0; i < 100; i++) {
        const id = 1 + 2 * i;
        c.request(id, `/r${i}`);
        c.rstStream(id, CANCEL);
      }
    });
    const g = await c.waitGoaway(WAIT);
    assert.equal(errorName(g.code), 'ENHANCE_YOUR_CALM', c.transcript());
    assert.equal(g.lastStreamId, 1 + 2 * maxResets, 'the stream whose reset went over the limit is the last one');
    await c.waitClosed(WAIT);
    await counted(p, 'rapid_reset');
    await waitUntil(() => p.eventLog.some((l) => String(l.msg).includes('reset flood')), 'the flood is logged', {
      timeoutMs: WAIT,
    });
    await sleep(300);
    const reached = u.heads();
    t.diagnostic(`requests that reached the backend: ${reached} of ${maxResets + 1} opened`);
    assert.ok(reached <= maxResets + 1, `${reached} requests reached the backend`);
  });

  it('streams refused over max_concurrent_streams count as resets', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { max_concurrent_streams: 2, rapid_reset: { max_resets: 10, interval: '60s' } });
    const c = await client(t, p);
    c.batch(() => {
      for (let i = 0; i < 20; i++) c.request(1 + 2 * i, `/slow${i}`);
    });
    for (let i = 2; i < 12; i++) assert.equal(errorName(await c.waitRst(1 + 2 * i, WAIT)), 'REFUSED_STREAM');
    const g = await c.waitGoaway(WAIT);
    assert.equal(errorName(g.code), 'ENHANCE_YOUR_CALM', c.transcript());
    await counted(p, 'rapid_reset');
    assert.ok(u.heads() <= 2, `${u.heads()} requests reached the backend`);
  });

  it('a client resetting fewer streams than the limit keeps its connection', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { rapid_reset: { max_resets: 20, interval: '60s' } });
    const c = await client(t, p);
    c.batch(() => {
      for (let i = 0; i < 20; i++) {
        c.request(1 + 2 * i, `/r${i}`);
        c.rstStream(1 + 2 * i, CANCEL);
      }
    });
    await stillServes(c, 41);
    assert.equal(errorCodes(p).rapid_reset, undefined);
  });
});

describe('flood guards: GOAWAY ENHANCE_YOUR_CALM past each limit, nothing below it', () => {
  const LIMIT = 10;
  const floods = (k: string) => ({ floods: { interval: '60s', [k]: LIMIT } });

  it('PING flood (CVE-2019-9512): max_pings answered, one more is a flood', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_pings'));
    const c = await client(t, p);
    c.batch(() => {
      for (let i = 0; i < LIMIT; i++) c.ping(Buffer.from(`ping${String(i).padStart(4, '0')}`));
    });
    for (let i = 0; i < LIMIT; i++) {
      const f = await c.next((x) => x.type === PING && (x.flags & FLAG_ACK) !== 0, WAIT, `PING ACK ${i}`);
      assert.equal(f.payload.toString(), `ping${String(i).padStart(4, '0')}`);
    }
    assert.ok(!c.has((f) => f.type === GOAWAY), c.transcript());
    c.ping();
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_ping_flood');
  });

  it('SETTINGS flood (CVE-2019-9515): max_settings acknowledged, one more is a flood', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_settings'));
    const c = await client(t, p);
    await c.next((x) => x.type === SETTINGS && (x.flags & FLAG_ACK) !== 0, WAIT, 'the ACK of the first SETTINGS');
    c.batch(() => {
      for (let i = 0; i < LIMIT; i++) c.settings([]);
    });
    for (let i = 0; i < LIMIT; i++) {
      await c.next((x) => x.type === SETTINGS && (x.flags & FLAG_ACK) !== 0, WAIT, `SETTINGS ACK ${i}`);
    }
    assert.ok(!c.has((f) => f.type === GOAWAY), c.transcript());
    c.settings([]);
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_settings_flood');
  });

  it('empty DATA frames (CVE-2019-9518): max_empty_frames accepted, one more is a flood', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_empty_frames'));
    const c = await client(t, p);
    c.batch(() => {
      c.request(1, '/empty', { method: 'POST', endStream: false });
      for (let i = 0; i < LIMIT; i++) c.data(1, '');
      c.data(1, 'x', { endStream: true });
    });
    const r = await c.response(1, WAIT);
    assert.equal(r.status, 200, c.transcript());
    assert.equal(r.body.toString(), 'ok 1\n');
    c.batch(() => {
      c.request(3, '/empty2', { method: 'POST', endStream: false });
      c.data(3, '');
    });
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_empty_frame_flood');
  });

  it('empty CONTINUATION frames are counted as empty frames too', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_empty_frames'));
    const c = await client(t, p);
    c.batch(() => {
      c.headers(1, c.requestFields('/c'), { endStream: true, endHeaders: false });
      for (let i = 0; i <= LIMIT; i++) c.continuation(1, Buffer.alloc(0), false);
    });
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_empty_frame_flood');
    assert.equal(u.heads(), 0);
  });

  it('WINDOW_UPDATE flood: max_window_updates accepted, one more is a flood', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_window_updates'));
    // Its own WINDOW_UPDATEs would count: this client credits nothing (the response is tiny).
    const c = await client(t, p, { autoWindowUpdate: false });
    c.batch(() => {
      for (let i = 0; i < LIMIT; i++) c.windowUpdate(0, 1);
    });
    await stillServes(c, 1);
    // The response's DATA frame earned the client two more (a stream and a connection update):
    // the third one past the limit is the flood.
    c.batch(() => {
      for (let i = 0; i < 3; i++) c.windowUpdate(0, 1);
    });
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_window_update_flood');
  });

  it('PRIORITY flood (CVE-2019-9513): max_priority accepted, one more is a flood', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, floods('max_priority'));
    const c = await client(t, p);
    c.batch(() => {
      for (let i = 0; i < LIMIT; i++) c.priority(101 + 2 * i, 0, 1 + i);
    });
    await stillServes(c, 1);
    c.priority(201, 0);
    await expectGoaway(c, ENHANCE_YOUR_CALM);
    await counted(p, 'h2_priority_flood');
  });
});

describe('zero-window stall (stall_timeout)', () => {
  it('a stream the client never opens a window for is reset with CANCEL; other streams are unaffected', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { stall_timeout: '300ms' });
    const c = await client(t, p, {
      settings: [[SETTINGS_INITIAL_WINDOW_SIZE, 0]],
      autoWindowUpdate: (id) => id !== 1,
    });
    c.batch(() => {
      c.windowUpdate(0, 1 << 20);
      c.request(1, '/big-stalled');
      c.request(3, '/big-flowing');
      c.windowUpdate(3, 1 << 20);
    });
    const started = Date.now();
    const ok = await c.response(3, WAIT);
    assert.equal(ok.status, 200, c.transcript());
    assert.equal(ok.body.length, BIG.length, 'stream 3 got its whole body');
    const head = await c.waitHeaders(1, WAIT);
    assert.equal(head.fields?.find(([n]) => n === ':status')?.[1], '200');
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'CANCEL');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250, `reset after ${elapsed} ms, not before stall_timeout`);
    assert.ok(!c.has((f) => f.type === DATA && f.streamId === 1), 'no DATA on the zero-window stream');
    await counted(p, 'h2_send_stall', { connectionLives: true });
    c.batch(() => {
      c.request(5, '/after');
      c.windowUpdate(5, 1000);
    });
    assert.equal((await c.response(5, WAIT)).status, 200, c.transcript());
    assert.ok(!c.has((f) => f.type === GOAWAY), c.transcript());
  });

  it('a small window that the client stops crediting: the rest of the response is reset with CANCEL', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { stall_timeout: '300ms' });
    const c = await client(t, p, { settings: [[SETTINGS_INITIAL_WINDOW_SIZE, 1024]], autoWindowUpdate: false });
    c.request(1, '/big');
    const head = await c.waitHeaders(1, WAIT);
    assert.equal(head.fields?.find(([n]) => n === ':status')?.[1], '200');
    const data = await c.next((f) => f.type === DATA && f.streamId === 1, WAIT, 'the first DATA');
    assert.ok(data.payload.length <= 1024);
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'CANCEL');
    const got = c.frames.filter((f) => f.type === DATA && f.streamId === 1).reduce((n, f) => n + f.payload.length, 0);
    assert.equal(got, 1024, 'exactly the window was sent');
    await counted(p, 'h2_send_stall', { connectionLives: true });
  });
});

describe('flow control and framing of responses (RFC 9113 §6.9, §4.2)', () => {
  it('raising SETTINGS_INITIAL_WINDOW_SIZE releases a response queued on a zero window (§6.9.2)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { stall_timeout: '5s' });
    const c = await client(t, p, { settings: [[SETTINGS_INITIAL_WINDOW_SIZE, 0]] });
    c.windowUpdate(0, 1 << 20);
    c.request(1, '/big');
    await c.waitHeaders(1, WAIT);
    // The backend wrote its 100 KiB; a moment later muxgate has it queued on the zero window.
    await waitUntil(() => u.reqs[0]?.responded === true, 'the backend answered', { timeoutMs: WAIT });
    await sleep(200);
    assert.ok(!c.has((f) => f.type === DATA && f.streamId === 1), 'no DATA while the window is 0');
    c.settings([[SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20]]);
    const r = await c.response(1, WAIT);
    assert.equal(r.rst, null, c.transcript());
    assert.equal(r.body.length, BIG.length, c.transcript());
  });

  it("DATA frames keep to the client's SETTINGS_MAX_FRAME_SIZE (16 KiB by default)", async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.request(1, '/big');
    const r = await c.response(1, WAIT);
    assert.equal(r.body.length, BIG.length);
    const sizes = c.frames.filter((f) => f.type === DATA).map((f) => f.payload.length);
    assert.ok(
      sizes.every((n) => n <= 16384),
      `DATA sizes ${sizes.join(',')}`,
    );
  });
});

describe('no leaked connections when the client goes away (FIN)', () => {
  /** Sockets of the listener's port in CLOSE-WAIT, or null when `ss` cannot say. */
  function closeWait(port: number): string[] | null {
    try {
      const out = execFileSync('ss', ['-Htan', 'state', 'close-wait', `( sport = :${port} )`], { encoding: 'utf8' });
      return out.split('\n').filter((l) => l.trim() !== '');
    } catch {
      return null;
    }
  }

  async function checkNoCloseWait(t: TestContext, port: number): Promise<void> {
    const lines = closeWait(port);
    if (lines === null) {
      t.diagnostic('CLOSE-WAIT sub-check skipped: `ss` is not available or failed');
      return;
    }
    assert.deepEqual(lines, [], `sockets of port ${port} in CLOSE-WAIT`);
  }

  it('right after the preface', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    await waitUntil(() => p.server.snapshot().listeners[0]!.connections_open === 1, 'the connection is counted');
    c.end();
    await noConnections(p);
    await c.waitClosed(WAIT);
    await checkNoCloseWait(t, p.port);
  });

  for (const secure of [false, true]) {
    it(`with streams waiting on a slow backend${secure ? ' (TLS)' : ''}`, async (t) => {
      const u = await upstream(t);
      const cert = secure ? serverCert() : null;
      const p = await proxy(t, u, {}, cert === null ? {} : { tls: { cert: cert.cert, key: cert.key } });
      const c = await client(t, p, { tls: secure });
      c.batch(() => {
        for (const id of [1, 3, 5]) c.request(id, `/slow${id}`);
      });
      await waitUntil(() => u.heads('/slow') === 3, 'the backend has the three requests', { timeoutMs: WAIT });
      c.end();
      await noConnections(p);
      await c.waitClosed(WAIT);
      await checkNoCloseWait(t, p.port);
      // The exchanges are abandoned upstream too (an HTTP/1.1 request cannot be cancelled otherwise).
      await waitUntil(() => u.reqs.every((r) => r.aborted), 'the backend requests are aborted', { timeoutMs: WAIT });
    });
  }
});

describe('SETTINGS timeout (RFC 9113 §6.5.3)', () => {
  it('a client that never acknowledges our SETTINGS gets GOAWAY SETTINGS_TIMEOUT', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { settings_timeout: '300ms' });
    const c = await client(t, p, { ackSettings: false });
    const started = Date.now();
    await expectGoaway(c, SETTINGS_TIMEOUT);
    assert.ok(Date.now() - started >= 200, 'not before settings_timeout');
    await counted(p, 'h2_settings_timeout');
  });

  it('a client that acknowledges late, but in time, keeps its connection', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u, { settings_timeout: '2s' });
    const c = await client(t, p, { ackSettings: false });
    await sleep(300);
    c.settingsAck();
    await sleep(2500);
    await stillServes(c, 1);
  });
});

describe('graceful drain (RFC 9113 §6.8)', () => {
  it('two GOAWAYs: first last-stream-id 2^31-1 and a PING, then the real last id; the stream in flight finishes', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p, { ackPings: false });
    c.request(1, '/slow');
    await waitUntil(() => u.heads('/slow') === 1, 'the request reached the backend', { timeoutMs: WAIT });
    const drained = p.server.drain(WAIT);
    const first = await c.waitGoaway(WAIT);
    assert.equal(first.lastStreamId, MAX_STREAM_ID, 'the first GOAWAY lets requests on the wire through');
    assert.equal(errorName(first.code), 'NO_ERROR');
    const ping = await c.next((f) => f.type === PING && (f.flags & FLAG_ACK) === 0, WAIT, 'the drain PING');
    assert.ok(!c.has((f) => f.type === GOAWAY), 'no second GOAWAY before the PING is answered');
    c.ping(ping.payload, true);
    const second = await c.waitGoaway(WAIT);
    assert.equal(errorName(second.code), 'NO_ERROR');
    assert.equal(second.lastStreamId, 1, 'the second GOAWAY names the last stream opened');
    u.release();
    const inflight = await c.response(1, WAIT);
    assert.equal(inflight.status, 200, c.transcript());
    assert.equal(inflight.body.toString(), 'late');
    await c.waitClosed(WAIT);
    await drained;
    assert.equal(p.server.snapshot().listeners[0]!.connections_open, 0);
  });

  it('a request sent before the client saw the first GOAWAY is served, not refused', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p, { ackPings: false });
    c.request(1, '/slow');
    await waitUntil(() => u.heads('/slow') === 1, 'the request reached the backend', { timeoutMs: WAIT });
    const drained = p.server.drain(WAIT);
    await c.waitGoaway(WAIT);
    const ping = await c.next((f) => f.type === PING && (f.flags & FLAG_ACK) === 0, WAIT, 'the drain PING');
    // Stream 3 crossed the first GOAWAY on the wire: it arrives before the PING's answer.
    c.batch(() => {
      c.request(3, '/between');
      c.ping(ping.payload, true);
    });
    const second = await c.waitGoaway(WAIT);
    assert.equal(second.lastStreamId, 3, 'the second GOAWAY covers stream 3');
    const between = await c.response(3, WAIT);
    u.release();
    await c.response(1, WAIT);
    await drained;
    // §6.8: the first GOAWAY (2^31-1) exists so that "a connection can be cleanly shut down without
    // losing requests"; stream 3 is under the final last-stream-id. REFUSED_STREAM would be safe to
    // retry, but the listener has stopped accepting, so the client has nowhere to retry.
    assert.equal(
      between.rst === null ? `status ${between.status}` : `RST_STREAM ${errorName(between.rst)}`,
      'status 200',
      c.transcript(),
    );
  });

  it('without a PING answer the second GOAWAY still comes, and an idle connection closes', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p, { ackPings: false });
    const drained = p.server.drain(WAIT);
    assert.equal((await c.waitGoaway(WAIT)).lastStreamId, MAX_STREAM_ID);
    const second = await c.waitGoaway(WAIT);
    assert.equal(second.lastStreamId, 0);
    assert.equal(errorName(second.code), 'NO_ERROR');
    await c.waitClosed(WAIT);
    await drained;
  });
});

describe('PRIORITY (RFC 9113 §5.3)', () => {
  it('valid PRIORITY frames on idle and open streams are accepted and ignored', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.priority(5, 0, 200); // idle
      c.priority(7, 5, 1, true); // idle, depending on another idle stream
      c.request(1, '/p', { method: 'POST', endStream: false });
      c.priority(1, 0, 32); // open
      c.priority(1, 7, 16, true);
      c.data(1, 'body', { endStream: true });
    });
    const r = await c.response(1, WAIT);
    assert.equal(r.status, 200, c.transcript());
    assert.equal(r.body.toString(), 'ok 4\n');
    // The idle streams are still usable, and a closed one takes PRIORITY too (§5.1).
    c.priority(1, 0, 10);
    c.headers(5, c.requestFields('/five'), { endStream: true, priority: { dependsOn: 0, weight: 100 } });
    assert.equal((await c.response(5, WAIT)).status, 200, c.transcript());
    await stillServes(c, 7);
    assert.ok(!c.has((f) => f.type === RST_STREAM || f.type === GOAWAY), c.transcript());
  });

  it('PRIORITY making an idle stream depend on itself: RST_STREAM PROTOCOL_ERROR (§5.3.1)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.priority(9, 9);
    assert.equal(errorName(await c.waitRst(9, WAIT)), 'PROTOCOL_ERROR');
    await stillServes(c, 11);
  });

  it('PRIORITY making an open stream depend on itself: RST_STREAM PROTOCOL_ERROR, nothing completes upstream', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.batch(() => {
      c.request(1, '/self', { method: 'POST', endStream: false });
      c.priority(1, 1);
    });
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    await stillServes(c, 3);
    assert.equal(u.complete('/self'), 0);
  });

  it('HEADERS with a priority on itself: RST_STREAM PROTOCOL_ERROR, not forwarded (§5.3.1)', async (t) => {
    const u = await upstream(t);
    const p = await proxy(t, u);
    const c = await client(t, p);
    c.headers(1, c.requestFields('/self-headers'), { endStream: true, priority: { dependsOn: 1 } });
    assert.equal(errorName(await c.waitRst(1, WAIT)), 'PROTOCOL_ERROR');
    assert.ok(!c.has((f) => f.type === HEADERS && f.streamId === 1), c.transcript());
    await stillServes(c, 3);
    assert.equal(u.heads('/self-headers'), 0);
  });
});
