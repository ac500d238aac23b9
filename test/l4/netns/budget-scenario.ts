/**
 * Runs inside a fresh network namespace made by port-budget-netns.test.ts, as root there. Starts a TCP
 * echo backend, runs the real `muxgate start` as a child process with an L4 listener in front of it,
 * narrows the namespace's ip_local_port_range to 1,000 ports (NARROW), opens tunnels (each verified by
 * an echo round trip), and prints one JSON line of measurements per step on stdout for the test.
 *
 * No socket of the scenario lets the kernel choose its port, so nothing depends on which port a
 * listen(0) or connect() would get, and only muxgate's upstream connections draw on the narrowed range:
 *
 *   10000-10002  the backend, muxgate's L4 listener and its admin listener (fixed: the namespace is
 *                fresh and private, nothing else binds there);
 *   20000-20999  NARROW: muxgate's upstream connections only (kernel-chosen in kernel mode, bound by
 *                muxgate to 127.0.0.2-9 in sources mode);
 *   30000-47599  the tunnels' clients, a fresh block per step (never reused, so no TIME_WAIT matters);
 *   50000-60999  the scenario's admin requests, one fresh port each.
 *
 * The admin requests must not use a kernel-chosen port: connect() without a bound port picks from
 * the narrowed range, and in sources mode every port of it is held by muxgate's bind()-ed sockets
 * (open or in TIME_WAIT), which the kernel never shares with an unbound connect(): EADDRNOTAVAIL.
 *
 * usage: node budget-scenario.ts kernel|sources
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
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

const BACKEND_PORT = 10_000;
const PROXY_PORT = 10_001;
const ADMIN_PORT = 10_002;
const NARROW = '20000 20999';
const sysctl = (name: string) => `/proc/sys/net/ipv4/${name}`;
const readIf = (name: string): string | null => {
  try {
    return readFileSync(sysctl(name), 'utf8').trim();
  } catch {
    return null;
  }
};

// The namespace's own TCP settings, set rather than assumed (they are per namespace). Timestamps let
// a connect() bound to a port reuse a TIME_WAIT 4-tuple at once (sources mode); tcp_tw_reuse = 2 lets
// the kernel's own port choice reuse one on loopback after tcp_tw_reuse_delay (kernel mode, "again").
writeFileSync(sysctl('tcp_timestamps'), '1');
writeFileSync(sysctl('tcp_tw_reuse'), '2');
writeFileSync(sysctl('ip_local_port_range'), NARROW);
/**
 * How long after a connection entered TIME_WAIT its port is sure to be reusable by an unbound connect():
 * tcp_tw_reuse_delay (ms, Linux 6.14+); before that, "more than one second" counted in whole seconds,
 * i.e. up to 2 s.
 */
const twReuseMs = Number(readIf('tcp_tw_reuse_delay') ?? 2000);

// --- the echo backend (one IP:port) ---
const backendSockets = new Set<net.Socket>();
const backend = net.createServer({ allowHalfOpen: false }, (s) => {
  backendSockets.add(s);
  s.on('error', () => {});
  s.on('close', () => backendSockets.delete(s));
  s.pipe(s);
});
await new Promise<void>((r) => backend.listen({ host: '127.0.0.1', port: BACKEND_PORT, backlog: 4096 }, r));

// --- muxgate, the real command ---
const config = join(tmpdir(), `muxgate-netns-${process.pid}.yaml`);
writeFileSync(
  config,
  [
    'log_level: info',
    'access_log: { enabled: false }',
    `admin: { address: 127.0.0.1:${ADMIN_PORT} }`,
    'listeners:',
    `  - { name: l4, address: 127.0.0.1:${PROXY_PORT}, protocol: tcp, cluster: echo }`,
    'clusters:',
    '  echo:',
    `    endpoints: ["127.0.0.1:${BACKEND_PORT}"]`,
    '    pool: { connect_timeout: 2s }',
    ...(mode === 'sources' ? [`    source_addresses: [${SOURCES.join(', ')}]`, '    port_cooling: 2s'] : []),
    '',
  ].join('\n'),
);
const child: ChildProcess = spawn(process.execPath, [BIN, 'start', '-c', config], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
const logs: Record<string, unknown>[] = [];
/** muxgate's output that is not a log line (a crash before the logger exists, say), for errors. */
const otherOutput: string[] = [];
let rest = '';
const onLog = (c: Buffer) => {
  rest += c.toString();
  let i = rest.indexOf('\n');
  while (i !== -1) {
    const line = rest.slice(0, i);
    rest = rest.slice(i + 1);
    i = rest.indexOf('\n');
    if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
    else if (otherOutput.length < 100) otherOutput.push(line);
  }
};
child.stdout?.on('data', onLog);
child.stderr?.on('data', onLog);

async function waitLog(msg: string, ms = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const l = logs.find((x) => x.msg === msg);
    if (l !== undefined) return l;
    if (Date.now() > deadline) {
      const other = otherOutput.join('\n');
      throw new Error(
        `no "${msg}" log line from muxgate; got ${JSON.stringify(logs)}${other ? `\nand:\n${other}` : ''}`,
      );
    }
    await sleep(20);
  }
}

await waitLog('listening');
await waitLog('admin listening');
emit('ready', {
  range: readIf('ip_local_port_range'),
  tcp_tw_reuse: readIf('tcp_tw_reuse'),
  tcp_tw_reuse_delay: readIf('tcp_tw_reuse_delay'),
});

/** The next admin request's local port: one fresh port per request (see the block list at the top). */
let adminClientPort = 50_000;

/**
 * GET /stats on a new connection from a port of its own: never the kernel's choice (the narrowed range
 * may have none to give), never a kept-alive connection (whether one survives depends on timing).
 */
function stats(): Promise<{ ports: { budgets: Record<string, number | string>[] } }> {
  if (adminClientPort > 60_999) return Promise.reject(new Error('out of admin client ports'));
  const localPort = adminClientPort++;
  return new Promise((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: ADMIN_PORT, path: '/stats', agent: false, localAddress: '127.0.0.1', localPort },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve(JSON.parse(body)));
        },
      )
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
    const s = net.connect({ host: '127.0.0.1', port: PROXY_PORT, localAddress: '127.0.0.1', localPort });
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

/** Opens `n` tunnels from client ports first.., `batch` at a time; returns the open sockets and the failures. */
async function openMany(first: number, n: number, batch = 200): Promise<{ open: net.Socket[]; failed: number }> {
  const open: net.Socket[] = [];
  let failed = 0;
  const ports = Array.from({ length: n }, (_, i) => first + i);
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
    const extra = await tunnel(31_500, 5000);
    const exhaustedLog = logs.find((l) => l.msg === 'upstream ports exhausted') ?? null;
    emit('beyond', { ok: extra !== null, log: exhaustedLog, backend_open: backendSockets.size });
    extra?.destroy();
    await closeAll(first.open);
    // The clients closed first, so muxgate's upstream side holds TIME_WAIT on every port of the range;
    // the kernel's own port choice reuses those twReuseMs after they entered it (all before closeAll
    // returned). Wait that long and a second more.
    await sleep(twReuseMs + 1000);
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
    // Straight away: most ports are in TIME_WAIT. A connect() bound to the port reuses such a 4-tuple
    // (timestamps are on); where the kernel refuses one, muxgate cools it (2 s) and tries another.
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
