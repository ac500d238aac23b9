/**
 * HTTP/1.1 message forwarding through the proxy (RFC 9110 / RFC 9112): bodies by every framing,
 * streaming, Expect: 100-continue, bodiless responses, interim responses, pipelining, connection
 * management and HTTP/1.0 peers on either side. Clients are raw sockets (exact bytes), node:http,
 * fetch and curl; upstreams are node:http or scripted raw sockets.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpBackend, rawBackend, readHead } from '../helpers/backend.ts';
import { startProxy, type ProxyOptions } from '../helpers/proxy.ts';
import { connect, curl, deferred, field, fieldNames, rawHttpBackend, within } from '../helpers/wire.ts';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

async function proxyTo(t: TestContext, addrs: string[], o: Omit<ProxyOptions, 'upstreams'> = {}) {
  const proxy = await startProxy({ upstreams: addrs, ...o });
  t.after(() => proxy.close());
  return proxy;
}

async function nodeUpstream(t: TestContext, handler: http.RequestListener) {
  const b = await httpBackend(handler);
  t.after(() => b.close());
  return b;
}

async function rawUpstream(t: TestContext, onRequest: Parameters<typeof rawHttpBackend>[0]) {
  const b = await rawHttpBackend(onRequest);
  t.after(() => b.close());
  return b;
}

async function waitEnded(c: { ended: boolean }): Promise<void> {
  while (!c.ended) await sleep(10);
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Writes `parts` one by one with a pause between, so they arrive as separate segments. */
async function writeSlowly(c: { write(d: string | Buffer): void }, parts: (string | Buffer)[]): Promise<void> {
  for (const p of parts) {
    c.write(p);
    await sleep(5);
  }
}

