/**
 * A `protocol: auto` cleartext listener tells HTTP/2 from HTTP/1.1 by the first bytes (the preface
 * sniff in src/listener/http-listener.ts), reading them through the shared direct-read buffer or,
 * with `direct_io: false`, through the socket's stream. Both ways: a preface cut into pieces, an
 * HTTP/1.1 request that starts like the preface, a request and its preface in one read, and a client
 * that sends nothing.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import type http from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { CLIENT_PREFACE, FLAG_ACK, H2FrameClient, SETTINGS } from '../helpers/h2-frames.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { sleep } from '../helpers/wait.ts';
import { connect } from '../helpers/wire.ts';

const PREFACE = Buffer.from(CLIENT_PREFACE, 'latin1');
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);

async function setup(t: TestContext, directIo: boolean): Promise<{ p: TestProxy; seen: string[] }> {
  const seen: string[] = [];
  const up = await httpBackend((req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push(`${req.method} ${req.url}`);
    res.end('ok\n');
  });
  t.after(() => up.close());
  const p = await startProxy({
    upstreams: [up.addr],
    listener: { protocol: 'auto', header_timeout: '300ms' },
    config: { direct_io: directIo },
  });
  t.after(() => p.close());
  return { p, seen };
}

for (const directIo of [true, false]) {
  describe(`protocol auto: the preface sniff (direct_io ${directIo})`, () => {
    it('a preface in pieces, then a request', async (t) => {
      const { p, seen } = await setup(t, directIo);
      const c = await H2FrameClient.connect(p.port, { preface: false });
      t.after(() => c.destroy());
      // The last piece goes with our SETTINGS: the client acknowledges the server's at once, and a
      // SETTINGS ACK before our first SETTINGS would be a protocol error.
      for (const piece of [PREFACE.subarray(0, 1), PREFACE.subarray(1, 10)]) {
        c.write(piece);
        await sleep(20);
      }
      c.write(Buffer.concat([PREFACE.subarray(10), EMPTY_SETTINGS]));
      await c.next((f) => f.type === SETTINGS && (f.flags & FLAG_ACK) === 0);
      c.request(1, '/pieces');
      const r = await c.response(1);
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'ok\n');
      assert.deepEqual(seen, ['GET /pieces']);
    });

    it('the preface, SETTINGS and a request in one read', async (t) => {
      const { p, seen } = await setup(t, directIo);
      const c = await H2FrameClient.connect(p.port, { preface: false });
      t.after(() => c.destroy());
      c.batch(() => {
        c.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
        c.request(1, '/together');
      });
      const r = await c.response(1);
      assert.equal(r.status, 200);
      assert.deepEqual(seen, ['GET /together']);
    });

    it('HTTP/1.1 that starts like the preface, in pieces', async (t) => {
      const { p, seen } = await setup(t, directIo);
      const s = await connect(p.port, t);
      // "PR" matches the preface; "PRO" cannot.
      s.write('PR');
      await sleep(20);
      s.write('OPFIND /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n');
      const r = await s.readResponse();
      assert.equal(r.status, 200);
      assert.deepEqual(seen, ['PROPFIND /x']);
      // The connection goes on as HTTP/1.1.
      s.write('GET /y HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await s.readResponse()).status, 200);
      assert.deepEqual(seen, ['PROPFIND /x', 'GET /y']);
    });

    it('a client that sends nothing, or only part of the preface, is closed after header_timeout', async (t) => {
      const { p, seen } = await setup(t, directIo);
      const silent = await connect(p.port, t);
      const partial = await connect(p.port, t);
      partial.write(PREFACE.subarray(0, 5));
      assert.equal(await silent.waitEnded(3000), true);
      assert.equal(await partial.waitEnded(3000), true);
      assert.deepEqual(seen, []);
    });
  });
}
