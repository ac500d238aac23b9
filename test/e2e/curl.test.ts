/** curl as the client: what a real, widely used HTTP/1.1 client sees through the proxy. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy } from '../helpers/proxy.ts';
import { closedPort, curl } from '../helpers/wire.ts';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Seen {
  method: string | undefined;
  url: string | undefined;
  version: string;
  te: string | undefined;
  cl: string | undefined;
  expect: string | undefined;
  bytes: number;
  hash: string;
}

/** An upstream that hashes each request body and answers "<bytes> <sha256>"; `chunked` answers without a length. */
async function setup(t: TestContext) {
  const seen: Seen[] = [];
  const up = await httpBackend((req: http.IncomingMessage, res: http.ServerResponse) => {
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    req.on('end', () => {
      const s: Seen = {
        method: req.method,
        url: req.url,
        version: req.httpVersion,
        te: req.headers['transfer-encoding'],
        cl: req.headers['content-length'],
        expect: req.headers.expect,
        bytes,
        hash: h.digest('hex'),
      };
      seen.push(s);
      const out = `${bytes} ${s.hash}`;
      if (req.url === '/chunked') {
        res.write(out.slice(0, 10));
        res.end(out.slice(10));
      } else {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': out.length });
        res.end(out);
      }
    });
  });
  t.after(() => up.close());
  const proxy = await startProxy({ upstreams: [up.addr] });
  t.after(() => proxy.close());
  return { up, proxy, seen };
}

async function tempFile(t: TestContext, data: Buffer): Promise<string> {
  const file = join(tmpdir(), `muxgate-curl-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.bin`);
  await writeFile(file, data);
  t.after(() => rm(file, { force: true }));
  return file;
}

/** Splits `curl -i` output into the final head (status line + fields) and the body. */
function splitResponse(out: Buffer): { status: number; head: string; body: string } {
  const text = out.toString('latin1');
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    assert.notEqual(end, -1, `no header end in ${JSON.stringify(text)}`);
    const head = rest.slice(0, end);
    const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head)?.[1]);
    rest = rest.slice(end + 4);
    if (status >= 200) return { status, head, body: rest };
  }
}

describe('curl through the proxy', () => {
  it('GET', async (t) => {
    const { proxy, seen } = await setup(t);
    const r = await curl(['-sS', '-i', `${proxy.url}/hello?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    const res = splitResponse(r.stdout);
    assert.equal(res.status, 200);
    assert.match(res.head, /^via: 1\.1 muxgate$/im);
    assert.equal(res.body, `0 ${sha256('')}`);
    assert.deepEqual(
      seen.map((s) => [s.method, s.url]),
      [['GET', '/hello?x=1']],
    );
  });

  it('POST --data-binary of 2 MB: Expect: 100-continue, 100 relayed, body intact', async (t) => {
    const { proxy, seen } = await setup(t);
    const data = randomBytes(2 * 1024 * 1024);
    const file = await tempFile(t, data);
    const r = await curl(['-sS', '-v', '--data-binary', `@${file}`, `${proxy.url}/upload`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^> Expect: 100-continue\r?$/m);
    assert.match(r.stderr, /^< HTTP\/1\.1 100 Continue\r?$/m);
    assert.match(r.stderr, /^< HTTP\/1\.1 200 OK\r?$/m);
    assert.equal(r.stdout.toString(), `${data.length} ${sha256(data)}`);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.method, 'POST');
    assert.equal(seen[0]!.cl, String(data.length));
  });

  it('chunked upload from stdin (-H "Transfer-Encoding: chunked" -T -)', async (t) => {
    const { proxy, seen } = await setup(t);
    const data = randomBytes(700 * 1024 + 17);
    const r = await curl(['-sS', '-H', 'Transfer-Encoding: chunked', '-T', '-', `${proxy.url}/stream`], {
      input: data,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `${data.length} ${sha256(data)}`);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.method, 'PUT');
    assert.equal(seen[0]!.te, 'chunked', 'the upstream got the body chunked');
    assert.equal(seen[0]!.cl, undefined);
  });

  it('--http1.0: a chunked upstream response arrives de-chunked and the connection is closed', async (t) => {
    const { proxy, seen } = await setup(t);
    const r = await curl(['-sS', '-i', '-v', '--http1.0', `${proxy.url}/chunked`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^> GET \/chunked HTTP\/1\.0\r?$/m);
    const res = splitResponse(r.stdout);
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.head, /transfer-encoding/i);
    assert.match(res.head, /^connection: close$/im);
    assert.equal(res.body, `0 ${sha256('')}`);
    assert.match(r.stderr, /Closing connection/);
    assert.doesNotMatch(r.stderr, /left intact/);
    assert.equal(seen[0]!.version, '1.1', 'the upstream is spoken to in HTTP/1.1');
  });

  it('reuses one keep-alive connection for two URLs in one invocation', async (t) => {
    const { proxy, seen } = await setup(t);
    const r = await curl([
      '-sS',
      '-o',
      '/dev/null',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{num_connects}\\n',
      `${proxy.url}/one`,
      `${proxy.url}/chunked`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.toString().trim().split('\n'), ['200 1', '200 0']);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/one', '/chunked'],
    );
  });

  it('shows muxgate-error with -i on a 502 from an endpoint nobody listens on', async (t) => {
    const port = await closedPort();
    const proxy = await startProxy({ upstreams: [`127.0.0.1:${port}`] });
    t.after(() => proxy.close());
    const r = await curl(['-sS', '-i', `${proxy.url}/`]);
    assert.equal(r.code, 0, r.stderr);
    const res = splitResponse(r.stdout);
    assert.equal(res.status, 502);
    assert.match(res.head, /^muxgate-error: upstream_connect_failed$/im);
    assert.match(res.body, /upstream_connect_failed/);
  });
});
