/**
 * `npm run demo:load`: a few thousand clients against the running demo (`npm start`), so that the
 * dashboard shows what muxgate is for: HTTP/1.1 keep-alive clients whose requests go to an HTTP/2
 * backend, and WebSockets carried as RFC 8441 streams, all riding a handful of upstream connections.
 * Every few seconds it prints the client count next to muxgate's upstream connection count (/stats).
 *
 *   npm run demo:load -- [--clients 2000] [--websockets 2000] [--duration 60]
 *                        [--target http://127.0.0.1:8080] [--admin http://127.0.0.1:9901]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '2000' },
    websockets: { type: 'string', default: '2000' },
    duration: { type: 'string', default: '60' },
    target: { type: 'string', default: 'http://127.0.0.1:8080' },
    admin: { type: 'string', default: 'http://127.0.0.1:9901' },
  },
});
const CLIENTS = Number(values.clients);
const WEBSOCKETS = Number(values.websockets);
const DURATION_MS = Number(values.duration) * 1000;
const target = new URL(values.target);
const wsTarget = `${target.protocol === 'https:' ? 'wss' : 'ws'}://${target.host}`;

let running = true;
let requests = 0;
let failures = 0;
let wsOpen = 0;
let wsMessages = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One HTTP/1.1 client on its own keep-alive connection: a request to /api/ (HTTP/2 upstream) every 1-2 s. */
async function client(i: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  while (running) {
    await new Promise<void>((resolve) => {
      const req = http.get({ host: target.hostname, port: target.port, path: `/api/client/${i}`, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) requests++;
          else failures++;
          resolve();
        });
      });
      req.on('error', () => {
        failures++;
        resolve();
      });
    });
    await sleep(1000 + Math.random() * 1000);
  }
  agent.destroy();
}

/** One WebSocket to /live (RFC 8441 upstream), a message every 5 s, echoed. */
function websocket(i: number): Promise<WebSocket | null> {
  return new Promise((resolve) => {
    const w = new WebSocket(`${wsTarget}/live/${i}`);
    w.on('open', () => {
      wsOpen++;
      resolve(w);
    });
    w.on('message', () => wsMessages++);
    w.on('close', () => wsOpen--);
    w.on('error', () => {
      failures++;
      resolve(null);
    });
  });
}

async function upstreamConnections(): Promise<string> {
  try {
    const s = (await (await fetch(`${values.admin}/stats`)).json()) as {
      clusters: {
        name: string;
        endpoints: { pool: { open: number }; h2: { sessions: number; streams_active: number } | null }[];
      }[];
    };
    return s.clusters
      .map((c) => {
        const open = c.endpoints.reduce((n, e) => n + e.pool.open + (e.h2?.sessions ?? 0), 0);
        const streams = c.endpoints.reduce((n, e) => n + (e.h2?.streams_active ?? 0), 0);
        return `${c.name} ${open}${c.endpoints.some((e) => e.h2 !== null) ? ` (${streams} streams)` : ''}`;
      })
      .join(', ');
  } catch (err) {
    return `(admin API unreachable: ${(err as Error).message})`;
  }
}

process.stdout.write(
  `demo:load: ${CLIENTS} HTTP/1.1 clients and ${WEBSOCKETS} WebSockets against ${values.target} for ${values.duration} s; watch ${values.admin}/\n`,
);
const sockets: WebSocket[] = [];
for (let i = 0; i < WEBSOCKETS; i += 200) {
  const batch = await Promise.all(Array.from({ length: Math.min(200, WEBSOCKETS - i) }, (_, j) => websocket(i + j)));
  for (const w of batch) if (w !== null) sockets.push(w);
}
const clients = Array.from({ length: CLIENTS }, (_, i) => client(i));
const pinger = setInterval(() => {
  for (const w of sockets) if (w.readyState === WebSocket.OPEN) w.send('ping');
}, 5000);
const started = Date.now();
const stop = () => {
  running = false;
};
process.on('SIGINT', stop);
while (running && Date.now() - started < DURATION_MS) {
  await sleep(Math.min(3000, DURATION_MS));
  process.stdout.write(
    `  ${CLIENTS} clients, ${wsOpen} WebSockets open; requests ${requests}, echoes ${wsMessages}, failures ${failures}` +
      ` -> upstream connections: ${await upstreamConnections()}\n`,
  );
}
running = false;
clearInterval(pinger);
for (const w of sockets) w.close();
await Promise.all(clients);
process.stdout.write(`done: ${requests} requests, ${wsMessages} echoes, ${failures} failures\n`);
process.exit(failures > 0 ? 1 : 0);
