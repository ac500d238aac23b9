/**
 * The zero-downtime upgrade, run inside a network namespace by test/runtime/upgrade-netns.test.ts
 * (whose net.ipv4.tcp_migrate_req is 1, as the README asks of an operator). Under a steady load of
 * keep-alive clients and clients opening a connection per request: muxgate A runs; muxgate B starts
 * on the same config (SO_REUSEPORT: both accept); A gets SIGTERM, stops accepting and drains; B
 * serves alone. Prints one JSON line: requests served and failed, before, during and after.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/muxgate.js', import.meta.url));
const KEEP_ALIVE_CLIENTS = 10;
const CLOSE_CLIENTS = 5;

function startMuxgate(config: string): {
  exited: Promise<number | null>;
  kill(s: NodeJS.Signals): void;
  listening: Promise<number>;
} {
  const child = spawn(process.execPath, [BIN, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listening = new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m =
        /"msg":"listening"[^\n]*"address":"127\.0\.0\.1:(\d+)"|"address":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"listening"/.exec(
          out,
        );
      if (m) resolve(Number(m[1] ?? m[2]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`muxgate exited ${code} before listening: ${out}`)));
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { exited, listening, kill: (s) => child.kill(s) };
}

const backend = http.createServer((req, res) => res.end(`ok ${req.url}`));
await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
const backendPort = (backend.address() as AddressInfo).port;
const dir = mkdtempSync(join(tmpdir(), 'muxgate-upgrade-'));
const file = join(dir, 'muxgate.yaml');
const config = (port: number) => `access_log: { enabled: false }
admin: false
drain_timeout: 10s
listeners:
  - { name: web, address: 127.0.0.1:${port}, routes: [{ cluster: up }] }
clusters:
  up: { endpoints: ["127.0.0.1:${backendPort}"] }
`;
writeFileSync(file, config(0));
const a = startMuxgate(file);
const port = await a.listening;
writeFileSync(file, config(port));

type Phase = 'a' | 'both' | 'draining' | 'b';
let phase: Phase = 'a';
const served: Record<Phase, number> = { a: 0, both: 0, draining: 0, b: 0 };
const failures: string[] = [];
let running = true;
/** One GET through node:http: keep-alive on the client's own agent, or a new connection closed after. */
function get(path: string, agent: http.Agent | false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path, agent, headers: agent === false ? { connection: 'close' } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

/** Keep-alive clients reuse one connection each; the others open a connection per request. */
const loop = async (i: number, close: boolean) => {
  const agent = close ? false : new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let n = 0; running; n++) {
    try {
      const r = await get(`/${close ? 'close' : 'ka'}/${i}/${n}`, agent);
      if (r.status !== 200 || !r.body.startsWith('ok '))
        failures.push(`${phase}: status ${r.status} ${r.body.slice(0, 80)}`);
      else served[phase]++;
    } catch (err) {
      const e = err as Error & { code?: string };
      failures.push(`${phase}: ${e.code ?? ''} ${e.message}`);
    }
  }
  if (agent !== false) agent.destroy();
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loops = [
  ...Array.from({ length: KEEP_ALIVE_CLIENTS }, (_, i) => loop(i, false)),
  ...Array.from({ length: CLOSE_CLIENTS }, (_, i) => loop(100 + i, true)),
];
await sleep(1000);
const b = startMuxgate(file);
await b.listening;
phase = 'both';
await sleep(1000);
phase = 'draining';
a.kill('SIGTERM');
const aCode = await a.exited;
phase = 'b';
await sleep(1000);
running = false;
await Promise.all(loops);
b.kill('SIGTERM');
const bCode = await b.exited;
backend.close();
process.stdout.write(
  `${JSON.stringify({ served, failures: failures.slice(0, 20), failed: failures.length, aCode, bCode })}\n`,
);
process.exit(0);
