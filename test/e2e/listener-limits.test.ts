/**
 * Connection limits on HTTP listeners: at max_connections a new connection is held (accepted, not
 * read) until another closes, then served; the overflow beyond accept_queue_size and a client over
 * max_connections_per_client are closed, each counted with its code; over TLS the limits apply once
 * the handshake is done.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { connect } from '../helpers/wire.ts';

const GET = 'GET / HTTP/1.1\r\nhost: example.test\r\n\r\n';

describe('HTTP listener connection limits', () => {
  let backend: Backend<http.Server>;
  before(async () => {
    backend = await httpBackend((_req, res) => res.end('ok'));
  });
  after(() => backend.close());

  for (const protocol of ['http1', 'auto'] as const) {
    test(`${protocol}: a connection beyond max_connections waits, unanswered, until one closes`, async (t) => {
      const proxy = await startProxy({
        upstreams: [backend.addr],
        listener: { protocol, max_connections: 1, accept_queue_size: 1 },
      });
      t.after(() => proxy.close());
      const a = await connect(proxy.port, t);
      a.write(GET);
      assert.equal((await a.readResponse()).status, 200);
      const b = await connect(proxy.port, t);
      b.write(GET);
      await waitUntil(() => proxy.server.snapshot().listeners[0]?.connections_held === 1, 'b is held');
      const c = await connect(proxy.port, t);
      assert.equal((await c.readToEnd()).length, 0, 'the queue holds one: c is closed');
      // a is still open and keeps being served; b has had no answer.
      a.write(GET);
      assert.equal((await a.readResponse()).status, 200);
      a.socket.destroy();
      assert.equal((await b.readResponse()).status, 200, 'b is served once a closed');
      const l = proxy.server.snapshot().listeners[0];
      assert.equal(l?.error_codes.too_many_connections, 1);
      assert.equal(l?.connections_held_total, 1);
    });
  }

  test("max_connections_per_client closes a client's extra connection at once", async (t) => {
    const proxy = await startProxy({
      upstreams: [backend.addr],
      listener: { max_connections_per_client: 2 },
    });
    t.after(() => proxy.close());
    const a = await connect(proxy.port, t);
    const b = await connect(proxy.port, t);
    a.write(GET);
    b.write(GET);
    assert.equal((await a.readResponse()).status, 200);
    assert.equal((await b.readResponse()).status, 200);
    const c = await connect(proxy.port, t);
    assert.equal((await c.readToEnd()).length, 0);
    a.socket.destroy();
    await waitUntil(() => proxy.server.snapshot().listeners[0]?.connections_open === 1, 'a is gone');
    const e = await connect(proxy.port, t);
    e.write(GET);
    assert.equal((await e.readResponse()).status, 200, 'a slot freed by a closed connection is reusable');
    assert.equal(proxy.server.snapshot().listeners[0]?.error_codes.too_many_connections_per_client, 1);
  });
});
