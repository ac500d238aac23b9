/**
 * Runs inside a fresh network namespace made by port-budget-netns.test.ts, as root there. Starts a TCP
 * echo backend, runs the real `muxgate start` as a child process with an L4 listener in front of it,
 * narrows the namespace's ip_local_port_range to 1,000 ports (NARROW), opens tunnels (each verified by
 * an echo round trip), and prints one JSON line of measurements per step on stdout for the test.
 *
 * Every listening socket binds port 0. A port bound by bind() is skipped by connect()'s own port
 * choice, so in kernel mode the range is narrowed only after the backend and muxgate listen (their
 * ports stay outside it; muxgate reads the range when it first dials a destination). In sources mode
 * muxgate must read the narrowed range at start (it is its default source_port_range), and listeners
 * on 127.0.0.1 do not collide with binds on 127.0.0.2-9.
 *
 * usage: node budget-scenario.ts kernel|sources
 * Clients bind explicit local ports (30000 and up, outside the narrowed range) so that only muxgate's
 * upstream connections draw on the port range being measured.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/muxgate.js', import.meta.url));
const mode = process.argv[2] === 'sources' ? 'sources' : 'kernel';
const SOURCES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);

let logsSeen = 0;
/** One step's measurements, with muxgate's warnings and errors logged since the previous step. */
function emit(step: string, data: Record<string, unknown>): void {
  const problems = logs.slice(logsSeen).filter((l) => Number(l.level) >= 40);
  logsSeen = logs.length;
  process.stdout.write(`${JSON.stringify({ step, ...data, problems })}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the echo backend (one IP:port) ---
const backendSockets = new Set<net.Socket>();
const backend = net.createServer({ allowHalfOpen: false }, (s) => {
  backendSockets.add(s);
  s.on('error', () => {});
  s.on('close', () => backendSockets.delete(s));
  s.pipe(s);
});
await new Promise<void>((r) => backend.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, r));
const backendPort = (backend.address() as AddressInfo).port;

const NARROW = '20000 20999';
const narrow = () => writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', NARROW);
if (mode === 'sources') narrow();

// --- muxgate, the real command ---
const config = join(tmpdir(), `muxgate-netns-${process.pid}.yaml`);
writeFileSync(
  config,
  [
    'log_level: info',
    'access_log: { enabled: false }',
    'admin: { address: 127.0.0.1:0 }',
    'listeners:',
    '  - { name: l4, address: 127.0.0.1:0, protocol: tcp, cluster: echo }',
    'clusters:',
    '  echo:',
    `    endpoints: ["127.0.0.1:${backendPort}"]`,
    '    pool: { connect_timeout: 2s }',
    ...(mode === 'sources' ? [`    source_addresses: [${SOURCES.join(', ')}]`, '    port_cooling: 2s'] : []),
    '',
  ].join('\n'),
);
const child: ChildProcess = spawn(process.execPath, [BIN, 'start', '-c', config], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
const logs: Record<string, unknown>[] = [];
let rest = '';
const onLog = (c: Buffer) => {
  rest += c.toString();
  let i = rest.indexOf('\n');
  while (i !== -1) {
    const line = rest.slice(0, i);
    rest = rest.slice(i + 1);
    i = rest.indexOf('\n');
    if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
  }
};
child.stdout?.on('data', onLog);
child.stderr?.on('data', onLog);

async function waitLog(msg: string, ms = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const l = logs.find((x) => x.msg === msg);
    if (l !== undefined) return l;
    if (Date.now() > deadline) throw new Error(`no "${msg}" log line from muxgate; got ${JSON.stringify(logs)}`);
    await sleep(20);
  }
}

const portFrom = (l: Record<string, unknown>) => Number(String(l.address).split(':').pop());
const proxyPort = portFrom(await waitLog('listening'));
const adminPort = portFrom(await waitLog('admin listening'));
if (mode === 'kernel') narrow();
emit('ready', {
  backend: backendPort,
  proxy: proxyPort,
  admin: adminPort,
  range: readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim(),
});

function stats(): Promise<{ ports: { budgets: Record<string, number | string>[] } }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: adminPort, path: '/stats' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

async function budgets(): Promise<{ source: string; in_use: number; cooling: number; free: number; size: number }[]> {
  const s = await stats();
  return s.ports.budgets.map((b) => ({
    source: String(b.source),
    in_use: Number(b.in_use),
    cooling: Number(b.cooling),
    free: Number(b.free),
    size: Number(b.size),
  }));
}

/**
 * One tunnel: connect from 127.0.0.1:localPort, send a line, expect it echoed. Resolves with the socket
 * (left open) or with null when the proxy closed the connection without an echo.
 */
function tunnel(localPort: number, timeoutMs = 10_000): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: '127.0.0.1', localPort });
    const line = `tunnel ${localPort}\n`;
    let got = '';
    const timer = setTimeout(() => done(false), timeoutMs);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.removeAllListeners('data');
      if (!ok) s.destroy();
      resolve(ok ? s : null);
    };
    s.on('error', () => {});
    s.on('connect', () => s.write(line));
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got === line) done(true);
    });
    s.on('close', () => done(got === line));
  });
}

/** Ports listening in the namespace: a client cannot bind them (all three were chosen by port 0). */
const listening = new Set([backendPort, proxyPort, adminPort]);

/** `n` client ports from `first` on, skipping the listening ones. */
function clientPorts(first: number, n: number): number[] {
  const out: number[] = [];
  for (let p = first; out.length < n; p++) if (!listening.has(p)) out.push(p);
  return out;
}

/** Opens `n` tunnels from client ports first.., `batch` at a time; returns the open sockets and the failures. */
async function openMany(first: number, n: number, batch = 200): Promise<{ open: net.Socket[]; failed: number }> {
  const open: net.Socket[] = [];
  let failed = 0;
  const ports = clientPorts(first, n);
  for (let i = 0; i < n; i += batch) {
    const rs = await Promise.all(ports.slice(i, i + batch).map((p) => tunnel(p)));
    for (const r of rs) {
      if (r === null) failed++;
      else open.push(r);
    }
  }
  return { open, failed };
}

async function closeAll(sockets: net.Socket[]): Promise<void> {
  for (const s of sockets) s.end();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const b = await budgets();
    if (b.every((x) => x.in_use === 0) && backendSockets.size === 0) return;
    await sleep(100);
  }
  throw new Error('tunnels did not close');
}

try {
  if (mode === 'kernel') {
    const first = await openMany(30_000, 1000);
    emit('fill', { ok: first.open.length, failed: first.failed, budgets: await budgets() });
    const extra = await tunnel(clientPorts(31_500, 1)[0] ?? 31_500, 5000);
    const exhaustedLog = logs.find((l) => l.msg === 'upstream ports exhausted') ?? null;
    emit('beyond', { ok: extra !== null, log: exhaustedLog, backend_open: backendSockets.size });
    extra?.destroy();
    await closeAll(first.open);
    // The clients closed first, so muxgate's upstream side holds TIME_WAIT; loopback reuses it after 1 s.
    await sleep(1500);
    const again = await openMany(32_000, 1000);
    emit('again', { ok: again.open.length, failed: again.failed, budgets: await budgets() });
    await closeAll(again.open);
  } else {
    const n = 7600;
    const first = await openMany(30_000, n);
    emit('fill', {
      ok: first.open.length,
      failed: first.failed,
      budgets: await budgets(),
      backend_open: backendSockets.size,
    });
    await closeAll(first.open);
    // Straight away: ports still in TIME_WAIT are refused by the kernel, cooled (2 s), and others tried.
    const soon = await openMany(38_000, 1000);
    const afterSoon = await budgets();
    emit('soon', { ok: soon.open.length, failed: soon.failed, budgets: afterSoon });
    await closeAll(soon.open);
    await sleep(2500);
    const again = await openMany(40_000, n);
    emit('again', { ok: again.open.length, failed: again.failed, budgets: await budgets() });
    await closeAll(again.open);
  }
} catch (err) {
  emit('error', { message: (err as Error).message });
} finally {
  child.kill('SIGTERM');
  backend.close();
  for (const s of backendSockets) s.destroy();
  setTimeout(() => process.exit(0), 500).unref();
}
