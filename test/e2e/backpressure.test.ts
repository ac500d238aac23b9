/**
 * Large responses to a client that reads slowly. Upstream reads land in one shared buffer that the next
 * read overwrites, so every byte the proxy has to keep while the client's socket is full must have been
 * copied: a missed copy shows up here as a corrupted body.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { httpBackend, rawBackend, readHead } from '../helpers/backend.ts';
import { h2cBackend } from '../helpers/h2-backend.ts';
import { startProxy } from '../helpers/proxy.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** GETs `path` with a raw socket that pauses for `pauseMs` after every `every` bytes; returns the body. */
function slowGet(port: number, path: string, every: number, pauseMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(`GET ${path} HTTP/1.1\r\nHost: slow\r\nConnection: close\r\n\r\n`),
    );
    const chunks: Buffer[] = [];
    let sinceLastPause = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('slow client timed out'));
    }, 30_000);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      sinceLastPause += c.length;
      if (sinceLastPause >= every) {
        sinceLastPause = 0;
        s.pause();
        setTimeout(() => s.resume(), pauseMs);
      }
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const headEnd = all.indexOf('\r\n\r\n');
      resolve(all.subarray(headEnd + 4));
    });
  });
}

/** Runs `once(n)` again and again (at most `max` times) until stop(), which resolves with the count. */
function meanwhile(max: number, once: (n: number) => Promise<void>): { stop(): Promise<number> } {
  let stopped = false;
  const done = (async () => {
    let n = 0;
    while (!stopped && n < max) await once(n++);
    return n;
  })();
  return {
    stop() {
      stopped = true;
      return done;
    },
  };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', pos);
    const size = Number.parseInt(b.subarray(pos, eol).toString('latin1'), 16);
    if (size === 0) return Buffer.concat(out);
    out.push(b.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
}

/** Sends `body` as a POST as fast as the socket takes it, in odd-sized writes; resolves with the response body. */
function fastPost(port: number, path: string, body: Buffer, pipelinedGet: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`POST ${path} HTTP/1.1\r\nHost: up\r\nContent-Length: ${body.length}\r\n\r\n`);
      for (let off = 0; off < body.length; off += 50_000) s.write(body.subarray(off, off + 50_000));
      // A pipelined request right behind the body: it arrives in the same reads as the body's tail.
      s.write(
        pipelinedGet
          ? 'GET /after HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n'
          : 'POST /tiny HTTP/1.1\r\nHost: up\r\nContent-Length: 4\r\nConnection: close\r\n\r\ntiny',
      );
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('upload timed out'));
    }, 30_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/** POSTs `body` in the same write as its head (one read at the proxy); resolves with the response body. */
async function postInOneWrite(port: number, path: string, body: Buffer): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  const head = `POST ${path} HTTP/1.1\r\nHost: up\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  s.write(Buffer.concat([Buffer.from(head), body]));
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => s.once('close', r));
  const all = Buffer.concat(chunks).toString('latin1');
  return all.slice(all.indexOf('\r\n\r\n') + 4);
}

/** A GET with an `x-probe` field, written in one piece; resolves with the response body. */
async function getInOneWrite(port: number, path: string, probe: string): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(`GET ${path} HTTP/1.1\r\nHost: up\r\nX-Probe: ${probe}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => s.once('close', r));
  const all = Buffer.concat(chunks).toString('latin1');
  return all.slice(all.indexOf('\r\n\r\n') + 4);
}

/**
 * A proxy whose cluster has one pooled connection, kept busy by a GET /hold that the backend answers
 * after 300 ms: requests sent meanwhile wait in the pool queue. `answer` serves every other request.
 */
async function busyPool(
  t: TestContext,
  directIo: boolean,
  answer: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ port: number; held: Promise<string> }> {
  const backend = await httpBackend((req, res) => {
    if (req.url === '/hold') setTimeout(() => res.end('held'), 300);
    else answer(req, res);
  });
  t.after(() => backend.close());
  const proxy = await startProxy({
    upstreams: [backend.addr],
    cluster: { pool: { max_connections: 1 } },
    config: { direct_io: directIo },
  });
  t.after(() => proxy.close());
  const held = fetch(`${proxy.url}/hold`).then((r) => r.text());
  await new Promise((r) => setTimeout(r, 50));
  return { port: proxy.port, held };
}

