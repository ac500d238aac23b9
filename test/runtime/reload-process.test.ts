/**
 * Hot reload of a running muxgate process, as an operator does it: 1,000 WebSockets and 100 TCP
 * tunnels stay open through five reloads (a route and a cluster added, clusters' endpoints changed, a
 * listener removed, added back, and one replaced by a change of its own settings), asked for by
 * POST /reload, SIGHUP and `muxgate reload -c`; a bad config in between is refused and changes
 * nothing. None of the tunnels is lost: each still echoes after the last reload.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { echoBackend, httpBackend } from '../helpers/backend.ts';
import { tmpDir } from '../helpers/certs.ts';
import { muxgate, portOf, startMuxgate } from '../helpers/cli.ts';
import { waitUntil } from '../helpers/wait.ts';
import { nextMessage, type WebSocket, wsBackend, wsConnect } from '../helpers/ws.ts';

const dir = tmpDir('muxgate-reload-');
const WEBSOCKETS = 1000;
const TCP_TUNNELS = 100;

/** One line out, the same line back. */
function echoes(c: net.Socket, msg: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got === msg) {
        c.off('data', onData);
        resolve();
      }
    };
    c.on('data', onData);
    c.once('error', reject);
    c.write(msg);
  });
}

async function wsEchoes(w: WebSocket, msg: string): Promise<void> {
  const reply = nextMessage(w);
  w.send(msg);
  assert.equal((await reply).data.toString(), msg);
}

async function inBatches<T>(n: number, batch: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const all: T[] = [];
  for (let i = 0; i < n; i += batch) {
    all.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => make(i + j)))));
  }
  return all;
}

