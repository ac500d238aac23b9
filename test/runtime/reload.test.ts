/**
 * MuxgateServer.reload in process: what stays (sockets, client connections, upstream pools), what
 * changes (routes, endpoints), what drains (a removed listener finishes its in-flight request), and
 * that a reload failing half-way (an address in use) changes nothing.
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { connect } from '../helpers/wire.ts';
import { validateConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';

/** A backend that answers "<name> <url> from port <client port>": which upstream connection carried it. */
async function namedBackend(t: TestContext, name: string, delayMs = 0): Promise<Backend<import('node:http').Server>> {
  const b = await httpBackend((req, res) => {
    setTimeout(() => res.end(`${name} ${req.url} from ${req.socket.remotePort}`), delayMs);
  });
  t.after(() => b.close());
  return b;
}

function config(p: TestProxy, over: Record<string, unknown>): Config {
  return validateConfig(
    {
      log_level: 'warn',
      admin: false,
      access_log: { enabled: false },
      listeners: [{ name: 'test', address: `127.0.0.1:${p.port}`, routes: [{ cluster: 'up' }] }],
      ...over,
    },
    'reload test',
  );
}

async function get(port: number, path: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return r.text();
}

describe('MuxgateServer.reload', () => {
  it('a new route takes new requests on the same client connection; unchanged pools keep their upstream connection', async (t) => {
    const a = await namedBackend(t, 'a');
    const b = await namedBackend(t, 'b');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    const c = await connect(p.port, t);
    c.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = (await c.readResponse()).body.toString();
    assert.match(first, /^a \/one from \d+$/);
    const summary = await p.server.reload(
      config(p, {
        listeners: [
          {
            name: 'test',
            address: `127.0.0.1:${p.port}`,
            routes: [{ match: { path: { prefix: '/b/' } }, cluster: 'b' }, { cluster: 'up' }],
          },
        ],
        clusters: { up: { endpoints: [a.addr] }, b: { endpoints: [b.addr] } },
      }),
    );
    assert.deepEqual(summary.listeners.kept, ['test']);
    assert.deepEqual(summary.clusters, {
      added: ['b'],
      removed: [],
      replaced: [],
      endpoints_updated: [],
      kept: ['up'],
    });
    c.write('GET /b/two HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match((await c.readResponse()).body.toString(), /^b \/b\/two/);
    c.write('GET /three HTTP/1.1\r\nHost: x\r\n\r\n');
    const third = (await c.readResponse()).body.toString();
    assert.equal(third.split(' from ')[1], first.split(' from ')[1], 'the same upstream connection to a');
  });

  it('an endpoint added to a cluster: the endpoints that stay keep their connections', async (t) => {
    const a = await namedBackend(t, 'a');
    const b = await namedBackend(t, 'b');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    const before = await get(p.port, '/x');
    const summary = await p.server.reload(config(p, { clusters: { up: { endpoints: [a.addr, b.addr] } } }));
    assert.deepEqual(summary.clusters.endpoints_updated, ['up']);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await get(p.port, '/y'));
    const fromA = [...seen].filter((s) => s.startsWith('a '));
    assert.ok(fromA.length > 0 && [...seen].some((s) => s.startsWith('b ')), `both endpoints answer: ${[...seen]}`);
    for (const s of fromA) assert.equal(s.split(' from ')[1], before.split(' from ')[1], 'a keeps its connection');
  });

  it('a removed listener stops accepting and finishes its in-flight request', async (t) => {
    const slow = await namedBackend(t, 'slow', 300);
    const p = await startProxy({ upstreams: [slow.addr] });
    t.after(() => p.close());
    const inflight = get(p.port, '/slow');
    await new Promise((r) => setTimeout(r, 50));
    const other = await new Promise<net.Server>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => r(s));
    });
    const otherPort = (other.address() as AddressInfo).port;
    other.close();
    const summary = await p.server.reload(
      config(p, {
        listeners: [{ name: 'moved', address: `127.0.0.1:${otherPort}`, routes: [{ cluster: 'up' }] }],
        clusters: { up: { endpoints: [slow.addr] } },
      }),
    );
    assert.deepEqual(summary.listeners.removed, ['test']);
    assert.deepEqual(summary.listeners.added, ['moved']);
    await assert.rejects(fetch(`http://127.0.0.1:${p.port}/new`, { headers: { connection: 'close' } }));
    assert.match(await inflight, /^slow \/slow/);
    assert.match(await get(otherPort, '/moved'), /^slow \/moved/);
  });

  it('a reload that cannot bind a new listener changes nothing', async (t) => {
    const a = await namedBackend(t, 'a');
    const b = await namedBackend(t, 'b');
    const p = await startProxy({ upstreams: [a.addr] });
    t.after(() => p.close());
    // Held without SO_REUSEPORT: muxgate cannot share it.
    const taken = await new Promise<net.Server>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => r(s));
    });
    t.after(() => taken.close());
    const takenPort = (taken.address() as AddressInfo).port;
    await assert.rejects(
      p.server.reload(
        config(p, {
          listeners: [
            { name: 'test', address: `127.0.0.1:${p.port}`, routes: [{ cluster: 'b' }] },
            { name: 'second', address: `127.0.0.1:${takenPort}`, routes: [{ cluster: 'b' }] },
          ],
          clusters: { b: { endpoints: [b.addr] } },
        }),
      ),
      /EADDRINUSE/,
    );
    assert.match(await get(p.port, '/still'), /^a \/still/, 'the old routes and cluster still serve');
    assert.deepEqual([...p.server.clusters.keys()], ['up']);
    assert.equal(p.server.listeners.length, 1);
  });
});