// Every case runs on both I/O paths: direct reads and writes on the sockets' handles (the default), and
// net.Socket streams (`direct_io: false`).
for (const directIo of [true, false]) {
  describe(`direct_io: ${directIo}`, () => {
    test('a slow client gets large Content-Length and chunked bodies intact while other responses flow', async (t) => {
      const body = randomBytes(6 * 1024 * 1024);
      const small = randomBytes(3000);
      const backend = await httpBackend((req, res) => {
        if (req.url === '/small') {
          res.end(small);
          return;
        }
        if (req.url === '/chunked') res.writeHead(200, { 'content-type': 'application/octet-stream' });
        else res.writeHead(200, { 'content-length': body.length });
        // Many writes of odd sizes, as fast as the socket takes them.
        for (let off = 0; off < body.length; off += 40_000) res.write(body.subarray(off, off + 40_000));
        res.end();
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr], config: { direct_io: directIo } });
      t.after(() => proxy.close());

      // Small responses on other connections keep reusing the shared read buffer meanwhile.
      const churn = meanwhile(2000, async () => {
        const r = await fetch(`${proxy.url}/small`);
        assert.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(small));
      });
      const [a, b] = await Promise.all([
        slowGet(proxy.port, '/length', 256 * 1024, 20),
        slowGet(proxy.port, '/chunked', 256 * 1024, 20),
      ]);
      const smallOnes = await churn.stop();
      assert.equal(a.length, body.length);
      assert.equal(sha256(a), sha256(body), 'Content-Length body intact');
      // The chunked body still carries its chunk framing: decode it before comparing.
      assert.equal(sha256(dechunk(b)), sha256(body), 'chunked body intact');
      assert.ok(smallOnes > 10, `small responses kept flowing (${smallOnes})`);
    });

    test('a response head split across reads survives other responses reusing the read buffer in between', async (t) => {
      const backend = await rawBackend(async (s) => {
        s.on('error', () => {});
        for (;;) {
          const { head } = await readHead(s).catch(() => ({ head: '' }));
          if (head === '') return;
          if (head.startsWith('GET /split')) {
            s.write(`HTTP/1.1 200 OK\r\nX-First: ${'f'.repeat(200)}`);
            await new Promise((r) => setTimeout(r, 100));
            s.write('\r\nX-Second: second\r\nContent-Length: 5\r\n\r\nsplit');
          } else {
            s.write(`HTTP/1.1 200 OK\r\nX-Filler: ${'z'.repeat(500)}\r\nContent-Length: 6\r\n\r\nfiller`);
          }
        }
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr], config: { direct_io: directIo } });
      t.after(() => proxy.close());
      const split = fetch(`${proxy.url}/split`);
      // While the split head waits, other upstream connections read into the shared buffer.
      const fillers = await Promise.all(
        Array.from({ length: 20 }, () => fetch(`${proxy.url}/fill`).then((r) => r.text())),
      );
      assert.deepEqual(new Set(fillers), new Set(['filler']));
      const r = await split;
      assert.equal(r.headers.get('x-first'), 'f'.repeat(200));
      assert.equal(r.headers.get('x-second'), 'second');
      assert.equal(await r.text(), 'split');
    });

    test('large uploads to an upstream that reads slowly arrive intact while other uploads reuse the read buffer', async (t) => {
      // Client reads land in one shared buffer too: body bytes the upstream's socket cannot take at once,
      // and a pipelined request that arrives with the body's tail, must have been copied.
      const bodies = [randomBytes(24 * 1024 * 1024), randomBytes(3 * 1024 * 1024 + 7)];
      const seen = new Map<string, string>();
      const backend = await httpBackend((req, res) => {
        const chunks: Buffer[] = [];
        const slow = req.url === '/slow';
        // The slow one reads nothing for a while: kernel buffers fill and muxgate's writes have to wait.
        if (slow) {
          req.pause();
          setTimeout(() => req.resume(), 400);
        }
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const got = Buffer.concat(chunks);
          seen.set(`${req.method} ${req.url} ${got.length}`, sha256(got));
          res.end(`${req.method} ${req.url} ${got.length}`);
        });
      });
      t.after(() => backend.close());
      const proxy = await startProxy({ upstreams: [backend.addr], config: { direct_io: directIo } });
      t.after(() => proxy.close());
      // Uploads on other connections keep overwriting the shared read buffer while the slow one waits.
      const churn = meanwhile(200, async (n) => {
        const small = randomBytes(200_000 + n);
        await fastPost(proxy.port, '/churn', small, true);
        assert.equal(seen.get(`POST /churn ${small.length}`), sha256(small), 'churn upload intact');
      });
      const [a, b] = await Promise.all([
        fastPost(proxy.port, '/slow', bodies[0]!, true),
        fastPost(proxy.port, '/fast', bodies[1]!, false),
      ]);
      assert.ok((await churn.stop()) > 3, 'other uploads ran meanwhile');
      assert.equal(seen.get(`POST /slow ${bodies[0]!.length}`), sha256(bodies[0]!), 'slow upload intact');
      assert.equal(seen.get(`POST /fast ${bodies[1]!.length}`), sha256(bodies[1]!), 'fast upload intact');
      assert.match(a, new RegExp(`POST /slow ${bodies[0]!.length}[\\s\\S]*GET /after 0$`));
      assert.match(b, new RegExp(`POST /fast ${bodies[1]!.length}[\\s\\S]*POST /tiny 4$`));
      assert.equal(seen.get('POST /tiny 4'), sha256(Buffer.from('tiny')));
    });

    test('a body that came with its head and waits for a pooled connection is kept intact', async (t) => {
      // The only pooled connection is busy, so the POST waits in the queue holding its body, while other
      // clients' requests are read into the same shared buffer.
      const { port, held } = await busyPool(t, directIo, (req, res) => {
        const h = createHash('sha256');
        req.on('data', (c: Buffer) => h.update(c));
        req.on('end', () => res.end(h.digest('hex')));
      });
      const bodies = Array.from({ length: 6 }, (_, i) => randomBytes(20_000 + i * 3001));
      const answers = await Promise.all(bodies.map((b, i) => postInOneWrite(port, `/p${i}`, b)));
      assert.equal(await held, 'held');
      assert.deepEqual(
        answers,
        bodies.map((b) => sha256(b)),
      );
    });

    test('request heads that wait for a pooled connection are forwarded intact', async (t) => {
      // A head is parsed where it was read; one that waits in the pool queue must not point into the
      // shared read buffer, which the other clients' requests overwrite meanwhile.
      const { port, held } = await busyPool(t, directIo, (req, res) => {
        res.end(`${req.url} ${req.headers['x-probe']}`);
      });
      const probes = Array.from({ length: 8 }, (_, i) => randomBytes(10 + i * 7).toString('hex'));
      const answers = await Promise.all(probes.map((p, i) => getInOneWrite(port, `/q${i}`, p)));
      assert.equal(await held, 'held');
      assert.deepEqual(
        answers,
        probes.map((p, i) => `/q${i} ${p}`),
      );
    });

    test('a body that came with its head is kept intact on its way to an HTTP/2 upstream', async (t) => {
      const backend = await h2cBackend({
        onStream: (stream) => {
          const h = createHash('sha256');
          stream.on('data', (c: Buffer) => h.update(c));
          stream.on('end', () => {
            const hex = h.digest('hex');
            stream.respond({ ':status': 200, 'content-length': hex.length });
            stream.end(hex);
          });
        },
      });
      t.after(() => backend.close());
      const proxy = await startProxy({
        upstreams: [backend.addr],
        cluster: { protocol: 'http2' },
        config: { direct_io: directIo },
      });
      t.after(() => proxy.close());
      // A first request opens the session, so the POSTs below find it ready at once.
      assert.equal(await postInOneWrite(proxy.port, '/warm', Buffer.from('x')), sha256(Buffer.from('x')));
      const bodies = Array.from({ length: 8 }, (_, i) => randomBytes(30_000 + i * 777));
      const answers = await Promise.all(bodies.map((b, i) => postInOneWrite(proxy.port, `/p${i}`, b)));
      assert.deepEqual(
        answers,
        bodies.map((b) => sha256(b)),
      );
    });
  });
}