describe('Content-Length bodies', () => {
  it('relays request and response bodies framed by Content-Length', async (t) => {
    const seen: { cl?: string | undefined; te?: string | undefined; body: string }[] = [];
    const up = await nodeUpstream(t, async (req, res) => {
      const body = (await readAll(req)).toString();
      seen.push({ cl: req.headers['content-length'], te: req.headers['transfer-encoding'], body });
      const out = `got ${body.length}: ${body}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);

    c.write('POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 11\r\n\r\nhello=world');
    const r1 = await c.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(field(r1, 'content-length'), '19');
    assert.equal(field(r1, 'transfer-encoding'), undefined);
    assert.equal(r1.body.toString(), 'got 11: hello=world');

    // An explicit zero length, then a GET, on the same connection.
    c.write('PUT /empty HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n');
    const r2 = await c.readResponse();
    assert.equal(r2.body.toString(), 'got 0: ');
    c.write('GET /nobody HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'got 0: ');

    assert.deepEqual(seen, [
      { cl: '11', te: undefined, body: 'hello=world' },
      { cl: '0', te: undefined, body: '' },
      { cl: undefined, te: undefined, body: '' },
    ]);
    assert.equal(up.accepted, 1, 'one upstream connection carried all three');
  });

  it('streams a 5 MB body both ways intact (upstream echoes as it reads)', async (t) => {
    const size = 5 * 1024 * 1024;
    const payload = randomBytes(size);
    const upstreamGot = deferred<{ n: number; hash: string }>();
    const up = await nodeUpstream(t, (req, res) => {
      const h = createHash('sha256');
      let n = 0;
      res.writeHead(200, { 'content-length': req.headers['content-length'] });
      req.on('data', (c: Buffer) => {
        h.update(c);
        n += c.length;
        res.write(c);
      });
      req.on('end', () => {
        upstreamGot.resolve({ n, hash: h.digest('hex') });
        res.end();
      });
    });
    const proxy = await proxyTo(t, [up.addr]);

    const got = await within(
      new Promise<{ status: number; cl: string | undefined; n: number; hash: string }>((resolve, reject) => {
        const req = http.request(
          { port: proxy.port, host: '127.0.0.1', method: 'POST', path: '/echo', agent: false },
          (res) => {
            const h = createHash('sha256');
            let n = 0;
            res.on('data', (c: Buffer) => {
              h.update(c);
              n += c.length;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, cl: res.headers['content-length'], n, hash: h.digest('hex') }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.setHeader('content-length', size);
        req.end(payload);
      }),
      30_000,
      'the echoed 5 MB response',
    );
    const sent = sha256(payload);
    assert.deepEqual(await upstreamGot.promise, { n: size, hash: sent }, 'upstream received the body intact');
    assert.deepEqual(got, { status: 200, cl: String(size), n: size, hash: sent }, 'client received it back intact');
  });

  it('streams a slow request body: the upstream sees the first bytes before the client has sent the rest', async (t) => {
    const total = 1024 * 1024;
    const firstBytes = deferred<number>();
    const up = await nodeUpstream(t, (req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => {
        n += c.length;
        firstBytes.resolve(n);
      });
      req.on('end', () => res.end(`received ${n}`));
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);

    c.write(`POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: ${total}\r\n\r\n`);
    c.write(Buffer.alloc(16 * 1024, 'a'));
    // The rest of the body is only sent once the upstream has seen a first part: a proxy that buffered
    // whole bodies would wait forever here.
    const early = await within(firstBytes.promise, 5000, 'the upstream to receive the first body bytes');
    assert.ok(early > 0 && early <= 16 * 1024, `upstream had ${early} bytes`);
    for (let sent = 16 * 1024; sent < total; sent += 64 * 1024) c.write(Buffer.alloc(64 * 1024, 'b'));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `received ${total}`);
  });

  it('streams a slow response body: the client sees the first bytes before the upstream has sent the rest', async (t) => {
    const total = 1024 * 1024;
    const clientGotFirst = deferred();
    const up = await nodeUpstream(t, async (_req, res) => {
      res.writeHead(200, { 'content-length': total });
      res.write(Buffer.alloc(16 * 1024, 'a'));
      await clientGotFirst.promise;
      res.end(Buffer.alloc(total - 16 * 1024, 'b'));
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /download HTTP/1.1\r\nHost: app\r\n\r\n');
    const head = (await c.readUntil('\r\n\r\n')).toString('latin1');
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.match(head, new RegExp(`\r\ncontent-length: ${total}\r\n`, 'i'));
    await c.waitBuffered(16 * 1024);
    clientGotFirst.resolve();
    const body = await c.readExactly(total);
    assert.equal(body.subarray(0, 16 * 1024).toString(), 'a'.repeat(16 * 1024));
    assert.equal(body.subarray(16 * 1024).toString(), 'b'.repeat(total - 16 * 1024));
  });
});

describe('chunked bodies', () => {
  it('relays a chunked request body to the upstream byte for byte, extensions and trailers included', async (t) => {
    const upstreamReq = deferred<{
      head: string;
      rawBody: Buffer;
      te: string[];
      cl: string | undefined;
      trailers: string;
    }>();
    const up = await rawUpstream(t, (req, r) => {
      upstreamReq.resolve({
        head: req.head,
        rawBody: req.rawBody,
        te: req.fields.filter(([n]) => n.toLowerCase() === 'transfer-encoding').map(([, v]) => v),
        cl: field(req, 'content-length'),
        trailers: JSON.stringify(req.trailers),
      });
      r.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);

    const body =
      '5\r\nhello\r\n7;name=val\r\n, world\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n';
    const head = 'POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n';
    // Split at awkward places: inside a size line, inside the data, inside a trailer.
    await writeSlowly(c, [
      head,
      body.slice(0, 2),
      body.slice(2, 14),
      body.slice(14, 40),
      body.slice(40, 70),
      body.slice(70),
    ]);
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok');

    const got = await upstreamReq.promise;
    assert.equal(got.rawBody.toString('latin1'), body);
    assert.deepEqual(got.te, ['chunked'], 'framing restated once');
    assert.equal(got.cl, undefined);
    assert.equal(
      got.trailers,
      JSON.stringify([
        ['X-Checksum', 'abc123'],
        ['X-Other', '1'],
      ]),
    );
  });

  it('relays a chunked response with trailers to the client, and the connection stays in sync', async (t) => {
    const chunkedBody =
      '4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Checksum: deadbeef\r\nX-Done: yes\r\n\r\n';
    const up = await rawUpstream(t, (req, r) => {
      if (req.target === '/chunked') {
        r.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Done\r\n\r\n${chunkedBody}`);
      } else {
        r.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
      }
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /chunked HTTP/1.1\r\nHost: app\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.chunked, true);
    assert.equal(field(r, 'trailer'), 'X-Checksum, X-Done');
    assert.equal(r.body.toString(), 'Wikipedia in\r\n\r\nchunks.');
    assert.deepEqual(r.trailers, [
      ['X-Checksum', 'deadbeef'],
      ['X-Done', 'yes'],
    ]);
    assert.equal(r.rawBody.toString('latin1'), chunkedBody, 'chunk framing relayed as received');

    c.write('GET /after HTTP/1.1\r\nHost: app\r\n\r\n');
    const r2 = await c.readResponse();
    assert.equal(r2.body.toString(), 'next');
    assert.equal(up.accepted, 1, 'the upstream connection was reused: the chunked end was found exactly');
  });
});

