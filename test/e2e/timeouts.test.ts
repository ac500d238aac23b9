/**
 * Downstream timeouts end to end: a slowloris head is cut off by header_timeout with a 408, and idle
 * connections (after a response, or that never sent anything) are closed by idle_timeout silently.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { RawClient } from '../helpers/client.ts';
import { startProxy } from '../helpers/proxy.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const HEAD = 'GET /slow HTTP/1.1\r\nHost: timeouts.test\r\nUser-Agent: slowloris\r\n\r\n';

/** Sends `data` one byte every `everyMs` until done or the connection ends; returns bytes sent. */
async function dribble(c: RawClient, data: string, everyMs: number): Promise<number> {
  let sent = 0;
  while (sent < data.length && !c.ended && c.unread.length === 0) {
    c.send(data[sent]!);
    sent++;
    await sleep(everyMs);
  }
  return sent;
}

describe('downstream timeouts', () => {
  test('slowloris: a head arriving byte by byte beyond header_timeout gets 408 header_timeout and is closed', {
    timeout: 15_000,
  }, async (t) => {
    const backend = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], listener: { header_timeout: '300ms' } });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    // 68 bytes at one per 50ms would take 3.4s; the client keeps sending throughout, so only the
    // head deadline (not an idle timer) can cut it off.
    const sending = dribble(c, HEAD, 50);
    const r = await c.response(10_000);
    const sent = await sending;
    assert.equal(r.status, 408);
    assert.equal(r.headers['muxgate-error'], 'header_timeout');
    assert.equal(r.headers.connection, 'close');
    assert.ok(sent < HEAD.length, `the head was cut off after ${sent} of ${HEAD.length} bytes`);
    await c.closed(5000);
    assert.equal(c.unread.length, 0, 'nothing after the 408');
    assert.equal(backend.accepted, 0, 'nothing was forwarded');
    const listener = proxy.server.snapshot().listeners[0];
    assert.deepEqual(listener?.error_codes, { header_timeout: 1 });
  });

  test('the same head sent byte by byte within header_timeout is served', { timeout: 15_000 }, async (t) => {
    const backend = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], listener: { header_timeout: '5s' } });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    const sending = dribble(c, HEAD, 5);
    const r = await c.response(10_000);
    assert.equal(await sending, HEAD.length);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok');
  });

  test('a keep-alive connection idle beyond idle_timeout is closed after its last response', {
    timeout: 15_000,
  }, async (t) => {
    // The idle deadline also runs from accept() until the first request is read, so it must outlast
    // any starvation of this process there: 1 s, several times a loaded machine's scheduling noise.
    const IDLE_MS = 1000;
    const backend = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { idle_timeout: `${IDLE_MS}ms`, header_timeout: '5s' },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    let closedAt = Number.NaN;
    c.socket.once('close', () => {
      closedAt = performance.now();
    });
    const get = 'GET / HTTP/1.1\r\nHost: timeouts.test\r\n\r\n';
    // Both requests in one write: the second is already read when the first response completes, so
    // it is served on the same connection however late this process runs. (Sent after the first
    // response arrived, it would race the idle deadline that response started.)
    const sentAt = performance.now();
    c.send(get + get);
    const r1 = await c.response();
    assert.equal(r1.status, 200);
    assert.equal(r1.headers.connection, undefined, 'kept alive');
    // Still open after a response: the next request is served on the same connection.
    const r2 = await c.response();
    assert.equal(r2.status, 200);
    assert.equal(r2.headers.connection, undefined, 'kept alive');
    await c.closed(10_000);
    assert.equal(c.unread.length, 0, 'closed without sending anything after the last response');
    // The idle deadline starts when the last response is done, after the requests were sent, and it
    // is never early (it runs on performance.now(), this clock): a lower bound no load can break,
    // that a connection closed after its last response instead of idling fails.
    const idled = closedAt - sentAt;
    assert.ok(idled >= IDLE_MS, `closed ${idled.toFixed(0)} ms after the requests, before idle_timeout ${IDLE_MS} ms`);
    assert.deepEqual(proxy.server.snapshot().listeners[0]?.error_codes, {});
    await waitUntil(
      () => proxy.server.snapshot().listeners[0]?.connections_open === 0,
      'the proxy to drop the session',
    );
  });

  test('a connection that never sends anything is closed after idle_timeout with no response bytes', {
    timeout: 15_000,
  }, async (t) => {
    const backend = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { idle_timeout: '300ms', header_timeout: '5s' },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    await c.closed(5000);
    assert.equal(c.unread.length, 0, 'no bytes at all');
    assert.equal(backend.accepted, 0);
    assert.deepEqual(proxy.server.snapshot().listeners[0]?.error_codes, {});
  });

  test('header_timeout starts at the first byte: a silent connection is governed by idle_timeout only', {
    timeout: 15_000,
  }, async (t) => {
    const backend = await httpBackend((_req, res) => res.end('ok'));
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { idle_timeout: '5s', header_timeout: '200ms' },
    });
    t.after(() => proxy.close());
    const c = await RawClient.connect(proxy.port);
    t.after(() => c.close());
    await sleep(800);
    assert.equal(c.ended, false, 'still open after 4 header timeouts of silence');
    const r = await c.request('GET / HTTP/1.1\r\nHost: timeouts.test\r\n\r\n');
    assert.equal(r.status, 200);
  });
});
