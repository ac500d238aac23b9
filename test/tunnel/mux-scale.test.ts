/**
 * The multiplexing claims, counted: many stateful client connections over a handful of TCP
 * connections. Each muxgate runs as its own process (as in production, and so the client sockets of
 * the test and the proxy's sockets do not share one file-descriptor limit); connections between
 * processes are counted with `ss` (iproute2) and at the backends.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { tmpDir } from '../helpers/certs.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';
import { waitUntil } from '../helpers/wait.ts';
import { closed, nextMessage, type WebSocket, wsBackend, wsConnect } from '../helpers/ws.ts';

const dir = tmpDir('muxgate-mux-');

function ssMissing(): string | false {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'ss (iproute2) is not installed: it counts the TCP connections between the two proxies';
  }
}

/** Established TCP connections to 127.0.0.1:port (either direction's socket counted once: by destination). */
function establishedTo(port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

function writeConfig(name: string, text: string): string {
  const f = `${dir}/${name}.yaml`;
  writeFileSync(f, text);
  return f;
}

async function run(config: string) {
  const m = startMuxgate(['start', '--config', config]);
  after(() => m.stop());
  const line = await m.waitFor((l) => l.msg === 'listening', 10_000);
  return { m, port: portOf(line) };
}

/** A TCP echo server that counts connections (open now, most at once, accepted). */
async function echoServer() {
  const s = { open: 0, peak: 0, accepted: 0, port: 0, server: net.createServer() };
  s.server.on('connection', (c) => {
    s.accepted++;
    s.open++;
    s.peak = Math.max(s.peak, s.open);
    c.on('close', () => s.open--);
    c.on('error', () => {});
    c.pipe(c);
  });
  await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', r));
  s.port = (s.server.address() as AddressInfo).port;
  after(() => s.server.close());
  return s;
}

/** Opens `n` connections `batch` at a time; each sends a unique line and waits for its echo. */
async function openEchoClients(port: number, n: number, batch: number): Promise<net.Socket[]> {
  const all: net.Socket[] = [];
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(
      Array.from(
        { length: Math.min(batch, n - i) },
        (_, j) =>
          new Promise<net.Socket>((resolve, reject) => {
            const msg = `client ${i + j}\n`;
            const c = net.connect(port, '127.0.0.1', () => c.write(msg));
            let got = '';
            c.on('data', (d: Buffer) => {
              got += d.toString();
              if (got === msg) resolve(c);
            });
            c.on('error', reject);
            c.setTimeout(30_000, () => reject(new Error(`client ${i + j}: no echo`)));
          }),
      ),
    );
    all.push(...part);
  }
  for (const c of all) c.setTimeout(0);
  return all;
}

describe('muxgate to muxgate: TCP over HTTP/2 CONNECT streams', { skip: ssMissing() }, () => {
  it('5,000 concurrent TCP clients through edge -> sidecar -> echo over <= 50 connections', async () => {
    const echo = await echoServer();
    const sidecar = await run(
      writeConfig(
        'sidecar',
        [
          'log_level: info',
          'admin: false',
          'access_log: { enabled: false }',
          'listeners:',
          '  - name: tunnels',
          '    address: 127.0.0.1:0',
          '    protocol: http2',
          '    routes: []',
          '    connect:',
          `      allow: [{ cidr: 127.0.0.1/32, ports: [${echo.port}] }]`,
          '',
        ].join('\n'),
      ),
    );
    const edge = await run(
      writeConfig(
        'edge',
        [
          'log_level: info',
          'admin: false',
          'access_log: { enabled: false }',
          'listeners:',
          '  - name: db',
          '    address: 127.0.0.1:0',
          '    protocol: tcp',
          '    cluster: sidecar',
          '    tunnel: h2',
          `    tunnel_target: 127.0.0.1:${echo.port}`,
          'clusters:',
          '  sidecar:',
          '    protocol: http2',
          `    endpoints: ["127.0.0.1:${sidecar.port}"]`,
          '    pool: { max_connections: 50, max_pending: 10000 }',
          '',
        ].join('\n'),
      ),
    );
    const clients = await openEchoClients(edge.port, 5000, 250);
    assert.equal(clients.length, 5000);
    // Every client is connected and answered, all at the same time.
    assert.equal(echo.open, 5000);
    const between = establishedTo(sidecar.port);
    assert.ok(between >= 1 && between <= 50, `edge -> sidecar TCP connections: ${between}`);
    console.log(`# 5000 TCP clients: ${between} edge -> sidecar connections, ${echo.accepted} backend connections`);
    // Each tunnel still carries its own bytes after all are open.
    const sample = [0, 1234, 4999].map((i) => clients[i] as net.Socket);
    await Promise.all(
      sample.map(
        (c, k) =>
          new Promise<void>((resolve) => {
            c.removeAllListeners('data');
            const msg = `again ${k}\n`;
            c.once('data', (d: Buffer) => {
              assert.equal(d.toString(), msg);
              resolve();
            });
            c.write(msg);
          }),
      ),
    );
    for (const c of clients) c.end();
    await waitUntil(() => echo.open === 0, 'every backend connection closed after the clients ended', {
      timeoutMs: 30_000,
    });
  });
});

describe('RFC 8441 towards the backend at scale', () => {
  it('10,000 concurrent WebSockets over at most ceil(10000 / 100) = 100 upstream connections', async () => {
    const b = await wsBackend({ h2: true });
    after(() => b.close());
    const edge = await run(
      writeConfig(
        'ws',
        [
          'log_level: info',
          'admin: false',
          'access_log: { enabled: false }',
          'listeners:',
          '  - name: web',
          '    address: 127.0.0.1:0',
          '    routes: [{ cluster: chat, upgrades: [websocket] }]',
          'clusters:',
          '  chat:',
          '    protocol: http2',
          '    websocket: h2',
          `    endpoints: ["${b.addr}"]`,
          '    http2: { max_concurrent_streams: 100 }',
          '    pool: { max_connections: 100, max_pending: 20000, pending_timeout: 60s }',
          '',
        ].join('\n'),
      ),
    );
    const socks: WebSocket[] = [];
    for (let i = 0; i < 10_000; i += 500) {
      socks.push(
        ...(await Promise.all(Array.from({ length: 500 }, () => wsConnect(`ws://127.0.0.1:${edge.port}/chat`)))),
      );
    }
    assert.equal(b.sockets.size, 10_000, 'all open at the backend at once');
    assert.equal(b.h2Streams, 10_000);
    assert.ok(b.accepted <= 100, `upstream TCP connections: ${b.accepted}`);
    assert.ok(b.peakStreamsPerSession <= 100);
    console.log(
      `# 10000 WebSockets: ${b.accepted} upstream connections, peak ${b.peakStreamsPerSession} streams on one`,
    );
    // A few of them still talk.
    for (const i of [0, 5000, 9999]) {
      const w = socks[i] as WebSocket;
      w.send(`hello ${i}`);
      assert.equal((await nextMessage(w)).data.toString(), `hello ${i}`);
    }
    for (const w of socks) w.close(1000);
    await Promise.all(socks.map((w) => closed(w)));
    await waitUntil(() => b.sockets.size === 0, 'every backend WebSocket closed', { timeoutMs: 30_000 });
  });
});
