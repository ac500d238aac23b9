/**
 * HTTP/2 towards the backends: HTTP/1.1 clients multiplexed onto a few upstream HTTP/2 connections,
 * header and body translation both ways, GOAWAY and REFUSED_STREAM handled without a client seeing
 * an error, TLS origination (verification, ALPN fallback, mutual TLS), HTTP/2 end to end.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { after, describe, it, type TestContext } from 'node:test';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { startMuxgate } from '../helpers/cli.ts';
import { h2connect, h2request } from '../helpers/h2-client.ts';
import { type H2Backend, type H2BackendOptions, h2cBackend } from '../helpers/h2-backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { connect, curl, field } from '../helpers/wire.ts';
import { rawBackend } from '../helpers/backend.ts';
import {
  buildFrame,
  DATA,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FRAME_HEADER,
  GOAWAY,
  HEADERS,
  hpackString,
  PREFACE_LENGTH,
  RST_STREAM,
  SETTINGS,
} from '../helpers/h2-frames.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const dir = tmpDir('muxgate-h2up-');
after(() => rmSync(dir, { recursive: true, force: true }));
const ca = makeCa(dir);
const server = makeCert(dir, ca, ['localhost', '127.0.0.1']);
const client = makeCert(dir, ca, ['muxgate-client'], { file: 'client' });
const pem = (p: CertPaths) => ({ cert: readFileSync(p.cert), key: readFileSync(p.key) });

async function backend(t: TestContext, opts: H2BackendOptions = {}): Promise<H2Backend> {
  const b = await h2cBackend(opts);
  t.after(() => b.close());
  return b;
}

async function proxy(t: TestContext, upstream: string, cluster: Record<string, unknown>, listener = {}) {
  const p = await startProxy({ upstreams: [upstream], cluster, listener });
  t.after(() => p.close());
  return p;
}

/** One HTTP/1.1 request over a fresh connection, read off the wire. */
async function h1(t: TestContext, p: TestProxy, request: string, method = 'GET') {
  const c = await connect(p.port, t);
  c.write(request);
  return c.readResponse({ method });
}

/**
 * A raw h2c backend: reads the preface, sends its SETTINGS, acknowledges the proxy's, and hands every
 * frame the proxy sends (type, stream id) to `onFrame`, which writes whatever answer the test wants.
 */
async function rawH2cBackend(
  t: TestContext,
  onFrame: (sock: net.Socket, type: number, streamId: number) => void,
): Promise<{ addr: string; connections: number }> {
  let connections = 0;
  const b = await rawBackend((sock) => {
    connections++;
    let buf = Buffer.alloc(0);
    let preface = false;
    sock.write(buildFrame(SETTINGS, 0, 0));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < PREFACE_LENGTH) return;
        buf = buf.subarray(PREFACE_LENGTH);
        preface = true;
      }
      while (buf.length >= FRAME_HEADER) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < FRAME_HEADER + len) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(FRAME_HEADER + len);
        if (type === SETTINGS && (flags & FLAG_ACK) === 0) sock.write(buildFrame(SETTINGS, FLAG_ACK, 0));
        onFrame(sock, type, id);
      }
    });
    sock.on('error', () => {});
  });
  t.after(() => b.close());
  return {
    addr: b.addr,
    get connections() {
      return connections;
    },
  };
}

/** Answers with a JSON echo of what the stream carried: headers and the body's size and hash. */
function echo(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  const h = createHash('sha256');
  let bytes = 0;
  stream.on('data', (c: Buffer) => {
    h.update(c);
    bytes += c.length;
  });
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    stream.end(JSON.stringify({ headers, bytes, hash: h.digest('hex') }));
  });
}