describe('hot reload of a running process', () => {
  it('keeps 1,000 WebSockets and 100 TCP tunnels through five reloads; a bad config changes nothing', async () => {
    const wsA = await wsBackend();
    const wsB = await wsBackend();
    after(() => Promise.all([wsA.close(), wsB.close()]));
    const echoA = await echoBackend();
    const echoB = await echoBackend();
    after(() => Promise.all([echoA.close(), echoB.close()]));
    const api = await httpBackend((req, res) => res.end(`api saw ${req.url}`));
    after(() => api.close());

    const file = `${dir}/muxgate.yaml`;
    const pidFile = `${dir}/muxgate.pid`;
    // webPort and dbPort are fixed after the first start, so that the config can name them.
    const write = (o: {
      wsEndpoints: string[];
      echoEndpoints: string[];
      apiRoute: boolean;
      extra: boolean;
      webIdle: string;
      ports: { web: number; db: number; admin: number };
    }) =>
      writeFileSync(
        file,
        `log_level: info
access_log: { enabled: false }
pid_file: ${pidFile}
admin: { address: 127.0.0.1:${o.ports.admin} }
listeners:
  - name: web
    address: 127.0.0.1:${o.ports.web}
    idle_timeout: ${o.webIdle}
    routes:
${o.apiRoute ? '      - { match: { path: { prefix: /api/ } }, cluster: api }\n' : ''}      - { cluster: ws, upgrades: [websocket] }
  - name: db
    address: 127.0.0.1:${o.ports.db}
    protocol: tcp
    cluster: echo
${o.extra ? '  - name: extra\n    address: 127.0.0.1:0\n    routes: [{ cluster: ws }]\n' : ''}clusters:
  ws: { endpoints: ${JSON.stringify(o.wsEndpoints)}, pool: { max_connections: 2000 } }
  echo: { endpoints: ${JSON.stringify(o.echoEndpoints)} }
${o.apiRoute ? `  api: { endpoints: ["${api.addr}"] }\n` : ''}`,
      );
    const base = {
      wsEndpoints: [wsA.addr],
      echoEndpoints: [`127.0.0.1:${echoA.port}`],
      apiRoute: false,
      extra: true,
      webIdle: '60s',
      ports: { web: 0, db: 0, admin: 0 },
    };
    write(base);
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    await m.waitFor((l) => l.msg === 'admin listening');
    const listening = (name: string) => portOf(m.lines.findLast((l) => l.msg === 'listening' && l.listener === name)!);
    await m.waitFor((l) => l.msg === 'listening' && l.listener === 'extra');
    const ports = {
      web: listening('web'),
      db: listening('db'),
      admin: portOf(m.lines.find((l) => l.msg === 'admin listening')!),
    };
    let cfg = { ...base, ports };
    write(cfg); // the same config, now with the ports it got

    const reloadByPost = async () => {
      const r = await fetch(`http://127.0.0.1:${ports.admin}/reload`, { method: 'POST' });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };

    const sockets = await inBatches(WEBSOCKETS, 100, (i) =>
      wsConnect(`ws://127.0.0.1:${ports.web}/socket/${i}`).then(async (w) => {
        await wsEchoes(w, `hello ${i}`);
        return w;
      }),
    );
    after(() => {
      for (const w of sockets) w.terminate();
    });
    const tunnels = await inBatches(TCP_TUNNELS, 50, (i) =>
      new Promise<net.Socket>((resolve, reject) => {
        const c = net.connect(ports.db, '127.0.0.1', () => resolve(c));
        c.once('error', reject);
      }).then(async (c) => {
        await echoes(c, `tcp ${i}\n`);
        return c;
      }),
    );
    after(() => {
      for (const c of tunnels) c.destroy();
    });
    assert.equal(wsA.open, WEBSOCKETS);
    assert.equal(echoA.open, TCP_TUNNELS);
    const lost = () =>
      sockets.filter((w) => w.readyState !== w.OPEN).length + tunnels.filter((c) => c.destroyed).length;

    // 1. a route and its cluster added (POST /reload)
    cfg = { ...cfg, apiRoute: true };
    write(cfg);
    let r = await reloadByPost();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.clusters, {
      added: ['api'],
      removed: [],
      replaced: [],
      endpoints_updated: [],
      kept: ['ws', 'echo'],
    });
    assert.deepEqual((r.body.listeners as { kept: string[] }).kept, ['web', 'db', 'extra']);
    assert.equal(await (await fetch(`http://127.0.0.1:${ports.web}/api/x`)).text(), 'api saw /api/x');

    // a bad config: refused with the same messages as `muxgate check`, nothing changes
    writeFileSync(
      file,
      `listeners:\n  - name: web\n    address: 127.0.0.1:${ports.web}\n    routes: [{ cluster: nowhere }]\n`,
    );
    const check = await muxgate(['check', '-c', file]);
    assert.equal(check.code, 2);
    r = await reloadByPost();
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'config_invalid');
    assert.equal(`${r.body.message}\n`, check.stderr);
    assert.equal(
      await (await fetch(`http://127.0.0.1:${ports.web}/api/y`)).text(),
      'api saw /api/y',
      'still the old config',
    );

    // 2. clusters' endpoints changed, by SIGHUP: new WebSockets and tunnels may go to the new endpoints
    cfg = {
      ...cfg,
      wsEndpoints: [wsA.addr, wsB.addr],
      echoEndpoints: [`127.0.0.1:${echoA.port}`, `127.0.0.1:${echoB.port}`],
    };
    write(cfg);
    const reloads = () => m.lines.filter((l) => l.msg === 'reloaded').length;
    m.child.kill('SIGHUP');
    await waitUntil(() => reloads() === 2, 'the SIGHUP reload is logged', { timeoutMs: 10_000 });
    const second = m.lines.findLast((l) => l.msg === 'reloaded')!;
    assert.deepEqual((second.clusters as { endpoints_updated: string[] }).endpoints_updated, ['ws', 'echo']);
    const fresh = await inBatches(10, 10, (i) => wsConnect(`ws://127.0.0.1:${ports.web}/fresh/${i}`));
    for (const w of fresh) w.terminate();
    assert.ok(wsB.accepted > 0, 'the added endpoint takes new WebSockets');

    // 3. a listener removed (by `muxgate reload -c`, through the admin API)
    const extraPort = listening('extra');
    cfg = { ...cfg, extra: false };
    write(cfg);
    const cli = await muxgate(['reload', '-c', file]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /removed: extra/);
    await assert.rejects(fetch(`http://127.0.0.1:${extraPort}/`), 'the removed listener no longer accepts');

    // 4. the listener added back
    cfg = { ...cfg, extra: true };
    write(cfg);
    r = await reloadByPost();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((r.body.listeners as { added: string[] }).added, ['extra']);

    // 5. web's own settings changed: the listener is replaced on the same port (SO_REUSEPORT)
    cfg = { ...cfg, webIdle: '61s' };
    write(cfg);
    r = await reloadByPost();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((r.body.listeners as { replaced: string[] }).replaced, ['web']);
    const after5 = await wsConnect(`ws://127.0.0.1:${ports.web}/after`);
    await wsEchoes(after5, 'new listener');
    after5.terminate();

    // Nothing lost: every WebSocket and every tunnel still echoes.
    assert.equal(lost(), 0);
    await inBatches(WEBSOCKETS, 200, (i) => wsEchoes(sockets[i]!, `still ${i}`));
    await inBatches(TCP_TUNNELS, 50, (i) => echoes(tunnels[i]!, `still ${i}\n`));
    assert.equal(wsA.open, WEBSOCKETS);
    assert.equal(echoA.open, TCP_TUNNELS);
    const stats = (await (await fetch(`http://127.0.0.1:${ports.admin}/stats`)).json()) as {
      listeners: { name: string; tunnels_by_kind: { websocket: number; tcp: number } }[];
    };
    assert.equal(stats.listeners.find((l) => l.name === 'web')!.tunnels_by_kind.websocket, WEBSOCKETS);
    assert.equal(stats.listeners.find((l) => l.name === 'db')!.tunnels_by_kind.tcp, TCP_TUNNELS);
  });
});