describe('Expect: 100-continue', () => {
  it('relays 100 Continue to a raw client that waits for it before sending the body', async (t) => {
    const up = await nodeUpstream(t, async (req, res) => {
      const body = await readAll(req);
      res.end(`${body.length} ${sha256(body)}`);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    const body = randomBytes(100_000);
    c.write(`POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
    const interim = await c.readResponse();
    assert.equal(interim.status, 100);
    assert.equal(interim.body.length, 0);
    assert.equal(c.pending, 0, 'nothing but the 100 before the body is sent');
    c.write(body);
    const final = await c.readResponse();
    assert.equal(final.status, 200);
    assert.equal(final.body.toString(), `${body.length} ${sha256(body)}`);

    // The connection is still good for a plain request.
    c.write('POST /again HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc');
    assert.equal((await c.readResponse()).body.toString(), `3 ${sha256('abc')}`);
  });

  it('closes, and says so, when the upstream gives a final answer instead of 100 Continue', async (t) => {
    const up = await rawBackend(async (s) => {
      await readHead(s);
      s.write('HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope');
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 401);
    assert.equal(r.body.toString(), 'nope');
    assert.equal(field(r, 'connection'), 'close', 'the body will never come: the connection ends here');
    assert.equal(await c.waitEnded(2000), true);
  });

  it('curl --data-binary @file sends Expect: 100-continue, gets the 100 and uploads the body', async (t) => {
    const up = await nodeUpstream(t, async (req, res) => {
      const body = await readAll(req);
      res.end(`${body.length} ${sha256(body)}`);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const data = randomBytes(1536 * 1024);
    const file = join(tmpdir(), `muxgate-expect-${process.pid}-${Date.now()}.bin`);
    await writeFile(file, data);
    const r = await curl(['-sS', '-v', '--data-binary', `@${file}`, `${proxy.url}/upload`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^> Expect: 100-continue\r?$/m);
    assert.match(r.stderr, /^< HTTP\/1\.1 100 Continue\r?$/m, 'curl saw the interim response');
    assert.match(r.stderr, /^< HTTP\/1\.1 200 OK\r?$/m);
    assert.equal(r.stdout.toString(), `${data.length} ${sha256(data)}`);
  });
});

describe('bodiless responses', () => {
  it('relays no body for HEAD even though the upstream announces a Content-Length', async (t) => {
    const up = await nodeUpstream(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1234 });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('HEAD /thing HTTP/1.1\r\nHost: app\r\n\r\n');
    const r = await c.readResponse({ method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(field(r, 'content-length'), '1234');
    c.write('GET /thing HTTP/1.1\r\nHost: app\r\n\r\n');
    // Were any body bytes relayed after the HEAD response, this would not parse as a status line.
    const r2 = await c.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.body.length, 1234);
  });

  it('drops body bytes a misbehaving upstream sends after a HEAD response', async (t) => {
    const up = await rawUpstream(t, (req, r) => {
      // Wrong on purpose: a body after a HEAD response.
      if (req.method === 'HEAD') r.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('HEAD / HTTP/1.1\r\nHost: app\r\n\r\n');
    const r = await c.readResponse({ method: 'HEAD' });
    assert.equal(field(r, 'content-length'), '5');
    c.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    const r2 = await c.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.body.toString(), 'get');
  });

  it('relays 204 and 304 without a body and keeps the connection usable', async (t) => {
    const up = await nodeUpstream(t, (req, res) => {
      if (req.url === '/204') res.writeHead(204, { 'x-kind': 'no-content' }).end();
      else if (req.url === '/304') res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' }).end();
      else res.end('fine');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('DELETE /204 HTTP/1.1\r\nHost: app\r\n\r\n');
    const r204 = await c.readResponse();
    assert.equal(r204.status, 204);
    assert.equal(field(r204, 'x-kind'), 'no-content');
    assert.equal(field(r204, 'transfer-encoding'), undefined);
    c.write('GET /304 HTTP/1.1\r\nHost: app\r\nIf-None-Match: "v1"\r\n\r\n');
    const r304 = await c.readResponse();
    assert.equal(r304.status, 304);
    assert.equal(field(r304, 'etag'), '"v1"');
    assert.equal(field(r304, 'transfer-encoding'), undefined);
    c.write('GET /ok HTTP/1.1\r\nHost: app\r\n\r\n');
    const ok = await c.readResponse();
    assert.equal(ok.body.toString(), 'fine');
    assert.equal(c.pending, 0);
    assert.equal(c.ended, false);
  });

  it('completes a 200 with Content-Length: 0, whether or not the next bytes come in the same read', async (t) => {
    const up = await rawUpstream(t, (req, r) => {
      if (req.target === '/empty') r.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    for (let i = 0; i < 3; i++) {
      c.write('GET /empty HTTP/1.1\r\nHost: app\r\n\r\n');
      const r = await c.readResponse();
      assert.equal(r.status, 200);
      assert.equal(field(r, 'content-length'), '0');
      assert.equal(r.body.length, 0);
    }
    c.write('GET /next HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'next');
    // One upstream connection served all four: each empty response left it reusable.
    assert.equal(up.accepted, 1);
  });

  it('relays a small body that arrives with its head, in a later read, or split across both', async (t) => {
    const body = 'b'.repeat(3000);
    const big = 'g'.repeat(9000); // above the size written together with the head
    const up = await rawUpstream(t, async (req, r) => {
      if (req.target === '/together') r.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      else if (req.target === '/big') r.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`);
      else {
        r.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 1000)}`);
        await sleep(30);
        r.write(body.slice(1000));
      }
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    for (const path of ['/together', '/split', '/big', '/together']) {
      c.write(`GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`);
      const r = await c.readResponse();
      assert.equal(r.body.toString(), path === '/big' ? big : body, path);
    }
    assert.equal(c.pending, 0);
    assert.equal(up.accepted, 1);
  });

  it('does not wait for a body after a 304 or 204 whose head carries a Content-Length', async (t) => {
    const up = await rawUpstream(t, (req, r) => {
      if (req.target === '/304') r.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n');
      else if (req.target === '/204') r.write('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /304 HTTP/1.1\r\nHost: app\r\n\r\n');
    const r304 = await c.readResponse();
    assert.equal(r304.status, 304);
    assert.equal(field(r304, 'content-length'), '1234');
    c.write('GET /204 HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).status, 204);
    c.write('GET /next HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'next');
    assert.equal(up.accepted, 1, 'the upstream connection stayed in sync and was reused');
  });

  it('never relays Transfer-Encoding on a 204, even when the upstream sends it (RFC 9112 §6.1)', async (t) => {
    const up = await rawUpstream(t, (req, r) => {
      if (req.target === '/204') r.write('HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('DELETE /204 HTTP/1.1\r\nHost: app\r\n\r\n');
    const r204 = await c.readResponse();
    assert.equal(r204.status, 204);
    assert.equal(field(r204, 'transfer-encoding'), undefined);
    c.write('GET /next HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'next');
  });
});

describe('interim responses', () => {
  it('relays 103 Early Hints as it comes, then the final response, in order', async (t) => {
    const clientGot103 = deferred();
    const up = await rawUpstream(t, async (_req, r) => {
      r.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n');
      await clientGot103.promise;
      r.write(
        'HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload; as=script\r\n\r\n' +
          'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nLink: </style.css>; rel=preload; as=style\r\n\r\npage',
      );
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /page HTTP/1.1\r\nHost: app\r\n\r\n');
    const first = await c.readResponse();
    assert.equal(first.status, 103);
    assert.equal(field(first, 'link'), '</style.css>; rel=preload; as=style');
    clientGot103.resolve();
    const second = await c.readResponse();
    assert.equal(second.status, 103);
    assert.equal(field(second, 'link'), '</app.js>; rel=preload; as=script');
    const final = await c.readResponse();
    assert.equal(final.status, 200);
    assert.equal(final.body.toString(), 'page');
  });

  it('does not send 1xx responses to an HTTP/1.0 client', async (t) => {
    const up = await rawUpstream(t, (_req, r) => {
      r.write(
        'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
      );
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET / HTTP/1.0\r\nHost: app\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok');
    assert.equal(await c.waitEnded(2000), true);
    assert.equal(c.pending, 0);
  });
});

describe('pipelining', () => {
  it('answers pipelined requests in order, each routed to its own cluster, a slow one first', async (t) => {
    const bySide = { a: [] as string[], b: [] as string[] };
    const a = await nodeUpstream(t, async (req, res) => {
      bySide.a.push(`${req.method} ${req.url}`);
      const body = (await readAll(req)).toString();
      if (req.url === '/a/slow') await sleep(150);
      res.end(`a:${req.url}:${body}`);
    });
    const b = await nodeUpstream(t, async (req, res) => {
      bySide.b.push(`${req.method} ${req.url}`);
      await readAll(req);
      const out = `b:${req.url}`;
      res.writeHead(200, { 'content-length': out.length });
      res.end(req.method === 'HEAD' ? undefined : out);
    });
    const proxy = await startProxy({
      clusters: { a: { endpoints: [a.addr] }, b: { endpoints: [b.addr] } },
      routes: [
        { match: { path: { prefix: '/a/' } }, cluster: 'a' },
        { match: { path: { prefix: '/b/' } }, cluster: 'b' },
      ],
    });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    c.write(
      'GET /a/slow HTTP/1.1\r\nHost: app\r\n\r\n' +
        'GET /b/1 HTTP/1.1\r\nHost: app\r\n\r\n' +
        'POST /a/echo HTTP/1.1\r\nHost: app\r\nContent-Length: 7\r\n\r\npayload' +
        'HEAD /b/2 HTTP/1.1\r\nHost: app\r\n\r\n' +
        'GET /b/3 HTTP/1.1\r\nHost: app\r\n\r\n',
    );
    const bodies: string[] = [];
    for (const method of ['GET', 'GET', 'POST', 'HEAD', 'GET']) {
      const r = await c.readResponse({ method });
      assert.equal(r.status, 200);
      bodies.push(method === 'HEAD' ? `HEAD cl=${field(r, 'content-length')}` : r.body.toString());
    }
    assert.deepEqual(bodies, ['a:/a/slow:', 'b:/b/1', 'a:/a/echo:payload', 'HEAD cl=6', 'b:/b/3']);
    assert.deepEqual(bySide, { a: ['GET /a/slow', 'POST /a/echo'], b: ['GET /b/1', 'HEAD /b/2', 'GET /b/3'] });
    assert.equal(c.ended, false);
  });

  it('answers the request that said close, closes, and forwards nothing pipelined after it', async (t) => {
    const urls: string[] = [];
    const up = await nodeUpstream(t, (req, res) => {
      urls.push(req.url ?? '');
      res.end(req.url);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write(
      'GET /1 HTTP/1.1\r\nHost: app\r\n\r\n' +
        'GET /2 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n' +
        'GET /3 HTTP/1.1\r\nHost: app\r\n\r\n',
    );
    const r1 = await c.readResponse();
    assert.equal(field(r1, 'connection'), undefined);
    const r2 = await c.readResponse();
    assert.equal(field(r2, 'connection'), 'close');
    assert.equal((await c.readToEnd(2000)).length, 0, 'nothing after the response that closed');
    assert.deepEqual([r1.body.toString(), r2.body.toString()], ['/1', '/2']);
    assert.deepEqual(urls, ['/1', '/2']);
  });
});

describe('connection management', () => {
  it('a client that half-closes after its requests gets every response, then the connection closes', async (t) => {
    const up = await nodeUpstream(t, (req, res) => {
      setTimeout(() => res.end(`answer ${req.url}`), req.url === '/slow' ? 50 : 0);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    // Two pipelined requests and the FIN in one go: the FIN arrives while the first is in flight.
    c.write('GET /slow HTTP/1.1\r\nHost: app\r\n\r\nGET /next HTTP/1.1\r\nHost: app\r\n\r\n');
    c.socket.end();
    assert.equal((await c.readResponse()).body.toString(), 'answer /slow');
    assert.equal((await c.readResponse()).body.toString(), 'answer /next');
    await within(waitEnded(c), 2000, 'the connection to close');
  });

  it('a client that half-closes in the middle of a request body makes the exchange end as downstream_closed', async (t) => {
    const bodyBytes = new Map<string, number>(); // by path, set when the upstream request closes
    const up = await nodeUpstream(t, (req, res) => {
      let n = 0;
      req.on('data', (b: Buffer) => {
        n += b.length;
      });
      req.on('close', () => bodyBytes.set(req.url ?? '', n));
      req.on('end', () => res.end('complete?'));
    });
    const proxy = await proxyTo(t, [up.addr]);
    // A first request leaves a pooled connection, so the upload below streams upstream at once.
    const warm = await connect(proxy.port, t);
    warm.write('POST /warm HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n');
    assert.equal((await warm.readResponse()).body.toString(), 'complete?');
    const c = await connect(proxy.port, t);
    c.write('POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n');
    c.write('x'.repeat(400));
    c.socket.end();
    // muxgate drops both sides: the upstream never sees a complete body, the client gets no response.
    await within(waitEnded(c), 3000, 'the connection to close');
    await within(
      (async () => {
        while (!bodyBytes.has('/upload')) await sleep(10);
      })(),
      3000,
      'the upstream request to close',
    );
    const got = bodyBytes.get('/upload')!;
    assert.ok(got < 1000, `the upstream got ${got} of 1000 body bytes, then the connection closed`);
    assert.equal(c.pending, 0, 'no response bytes reached the client');
  });

  it('honours Connection: close from the client: says so in the response and closes after it', async (t) => {
    const upstreamConnection: (string | undefined)[] = [];
    const up = await nodeUpstream(t, (req, res) => {
      upstreamConnection.push(req.headers.connection);
      res.end('bye');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.body.toString(), 'bye');
    assert.equal(field(r, 'connection'), 'close');
    assert.equal(await c.waitEnded(2000), true, 'the proxy closed the connection');

    // The client's Connection: close is hop-by-hop: the upstream connection stays pooled.
    const c2 = await connect(proxy.port, t);
    c2.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c2.readResponse()).body.toString(), 'bye');
    assert.equal(up.accepted, 1);
    assert.deepEqual(upstreamConnection, [undefined, undefined]);
  });

  it('keeps the client connection open when the upstream answers with Connection: close', async (t) => {
    const up = await nodeUpstream(t, (req, res) => {
      if (req.url === '/first') res.setHeader('connection', 'close');
      res.end(`${req.url}`);
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /first HTTP/1.1\r\nHost: app\r\n\r\n');
    const r1 = await c.readResponse();
    assert.equal(r1.body.toString(), '/first');
    assert.equal(field(r1, 'connection'), undefined, 'the upstream Connection header is not relayed');
    c.write('GET /second HTTP/1.1\r\nHost: app\r\n\r\n');
    const r2 = await c.readResponse();
    assert.equal(r2.body.toString(), '/second');
    assert.equal(up.accepted, 2, 'the second request went over a new upstream connection');
    assert.equal(c.ended, false);
  });
});

describe('the request line sent upstream', () => {
  it("is the client's line when it can be, and rebuilt for absolute-form, HTTP/1.0 and prefix_rewrite", async (t) => {
    // An HTTP/1.1 line with an untouched target is copied upstream as bytes; the others are rebuilt.
    const lines: string[] = [];
    const up = await rawUpstream(t, (req, r) => {
      lines.push(`${req.method} ${req.target} ${req.version} host=${field(req, 'host')}`);
      r.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const proxy = await proxyTo(t, [up.addr], {
      routes: [{ match: { path: { prefix: '/api/' } }, prefix_rewrite: '/v2/', cluster: 'up' }, { cluster: 'up' }],
    });
    const c = await connect(proxy.port, t);
    const sent = [
      'GET /a?b=1 HTTP/1.1',
      'POST /form HTTP/1.1',
      'HEAD /h HTTP/1.1',
      'PURGE /x HTTP/1.1', // an extension method
      'get /lower HTTP/1.1', // methods are case-sensitive: "get" is not GET, and goes as it came
      'GET http://app/abs?q=1 HTTP/1.1',
      'OPTIONS * HTTP/1.1',
      'GET /api/users?id=7 HTTP/1.1',
    ];
    for (const line of sent) {
      const body = line.startsWith('POST') ? 'Content-Length: 0\r\n' : '';
      c.write(`${line}\r\nHost: app\r\n${body}\r\n`);
      assert.equal((await c.readResponse({ method: line.slice(0, line.indexOf(' ')) })).status, 200);
    }
    const old = await connect(proxy.port, t);
    old.write('GET /old HTTP/1.0\r\nHost: app\r\n\r\n');
    assert.equal((await old.readResponse()).status, 200);
    assert.deepEqual(lines, [
      'GET /a?b=1 HTTP/1.1 host=app',
      'POST /form HTTP/1.1 host=app',
      'HEAD /h HTTP/1.1 host=app',
      'PURGE /x HTTP/1.1 host=app',
      'get /lower HTTP/1.1 host=app',
      'GET /abs?q=1 HTTP/1.1 host=app',
      'OPTIONS * HTTP/1.1 host=app',
      'GET /v2/users?id=7 HTTP/1.1 host=app',
      'GET /old HTTP/1.1 host=app',
    ]);
  });
});

describe('HTTP/1.0', () => {
  it('closes after the response unless the HTTP/1.0 client asked for keep-alive', async (t) => {
    const up = await nodeUpstream(t, (req, res) => {
      res.writeHead(200, { 'content-length': 2 });
      res.end(req.httpVersion === '1.1' ? 'ok' : 'no');
    });
    const proxy = await proxyTo(t, [up.addr]);

    const c = await connect(proxy.port, t);
    c.write('GET / HTTP/1.0\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.body.toString(), 'ok', 'the upstream is spoken to in HTTP/1.1');
    assert.equal(field(r, 'connection'), 'close');
    assert.equal(await c.waitEnded(2000), true);

    const k = await connect(proxy.port, t);
    k.write('GET /1 HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n');
    const k1 = await k.readResponse();
    assert.equal(field(k1, 'connection'), 'keep-alive');
    assert.equal(k1.body.toString(), 'ok');
    k.write('GET /2 HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n');
    const k2 = await k.readResponse();
    assert.equal(field(k2, 'connection'), 'keep-alive');
    k.write('GET /3 HTTP/1.0\r\nHost: app\r\n\r\n');
    const k3 = await k.readResponse();
    assert.equal(field(k3, 'connection'), 'close');
    assert.equal(await k.waitEnded(2000), true);
  });

  it('de-chunks a chunked upstream response for an HTTP/1.0 client and closes after it', async (t) => {
    const up = await nodeUpstream(t, (_req, res) => {
      res.write('first part, ');
      res.write('second part, ');
      res.end('end');
    });
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET / HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(field(r, 'transfer-encoding'), undefined);
    assert.equal(field(r, 'content-length'), undefined);
    assert.equal(field(r, 'connection'), 'close', 'the end of the body is the end of the connection');
    assert.equal(r.body.toString(), 'first part, second part, end');
    assert.equal(c.closed || c.ended, true);
  });
});

describe('close-delimited upstream responses', () => {
  const body = Buffer.alloc(100_000, 'z');
  async function closeDelimitedUpstream(t: TestContext) {
    return rawUpstream(t, async (req, r) => {
      const status = req.target === '/v10' ? 'HTTP/1.0 200 OK' : 'HTTP/1.1 200 OK\r\nConnection: close';
      r.write(`${status}\r\nContent-Type: text/plain\r\nX-Path: ${req.target}\r\n\r\n`);
      for (let i = 0; i < body.length; i += 25_000) {
        r.write(body.subarray(i, i + 25_000));
        await sleep(5);
      }
      r.socket.end();
      return false;
    });
  }

  it('re-chunks it for an HTTP/1.1 client, whose connection stays usable', async (t) => {
    const up = await closeDelimitedUpstream(t);
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    for (const path of ['/v10', '/v11']) {
      c.write(`GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`);
      const r = await c.readResponse();
      assert.equal(r.status, 200);
      assert.equal(field(r, 'x-path'), path);
      assert.equal(field(r, 'transfer-encoding'), 'chunked');
      assert.equal(field(r, 'connection'), undefined);
      assert.ok(r.body.equals(body), `${path}: body relayed intact`);
    }
    assert.equal(up.accepted, 2);
    assert.equal(c.ended, false);
  });

  it('relays it close-delimited to an HTTP/1.0 client', async (t) => {
    const up = await closeDelimitedUpstream(t);
    const proxy = await proxyTo(t, [up.addr]);
    const c = await connect(proxy.port, t);
    c.write('GET /v10 HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(field(r, 'transfer-encoding'), undefined);
    assert.equal(field(r, 'connection'), 'close');
    assert.ok(r.body.equals(body));
    assert.deepEqual(
      fieldNames(r).filter((n) => n === 'content-length'),
      [],
    );
  });
});