describe('HTTP/1.1 clients to an HTTP/2 upstream', () => {
  it('translates the request head: :authority from Host, connection-specific fields dropped, cookies', async (t) => {
    const b = await backend(t, { onStream: echo });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const res = await h1(
      t,
      p,
      'GET /q?x=1 HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\n' +
        'X-Hop: secret\r\nTE: gzip\r\nCookie: a=1; b=2\r\nX-Custom: yes\r\nHTTP2-Settings: AAMAAABk\r\n\r\n',
    );
    assert.equal(res.status, 200);
    const got = JSON.parse(res.body.toString()).headers as Record<string, string>;
    assert.equal(got[':authority'], 'app.example');
    assert.equal(got[':path'], '/q?x=1');
    assert.equal(got[':scheme'], 'http');
    assert.equal(got.host, undefined, 'HTTP/2 carries the authority in :authority only');
    for (const hop of ['connection', 'keep-alive', 'x-hop', 'te', 'transfer-encoding'])
      assert.equal(got[hop], undefined);
    assert.equal(got.cookie, 'a=1; b=2');
    assert.equal(got['x-custom'], 'yes');
    assert.equal(got.via, '1.1 muxgate');
    assert.equal(got['x-forwarded-for'], '127.0.0.1');
    assert.equal(field(res, 'via'), '2 muxgate');
    assert.equal(p.accessLog.at(-1)!.upstream_protocol, 'HTTP/2');
  });

  it('streams bodies both ways: content-length, chunked (decoded to DATA), 10 MB each way', async (t) => {
    const big = randomBytes(10 * 1024 * 1024);
    const b = await backend(t, {
      onStream: (stream, headers) => {
        if (headers[':path'] === '/big') {
          stream.respond({ ':status': 200 });
          stream.end(big);
        } else echo(stream, headers);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const body = randomBytes(100_000);
    const cl = await h1(
      t,
      p,
      `POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body.toString('latin1')}`,
    );
    const clGot = JSON.parse(cl.body.toString());
    assert.equal(clGot.hash, sha256(body));
    assert.equal(clGot.headers['content-length'], String(body.length));
    const chunks = `5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: dropped\r\n\r\n`;
    const ch = await h1(t, p, `POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`);
    const chGot = JSON.parse(ch.body.toString());
    assert.equal(chGot.bytes, 11);
    assert.equal(chGot.hash, sha256(Buffer.from('hello world')));
    assert.equal(chGot.headers['content-length'], undefined);
    // 10 MB up (curl) and down: the raised windows keep this from crawling.
    const up = await curl(
      ['-s', '--data-binary', '@-', '-H', 'content-type: application/octet-stream', `${p.url}/up`],
      {
        input: big,
      },
    );
    assert.equal(JSON.parse(up.stdout.toString()).hash, sha256(big));
    const down = await curl(['-s', `${p.url}/big`]);
    assert.equal(sha256(down.stdout), sha256(big));
  });

  it('frames responses for HTTP/1.1: chunked without a length, trailers carried, HEAD and 204, 103 relayed', async (t) => {
    const b = await backend(t, {
      onStream: (stream, headers) => {
        const path = headers[':path'];
        if (path === '/trailers') {
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
          stream.write('one-');
          stream.end('two');
        } else if (path === '/hints') {
          stream.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload' });
          stream.respond({ ':status': 200, 'content-length': 2 });
          stream.end('ok');
        } else if (path === '/empty') {
          stream.respond({ ':status': 204 });
          stream.end();
        } else {
          stream.respond({ ':status': 200, 'content-length': 5, 'set-cookie': ['a=1', 'b=2'] });
          stream.end(headers[':method'] === 'HEAD' ? undefined : 'hello');
        }
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const tr = await h1(t, p, 'GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(tr.chunked, true);
    assert.equal(tr.body.toString(), 'one-two');
    assert.deepEqual(tr.trailers, [['x-checksum', 'abc']]);
    const c = await connect(p.port, t);
    c.write('GET /hints HTTP/1.1\r\nHost: x\r\n\r\n');
    const hint = await c.readResponse();
    assert.equal(hint.status, 103);
    assert.equal(field(hint, 'link'), '</style.css>; rel=preload');
    const final = await c.readResponse();
    assert.equal(final.status, 200);
    assert.equal(final.body.toString(), 'ok');
    const head = await h1(t, p, 'HEAD /plain HTTP/1.1\r\nHost: x\r\n\r\n', 'HEAD');
    assert.equal(field(head, 'content-length'), '5');
    assert.equal(head.body.length, 0);
    const empty = await h1(t, p, 'GET /empty HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(empty.status, 204);
    const plain = await h1(t, p, 'GET /plain HTTP/1.0\r\nHost: x\r\n\r\n');
    assert.equal(plain.body.toString(), 'hello');
    assert.deepEqual(
      plain.fields.filter(([n]) => n === 'set-cookie').map(([, v]) => v),
      ['a=1', 'b=2'],
    );
  });

  it('relays 100 Continue from an HTTP/2 upstream to an HTTP/1.1 client waiting to send its body', async (t) => {
    const b = await backend(t, {
      onStream: (stream, headers) => {
        if (headers.expect === '100-continue') stream.additionalHeaders({ ':status': 100 });
        echo(stream, headers);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const c = await connect(p.port, t);
    c.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const cont = await c.readResponse();
    assert.equal(cont.status, 100);
    c.write('hello');
    const final = await c.readResponse();
    assert.equal(final.status, 200);
    assert.equal(JSON.parse(final.body.toString()).hash, sha256(Buffer.from('hello')));
  });

  it('carries 2,000 concurrent in-flight requests on at most ceil(2000/100) upstream connections', async (t) => {
    const N = 2000;
    const held: { stream: http2.ServerHttp2Stream; path: string }[] = [];
    const b = await backend(t, {
      onStream: (stream, headers) => held.push({ stream, path: String(headers[':path']) }),
    });
    const p = await proxy(t, b.addr, { protocol: 'http2', pool: { max_pending: N } });
    const sockets: net.Socket[] = [];
    t.after(() => {
      for (const s of sockets) s.destroy();
    });
    const answers: Promise<string>[] = [];
    for (let i = 0; i < N; i++) {
      const s = net.connect(p.port, '127.0.0.1');
      sockets.push(s);
      answers.push(
        new Promise<string>((resolve, reject) => {
          let got = '';
          s.on('data', (c: Buffer) => {
            got += c.toString('latin1');
            if (got.includes('\r\n\r\n') && got.endsWith(`/r${i}`)) resolve(got);
          });
          s.on('error', reject);
          s.on('close', () => reject(new Error(`connection ${i} closed: ${got}`)));
        }),
      );
      s.write(`GET /r${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
    }
    // Every request is in flight at the upstream at the same time before any is answered.
    await waitUntil(() => held.length === N, `all ${N} streams are open at the upstream`, { timeoutMs: 30_000 });
    assert.ok(b.accepted <= Math.ceil(N / 100), `upstream connections: ${b.accepted}`);
    assert.ok(b.peakStreamsPerSession <= 100);
    for (const { stream, path } of held.splice(0)) {
      stream.respond({ ':status': 200, 'content-length': path.length });
      stream.end(path);
    }
    const results = await Promise.allSettled(answers);
    const failed = results.filter((r) => r.status === 'rejected' || !r.value.startsWith('HTTP/1.1 200'));
    assert.equal(failed.length, 0, `failed: ${failed.length}`);
    assert.ok(b.accepted <= 20, `upstream connections: ${b.accepted}`);
    const errors = p.server.snapshot().listeners[0]!.errors;
    assert.equal(errors, 0);
  });

  it('honours the upstream SETTINGS_MAX_CONCURRENT_STREAMS 10: 100 requests on 10 connections', async (t) => {
    const held: http2.ServerHttp2Stream[] = [];
    const b = await backend(t, { settings: { maxConcurrentStreams: 10 }, onStream: (s) => held.push(s) });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const all = Array.from({ length: 100 }, (_, i) =>
      curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${p.url}/${i}`]),
    );
    await waitUntil(() => held.length === 100, '100 streams open at the upstream', { timeoutMs: 20_000 });
    assert.equal(b.accepted, 10);
    assert.ok(b.peakStreamsPerSession <= 10);
    for (const s of held) {
      s.respond({ ':status': 200 });
      s.end('ok');
    }
    const codes = (await Promise.all(all)).map((r) => r.stdout.toString());
    assert.deepEqual([...new Set(codes)], ['200']);
  });

  it('retries streams a GOAWAY left unprocessed: no client sees an error', async (t) => {
    let goawaySent = false;
    const b = await backend(t, {
      onStream: (stream, headers, session) => {
        const n = Number(String(headers[':path']).slice(1));
        if (!goawaySent && n >= 0 && (stream.id ?? 0) >= 21) {
          goawaySent = true;
          // Streams above the last one we will process (this one) are refused, never processed.
          session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
        }
        setTimeout(() => {
          if (stream.closed) return;
          stream.respond({ ':status': 200 });
          stream.end(`done ${n}`);
        }, 20);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const all = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        curl(['-s', '-w', ' %{http_code}', '-X', 'POST', '-d', `body${i}`, `${p.url}/${i}`]),
      ),
    );
    for (const [i, r] of all.entries()) assert.equal(r.stdout.toString(), `done ${i} 200`);
    assert.ok(goawaySent);
    assert.ok(b.accepted >= 2, 'a new connection took the refused streams');
    const h2 = p.server.snapshot().clusters[0]!.endpoints[0]!.h2!;
    assert.equal(h2.goaways, 1);
    assert.ok(h2.refused_streams >= 1, `refused_streams ${h2.refused_streams}`);
    assert.equal(p.server.snapshot().listeners[0]!.errors, 0);
  });

  it('retries a REFUSED_STREAM (with its body) and reports a reset after processing as an error', async (t) => {
    let refused = 0;
    const b = await backend(t, {
      onStream: (stream, headers) => {
        if (headers[':path'] === '/refuse-once' && refused === 0) {
          refused++;
          stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          return;
        }
        if (headers[':path'] === '/reset') {
          // waitForTrailers keeps END_STREAM back, so the close below is a real RST_STREAM.
          stream.respond({ ':status': 200 }, { waitForTrailers: true });
          stream.write('partial');
          setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
          return;
        }
        echo(stream, headers);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const ok = await h1(t, p, 'POST /refuse-once HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body.toString()).hash, sha256(Buffer.from('hello')));
    assert.equal(refused, 1);
    // A stream reset after the response started: the client sees a truncated response, never a complete one.
    const c = await connect(p.port, t);
    c.write('GET /reset HTTP/1.1\r\nHost: x\r\n\r\n');
    await assert.rejects(c.readResponse());
    await waitUntil(() => p.accessLog.some((l) => l.error === 'upstream_reset'), 'the reset is logged');
  });

  it("a refused stream is sent again with its own head, after other clients' requests were read in its place", async (t) => {
    // The head of a request whose stream opened at once is not copied out of the shared read buffer
    // (Exchange.begin): its replay must come from the fields the leg kept, not from bytes that another
    // client's request has overwritten since.
    let held: http2.ServerHttp2Stream | null = null;
    const b = await backend(t, {
      onStream: (stream, headers) => {
        if (headers[':path'] === '/refuse-later' && held === null) {
          held = stream;
          return;
        }
        echo(stream, headers);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    // the upstream connection is up before the request that matters: its stream opens within the read
    assert.equal((await h1(t, p, 'GET /warm HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n')).status, 200);
    const a = await connect(p.port, t);
    a.write('GET /refuse-later HTTP/1.1\r\nHost: mine.example\r\nX-Mine: aaaa-1111\r\nAccept: text/plain\r\n\r\n');
    await waitUntil(() => held !== null, 'the first attempt reached the backend');
    const other = `GET /${'o'.repeat(90)} HTTP/1.1\r\nHost: other.example\r\nX-Other: ${'z'.repeat(300)}\r\nConnection: close\r\n\r\n`;
    for (let i = 0; i < 3; i++) assert.equal((await h1(t, p, other)).status, 200);
    held!.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const r = await a.readResponse();
    assert.equal(r.status, 200);
    const { headers } = JSON.parse(r.body.toString()) as { headers: Record<string, string> };
    assert.equal(headers[':path'], '/refuse-later');
    assert.equal(headers[':authority'], 'mine.example');
    assert.equal(headers['x-mine'], 'aaaa-1111');
    assert.equal(headers.accept, 'text/plain');
    assert.equal(headers['x-other'], undefined);
    assert.equal(p.server.snapshot().clusters[0]!.endpoints[0]!.h2!.refused_streams, 1);
  });

  it('a stream complete both ways is closed, not reset: no RST_STREAM after a whole response', async (t) => {
    // A raw h2c backend that logs every frame type it receives and answers each request with
    // HEADERS (:status 200, END_STREAM) and nothing else.
    const frames: number[] = [];
    const b = await rawH2cBackend(t, (sock, type, id) => {
      frames.push(type);
      if (type === GOAWAY) sock.end(); // the proxy is closing
      // one field: :status 200 (static index 8)
      if (type === HEADERS)
        sock.write(buildFrame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, id, Buffer.from([0x88])));
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    for (let i = 0; i < 5; i++) {
      const r = await h1(t, p, 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, 200);
    }
    assert.equal(frames.filter((f) => f === HEADERS).length, 5, 'five requests');
    assert.deepEqual(
      frames.filter((f) => f === RST_STREAM),
      [],
      'no RST_STREAM: each stream ended with END_STREAM both ways',
    );
  });

  it('a response field breaking §8.2.1 is refused every time: repeated (a remembered string), or kept in the dynamic table', async (t) => {
    // The decoder knows strings it decoded before as clean or not (HpackDecoder.clean) and the owner
    // skips its scan for clean blocks: a bad string seen again, or referenced from the table, must still be refused.
    const lit = (name: string, value: string, indexed = false) =>
      Buffer.concat([Buffer.of(indexed ? 0x40 : 0x00), hpackString(name), hpackString(value)]);
    const status200 = Buffer.of(0x88);
    const script: [string, Buffer, number][] = [
      ['CR in a value', lit('x-bad', 'a\rb'), 502],
      ['the same literal again', lit('x-bad', 'a\rb'), 502],
      ['an upper-case name', lit('X-Up', 'v'), 502],
      ['the same name again', lit('X-Up', 'v'), 502],
      ['a good block between', lit('x-fine', 'yes'), 200],
      ['LF in a value, indexed (table entry 62)', lit('x-idx', 'v\n', true), 502],
      ['entry 62 by reference', Buffer.of(0xbe), 502],
      ['a clean entry indexed (62; the bad one is 63)', lit('x-ok', 'fine', true), 200],
      ['the clean entry by reference', Buffer.of(0xbe), 200],
      ['the bad entry by reference', Buffer.of(0xbf), 502],
      ['a good block after', lit('x-fine', 'yes'), 200],
    ];
    let answered = 0;
    const b = await rawH2cBackend(t, (sock, type, id) => {
      if (type !== HEADERS) return;
      const step = script[answered++];
      if (step === undefined) return;
      sock.write(buildFrame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, id, Buffer.concat([status200, step[1]])));
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    for (const [what, , status] of script) {
      const r = await h1(t, p, 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      assert.equal(r.status, status, what);
      if (status === 502) assert.equal(field(r, 'muxgate-error'), 'upstream_protocol_error', what);
    }
    assert.equal(answered, script.length);
    // a malformed response ends its stream, not the connection: one HPACK context throughout
    assert.equal(b.connections, 1);
  });

  it('a backend repeating one header block: each client still gets the head its request calls for, and the table moves on', async (t) => {
    // The upstream decoder hands out one list for equal blocks and the translation to HTTP/1.1 is kept
    // with it (ResponseTranslation): HEAD, HTTP/1.0, Connection: close and a changed table must each
    // still make their own head. Every block here is the same octets but the last ones.
    const lit = (name: string, value: string, indexed = false) =>
      Buffer.concat([Buffer.of(indexed ? 0x40 : 0x00), hpackString(name), hpackString(value)]);
    const same = Buffer.concat([Buffer.of(0x88), lit('content-length', '2'), lit('x-v', 'one', true)]);
    const refNewest = Buffer.of(0x88, 0x0f, 0x0d, 0x01, 0x32, 0xbe); // :status 200, content-length: 2, entry 62
    // refers to the table and inserts: never kept itself, so the block kept before it stays kept
    const refThenTwo = Buffer.concat([refNewest, lit('x-v', 'two', true)]);
    const blocks = [same, same, same, same, same, same, refNewest, refThenTwo, refNewest, refNewest];
    let answered = 0;
    const b = await rawH2cBackend(t, (sock, type, id) => {
      if (type !== HEADERS) return;
      const block = blocks[answered++];
      if (block === undefined) return;
      sock.write(buildFrame(HEADERS, FLAG_END_HEADERS, id, block));
      sock.write(buildFrame(DATA, FLAG_END_STREAM, id, Buffer.from('ok')));
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' });
    const c = await connect(p.port, t);
    c.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\n');
    let r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(field(r, 'content-length'), '2');
    assert.equal(field(r, 'x-v'), 'one');
    assert.equal(field(r, 'connection'), undefined);
    assert.equal(r.body.toString(), 'ok');
    // the same head but for Connection: close, right after the plain one
    const cc = await connect(p.port, t);
    cc.write('GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    r = await cc.readResponse();
    assert.equal(field(r, 'connection'), 'close', 'the client asked to close: said so');
    assert.equal(r.body.toString(), 'ok');
    c.write('HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n');
    r = await c.readResponse({ method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(field(r, 'content-length'), '2', 'HEAD: the length restated');
    assert.equal(r.body.length, 0);
    // (this backend sends its body to HEAD too: nothing of it may reach the client before the next answer)
    c.write('GET /3b HTTP/1.1\r\nHost: a\r\n\r\n');
    r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok');
    const c10 = await connect(p.port, t);
    c10.write('GET /4 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    r = await c10.readResponse();
    assert.equal(r.version, 'HTTP/1.1');
    assert.equal(field(r, 'connection'), 'keep-alive', 'HTTP/1.0 with keep-alive: said so');
    assert.equal(r.body.toString(), 'ok');
    const c2 = await connect(p.port, t);
    const ask = async (path: string) => {
      c2.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const res = await c2.readResponse();
      assert.equal(res.status, 200, path);
      assert.equal(res.body.toString(), 'ok', path);
      return res;
    };
    assert.equal(field(await ask('/5'), 'connection'), undefined, 'the plain head again');
    assert.equal(field(await ask('/6'), 'x-v'), 'one', 'entry 62: x-v one');
    assert.deepEqual(
      (await ask('/7')).fields.filter(([n]) => n === 'x-v').map(([, v]) => v),
      ['one', 'two'],
    );
    assert.equal(field(await ask('/8'), 'x-v'), 'two', 'the same octets as /6: entry 62 is x-v two now');
    assert.equal(field(await ask('/9'), 'x-v'), 'two');
    assert.equal(answered, blocks.length);
    assert.equal(b.connections, 1, 'one HPACK context throughout');
  });

  it('answers 503 pool_queue_full beyond max_connections x streams + max_pending', async (t) => {
    const held: http2.ServerHttp2Stream[] = [];
    const b = await backend(t, { settings: { maxConcurrentStreams: 2 }, onStream: (s) => held.push(s) });
    const p = await proxy(t, b.addr, { protocol: 'http2', pool: { max_connections: 1, max_pending: 1 } });
    const pending = [0, 1, 2].map((i) => curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${p.url}/${i}`]));
    await waitUntil(() => held.length === 2, 'two streams open');
    await waitUntil(() => p.server.snapshot().clusters[0]!.requests === 3, 'the third request is queued');
    const full = await h1(t, p, 'GET /x HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(full.status, 503);
    assert.equal(field(full, 'muxgate-error'), 'pool_queue_full');
    for (const s of held) {
      s.respond({ ':status': 200 });
      s.end();
    }
    await waitUntil(() => held.length === 3, 'the queued request got a stream');
    held[2]!.respond({ ':status': 200 });
    held[2]!.end();
    assert.deepEqual(
      (await Promise.all(pending)).map((r) => r.stdout.toString()),
      ['200', '200', '200'],
    );
  });
});

describe('HTTP/2 end to end', () => {
  it('an HTTP/2 client reaches an HTTP/2 upstream; trailers pass with te: trailers', async (t) => {
    const b = await backend(t, {
      onStream: (stream, headers) => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
        stream.end(`te=${headers.te}`);
      },
    });
    const p = await proxy(t, b.addr, { protocol: 'http2' }, { protocol: 'http2' });
    const s = await h2connect(p.url);
    t.after(() => s.close());
    const r = await h2request(s, { ':method': 'POST', ':path': '/svc/Method', te: 'trailers' }, 'payload');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'te=trailers');
    assert.equal(r.trailers?.['grpc-status'], '0');
    assert.equal(r.trailers?.['grpc-message'], 'ok');
  });
});

describe('TLS origination', () => {
  it('HTTP/2 over TLS with the CA and server name configured; a wrong CA is a 502', async (t) => {
    const b = await backend(t, { tls: pem(server) });
    const p = await proxy(t, `127.0.0.1:${b.port}`, {
      protocol: 'http2',
      tls: { ca: ca.cert, server_name: 'localhost' },
    });
    const ok = await h1(t, p, 'GET /secure HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(ok.status, 200);
    assert.equal(ok.body.toString(), '/secure');
    const otherCa = makeCa(tmpDir('muxgate-otherca-'), 'someone else');
    const bad = await proxy(t, `127.0.0.1:${b.port}`, { protocol: 'http2', tls: { ca: otherCa.cert } });
    const r = await h1(t, bad, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(r.status, 502);
    assert.equal(field(r, 'muxgate-error'), 'upstream_connect_failed');
  });

  it('protocol auto over TLS falls back to HTTP/1.1 when ALPN says so', async (t) => {
    const srv = https.createServer({ ...pem(server), ALPNProtocols: ['http/1.1'] }, (req, res) =>
      res.end(`h1 ${req.httpVersion} ${req.url}`),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    srv.on('secureConnection', () => {});
    const port = (srv.address() as net.AddressInfo).port;
    const p = await proxy(t, `127.0.0.1:${port}`, { protocol: 'auto', tls: { ca: ca.cert, server_name: 'localhost' } });
    for (const path of ['/a', '/b']) {
      const r = await h1(t, p, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal(r.body.toString(), `h1 1.1 ${path}`);
    }
    assert.equal(p.accessLog.at(-1)!.upstream_protocol, undefined);
  });

  it('HTTP/1.1 over TLS presents a client certificate (mutual TLS); without it the upstream refuses', async (t) => {
    const srv = https.createServer(
      { ...pem(server), ca: readFileSync(ca.cert), requestCert: true, rejectUnauthorized: true },
      (req, res) => res.end(`hello ${(req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject.CN}`),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    const port = (srv.address() as net.AddressInfo).port;
    const mtls = await proxy(t, `127.0.0.1:${port}`, {
      tls: { ca: ca.cert, server_name: 'localhost', cert: client.cert, key: client.key },
    });
    const ok = await h1(t, mtls, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(ok.body.toString(), 'hello muxgate-client');
    const noCert = await proxy(t, `127.0.0.1:${port}`, { tls: { ca: ca.cert, server_name: 'localhost' } });
    const r = await h1(t, noCert, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(r.status >= 500, true);
  });

  it('insecure_skip_verify works only with a loud warning at start', async (t) => {
    const b = await backend(t, { tls: pem(server) });
    const p = await proxy(t, `127.0.0.1:${b.port}`, { protocol: 'http2', tls: { insecure_skip_verify: true } });
    assert.ok(p.eventLog.some((l) => l.level === 40 && String(l.msg).startsWith('INSECURE')));
    const r = await h1(t, p, 'GET /x HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(r.status, 200);
  });

  it('fails to start naming an unreadable CA file', async () => {
    await assert.rejects(
      startProxy({ upstreams: ['127.0.0.1:1'], cluster: { tls: { ca: '/nonexistent/ca.pem' } } }),
      /tls\.ca file "\/nonexistent\/ca\.pem"/,
    );
  });
});

describe('one-line form', () => {
  it('--to h2c:// and --to https:// pick the upstream protocol and TLS', async (t) => {
    const h2c = await backend(t);
    const tlsB = await backend(t, { tls: pem(server) });
    for (const [to, env] of [
      [`h2c://127.0.0.1:${h2c.port}`, {}],
      [`https://localhost:${tlsB.port}`, { NODE_EXTRA_CA_CERTS: ca.cert }],
    ] as const) {
      const m = startMuxgate(['proxy', '--listen', '127.0.0.1:0', '--to', to, '--log-level', 'info'], env);
      t.after(() => m.stop());
      const l = await m.waitFor((x) => x.msg === 'listening');
      const port = Number(String(l.address).split(':').pop());
      const r = await curl(['-s', `http://127.0.0.1:${port}/via-cli`]);
      assert.equal(r.stdout.toString(), '/via-cli', `${to}: ${r.stderr}`);
    }
    assert.equal(h2c.streams, 1);
    assert.equal(tlsB.streams, 1);
  });
});