describe('hot reload with workers', () => {
  it('every worker applies the new config; a bad one is refused by the primary', async () => {
    const a = await httpBackend((req, res) => res.end(`a ${req.url}`));
    const b = await httpBackend((req, res) => res.end(`b ${req.url}`));
    after(() => Promise.all([a.close(), b.close()]));
    const file = `${dir}/workers.yaml`;
    const write = (ports: { web: number; admin: number }, withB: boolean) =>
      writeFileSync(
        file,
        `workers: 2
access_log: { enabled: false }
admin: { address: 127.0.0.1:${ports.admin} }
listeners:
  - name: web
    address: 127.0.0.1:${ports.web}
    routes:
${withB ? '      - { match: { path: { prefix: /b/ } }, cluster: b }\n' : ''}      - { cluster: a }
clusters:
  a: { endpoints: ["${a.addr}"] }
${withB ? `  b: { endpoints: ["${b.addr}"] }\n` : ''}`,
      );
    write({ web: 0, admin: 0 }, false);
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    await m.waitFor((l) => l.msg === 'all workers listening', 15_000);
    const ports = {
      web: portOf(m.lines.find((l) => l.msg === 'listening')!),
      admin: portOf(await m.waitFor((l) => l.msg === 'admin listening')),
    };
    const get = async (path: string) =>
      (await fetch(`http://127.0.0.1:${ports.web}${path}`, { headers: { connection: 'close' } })).text();
    assert.equal(await get('/b/1'), 'a /b/1');

    write(ports, true);
    const r = await fetch(`http://127.0.0.1:${ports.admin}/reload`, { method: 'POST' });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(((await r.json()) as { clusters: { added: string[] } }).clusters.added, ['b']);
    // A connection each: the kernel spreads them over both workers, and every one has the new route.
    for (let i = 0; i < 20; i++) assert.equal(await get(`/b/${i}`), `b /b/${i}`);
    const stats = (await (await fetch(`http://127.0.0.1:${ports.admin}/stats`)).json()) as {
      per_worker: { requests: number }[];
    };
    assert.equal(stats.per_worker.length, 2);
    for (const w of stats.per_worker)
      assert.ok(w.requests > 0, `each worker served some: ${JSON.stringify(stats.per_worker)}`);

    writeFileSync(file, 'workers: 2\nlisteners: nope\n');
    const bad = await fetch(`http://127.0.0.1:${ports.admin}/reload`, { method: 'POST' });
    assert.equal(bad.status, 400);
    assert.equal(await get('/b/after'), 'b /b/after', 'the running config is unchanged');
  });
});
