// The `ws` figure: WebSockets through muxgate vs HAProxy, in front of the same echo backend.
//
// - backend: bench/ws-backend.ts in its own process on the load core: by default a lean frame echo
//   (node:http answers the Upgrade, then frames are unmasked and sent back, one write per read),
//   because the load core (clients + backend) is what limits the throughput part, and a `ws`
//   WebSocketServer echo costs about twice as much per message; `--ws-backend ws` picks that one
// - muxgate: an HTTP/1.1 listener whose route has `upgrades: [websocket]` (each WebSocket an
//   HTTP/1.1 Upgrade on an upstream connection of its own); HAProxy: `mode http` (it handles the
//   Upgrade natively) with `timeout tunnel 1h`; both pinned to the proxy core (bench/servers.ts)
// - load: bench/ws-client.ts, `ws` clients in a process of their own on the load core
//
// Three parts:
// 1. rtt: one socket, 32-byte binary messages ping-ponged one at a time; p50 / p99 round trip
// 2. throughput: 50 sockets, each keeping 16 messages of 1 KiB in flight; echoes per second, and
//    the proxy's CPU time per message (from /proc/<pid>/stat over the measured window): when the
//    load core, not the proxy, is the limit, messages/s understates the gap and CPU per message
//    is the fairer comparison
// 3. idle: a fresh proxy; 100 WebSockets opened, echoed and closed, 4 s (muxgate's trim after start), VmRSS read; N WebSockets
//    opened (one echo each) and left idle, VmRSS read after a settle time; (after - before) / N
//
// Same discipline as the other figures: interleaved rounds (order rotating), medians, and ratios
// muxgate ÷ HAProxy taken within a round.

import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { type FigureContext, rotate } from './figure.ts';
import { cpuTicks, readRssKiB, spawnTracked, stopTracked, sumTicks, type Tracked, ticksPerSecond } from './procs.ts';
import { fmtMiB, fmtRatio, mdTable, median } from './report.ts';
import {
  LOAD_CPU,
  PROXY_CPU,
  type ProxyName,
  proxySpec,
  type RunningServer,
  type ServerSpec,
  StartError,
  serverOutput,
  startServer,
  stopServer,
} from './servers.ts';

export const WS_SCENARIO = 'ws';
/** seconds per measured rtt / throughput run (`--ws-duration`), after the warm-up: short, to keep the figure near 2 minutes */
export const WS_DEFAULT_DURATION_S = 4;
/** idle WebSockets held open per idle measurement (`--ws-idle-sockets`) */
export const WS_DEFAULT_IDLE_SOCKETS = 5000;
/** bench/ws-backend.ts implementations (`--ws-backend`) */
export const WS_BACKENDS = ['frames', 'ws'] as const;
export type WsBackendImpl = (typeof WS_BACKENDS)[number];
export const WS_DEFAULT_BACKEND: WsBackendImpl = 'frames';

export const WS_PROXIES = ['muxgate', 'haproxy'] as const satisfies readonly ProxyName[];
export type WsProxy = (typeof WS_PROXIES)[number];
export const WS_BACKEND_PORT = 18170;
export const WS_PORTS: Record<WsProxy, number> = { muxgate: 18171, haproxy: 18172 };
/** the fresh proxies of the idle part */
export const WS_IDLE_PORTS: Record<WsProxy, number> = { muxgate: 18173, haproxy: 18174 };

export const WS_RTT = { sockets: 1, size: 32 } as const;
export const WS_THROUGHPUT = { sockets: 50, window: 16, size: 1024 } as const;
const WS_IDLE_WARMUP = 100;
const WS_IDLE_CONCURRENCY = 200;
/** After a burst: muxgate's memory trim runs within ~2 s of the process going idle. */
const WS_IDLE_SETTLE_MS = 4000;
const WS_IDLE_SIZE = 32;

type Part = 'rtt' | 'throughput' | 'idle';
const LOADED_PARTS = ['rtt', 'throughput'] as const;

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const CLIENT_SCRIPT = here('./ws-client.ts');
const BACKEND_SCRIPT = here('./ws-backend.ts');

export function wsProxies(proxies: readonly ProxyName[]): WsProxy[] {
  return WS_PROXIES.filter((p) => proxies.includes(p));
}

/** Every port the figure listens on. */
export function wsPorts(figures: readonly string[], proxies: readonly ProxyName[]): [number, string][] {
  if (!figures.includes(WS_SCENARIO)) return [];
  const ports: [number, string][] = [[WS_BACKEND_PORT, `backend (${WS_SCENARIO})`]];
  for (const p of wsProxies(proxies)) {
    ports.push([WS_PORTS[p], `${p} (${WS_SCENARIO})`], [WS_IDLE_PORTS[p], `${p} (${WS_SCENARIO}, idle)`]);
  }
  return ports;
}

export interface WsRun {
  round: number;
  part: Part;
  proxy: WsProxy;
  ok: boolean;
  failure?: string;
  /** rtt: round trips measured; throughput: echoes received in the measured window */
  messages?: number;
  seconds?: number;
  p50Us?: number | undefined;
  p99Us?: number | undefined;
  p999Us?: number | undefined;
  messagesPerS?: number;
  /** payload bytes echoed per second (one way) */
  bytesPerS?: number;
  /** share of one core the proxy process used over the measured window (1 = 100 %) */
  proxyCpu?: number | undefined;
  /** the same for the client process plus the backend process (both on the load core) */
  loadCpu?: number | undefined;
  /** proxy CPU time per echoed message, µs */
  cpuUsPerMessage?: number | undefined;
  rssKiB?: number | undefined;
  /** idle: WebSockets that opened and got their echo (the divisor) */
  sockets?: number;
  beforeKiB?: number;
  afterKiB?: number;
  bytesPerSocket?: number;
  /** what makes the number suspect: failed sockets, closes nobody asked for, wrong echoes… */
  warnings: string[];
}

export interface WsState {
  runs: WsRun[];
}

// ---------------------------------------------------------------------------
// helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type WsEvent = Record<string, unknown> & { event?: string };

/** A client process pinned to the load core, read line by line (JSON events). */
export interface ClientProcess {
  tracked: Tracked;
  waitFor(event: string, ms: number): Promise<WsEvent>;
  /** writes a line to its stdin and ends it */
  finish(line: string): void;
  stderr(): string;
}

function startClient(args: readonly string[], onEvent?: (e: WsEvent) => void): ClientProcess {
  return startEventClient('ws-client', [process.execPath, CLIENT_SCRIPT, ...args], onEvent);
}

/**
 * Runs `command` (argv) pinned to the load core and reads its stdout as one JSON event per line
 * (bench/ws-client.ts, bench/ws-h2-client.ts); `name` labels it in errors and in the process registry.
 */
export function startEventClient(
  name: string,
  command: readonly string[],
  onEvent?: (e: WsEvent) => void,
): ClientProcess {
  const tracked = spawnTracked(name, 'taskset', ['-c', LOAD_CPU, ...command], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  tracked.process.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const events: WsEvent[] = [];
  const waiters: (() => void)[] = [];
  const lines = createInterface({ input: tracked.process.stdout! });
  lines.on('line', (line) => {
    let e: WsEvent;
    try {
      e = JSON.parse(line) as WsEvent;
    } catch {
      stderr += `${line}\n`;
      return;
    }
    // read the CPU counters right when the event arrives, before anything else runs
    onEvent?.(e);
    events.push(e);
    for (const w of waiters.splice(0)) w();
  });
  let outputEnded = false;
  lines.on('close', () => {
    outputEnded = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    tracked,
    stderr: () => stderr,
    finish(line: string): void {
      tracked.process.stdin?.end(`${line}\n`);
    },
    async waitFor(event: string, ms: number): Promise<WsEvent> {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = events.find((e) => e.event === event);
        if (found) return found;
        if (tracked.exit && outputEnded) {
          throw new Error(
            `${name} exited (${tracked.exit.signal ?? tracked.exit.code}) before "${event}": ${stderr.trim().slice(-500)}`,
          );
        }
        if (Date.now() > deadline) {
          await stopTracked(tracked, 1000);
          throw new Error(`${name}: no "${event}" within ${ms} ms ${stderr.trim().slice(-300)}`);
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 200);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  };
}

/** One WebSocket through `port`: a 32-byte binary message must come back as sent. An error message, or undefined. */
export function checkWsEcho(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const what = `WebSocket echo via 127.0.0.1:${port}`;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, handshakeTimeout: 5000 });
    const sent = Buffer.from('muxgate-bench-ws-check-0123456789'.slice(0, 32));
    let done = false;
    const finish = (msg: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      else ws.terminate();
      resolve(msg);
    };
    const timer = setTimeout(() => finish(`${what}: no echo within 5 s`), 5000);
    ws.on('error', (e) => finish(`${what}: ${e.message}`));
    ws.on('unexpected-response', (_req, res) => finish(`${what}: handshake answered ${res.statusCode}`));
    ws.on('open', () => ws.send(sent, { binary: true }));
    ws.on('message', (data: WebSocket.RawData, isBinary) => {
      const got = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      finish(isBinary && got.equals(sent) ? undefined : `${what}: echo differs (${got.length} bytes)`);
    });
  });
}

function downMessage(proxy: string, server: RunningServer): string | undefined {
  const e = server.tracked.exit;
  return e ? `${proxy} is not running (exit ${e.signal ?? e.code}); ${serverOutput(server).slice(-500)}` : undefined;
}

function backendSpec(impl: WsBackendImpl): ServerSpec {
  return {
    name: 'ws-backend',
    port: WS_BACKEND_PORT,
    cpu: LOAD_CPU,
    command: process.execPath,
    args: [BACKEND_SCRIPT, String(WS_BACKEND_PORT), impl],
    logFiles: [],
  };
}

function backendDescription(impl: WsBackendImpl): string {
  return impl === 'frames'
    ? '`bench/ws-backend.ts` (frames: node:http answers the Upgrade, then every client frame goes back unmasked, the frames of one read in one write; one Node process on the load core)'
    : '`bench/ws-backend.ts ws` (a `ws` WebSocketServer sending every message back; one Node process on the load core)';
}

function wsProxySpec(proxy: WsProxy, dir: string, idleSockets: number, idle: boolean): ServerSpec {
  return proxySpec(proxy, dir, {
    tag: idle ? 'ws-idle' : 'ws',
    port: idle ? WS_IDLE_PORTS[proxy] : WS_PORTS[proxy],
    cpu: PROXY_CPU,
    backendPort: WS_BACKEND_PORT,
    websocket: true,
    // HAProxy's maxconn must hold the idle sockets
    maxConnections: idleSockets + WS_IDLE_WARMUP,
  });
}

// ---------------------------------------------------------------------------
// rtt and throughput

export function wsClientCommand(part: 'rtt' | 'throughput', durationS: number, warmupS: number): string {
  const args =
    part === 'rtt'
      ? `--sockets ${WS_RTT.sockets} --size ${WS_RTT.size}`
      : `--sockets ${WS_THROUGHPUT.sockets} --window ${WS_THROUGHPUT.window} --size ${WS_THROUGHPUT.size}`;
  return `taskset -c ${LOAD_CPU} node bench/ws-client.ts --mode ${part} --url ws://127.0.0.1:<port>/ ${args} --warmup ${warmupS} --duration ${durationS}`;
}

async function measureLoaded(
  round: number,
  part: 'rtt' | 'throughput',
  proxy: WsProxy,
  server: RunningServer,
  backend: RunningServer,
  ctx: FigureContext,
): Promise<WsRun> {
  const base = { round, part, proxy };
  const warnings: string[] = [];
  const gone = downMessage(proxy, server);
  if (gone) return { ...base, ok: false, failure: gone, warnings };
  const shape =
    part === 'rtt'
      ? ['--sockets', String(WS_RTT.sockets), '--size', String(WS_RTT.size)]
      : [
          '--sockets',
          String(WS_THROUGHPUT.sockets),
          '--window',
          String(WS_THROUGHPUT.window),
          '--size',
          String(WS_THROUGHPUT.size),
        ];
  const marks = new Map<string, { at: number; proxy: number | undefined; load: number | undefined }>();
  let client: ClientProcess | undefined;
  const mark = (e: WsEvent): void => {
    if (e.event !== 'measuring' && e.event !== 'result') return;
    const pid = client?.tracked.pid;
    marks.set(e.event, {
      at: performance.now(),
      proxy: cpuTicks(server.tracked.pid),
      load: pid === undefined ? undefined : sumTicks([pid, backend.tracked.pid]),
    });
  };
  try {
    client = startClient(
      [
        '--mode',
        part,
        '--url',
        `ws://127.0.0.1:${server.spec.port}/`,
        ...shape,
        '--warmup',
        String(ctx.warmupS),
        '--duration',
        String(ctx.durationS),
        '--max-seconds',
        String(ctx.warmupS + ctx.durationS + 60),
      ],
      mark,
    );
    await client.waitFor('connected', 20_000);
    await client.waitFor('measuring', (ctx.warmupS + 10) * 1000);
    const r = await client.waitFor('result', (ctx.durationS + 10) * 1000);
    let closed: WsEvent | undefined;
    try {
      closed = await client.waitFor('closed', 15_000);
    } catch (err) {
      warnings.push(`closing the sockets: ${(err as Error).message.slice(0, 200)}`);
    }
    await client.tracked.exited;
    const down = downMessage(proxy, server);
    if (down) return { ...base, ok: false, failure: down, warnings };

    const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    const messages = num(r.messages) ?? 0;
    if (messages === 0) {
      return { ...base, ok: false, failure: `no echo came back in ${ctx.durationS} s (stalled)`, warnings };
    }
    const errors = Array.isArray(r.errors) ? (r.errors as string[]) : [];
    if (num(r.wrongSize)) warnings.push(`${r.wrongSize} echoes of the wrong size`);
    if (num(r.unexpectedCloses)) warnings.push(`${r.unexpectedCloses} sockets closed during the run`);
    if (errors.length) warnings.push(`errors: ${errors.join('; ')}`);
    if (closed && num(closed.unclean)) warnings.push(`${closed.unclean} sockets did not close with 1000 at the end`);
    if (closed && num(closed.inFlight)) warnings.push(`${closed.inFlight} echoes never came back after the run`);

    const m0 = marks.get('measuring');
    const m1 = marks.get('result');
    let proxyCpu: number | undefined;
    let loadCpu: number | undefined;
    let cpuUsPerMessage: number | undefined;
    if (m0 && m1 && m1.at > m0.at) {
      const wallS = (m1.at - m0.at) / 1000;
      const hz = ticksPerSecond();
      if (m0.proxy !== undefined && m1.proxy !== undefined) {
        const cpuS = (m1.proxy - m0.proxy) / hz;
        proxyCpu = cpuS / wallS;
        cpuUsPerMessage = (cpuS * 1e6) / messages;
      }
      if (m0.load !== undefined && m1.load !== undefined) loadCpu = (m1.load - m0.load) / hz / wallS;
    }
    return {
      ...base,
      ok: true,
      messages,
      seconds: num(r.seconds),
      p50Us: num(r.p50Us),
      p99Us: num(r.p99Us),
      p999Us: num(r.p999Us),
      messagesPerS: num(r.messagesPerS),
      bytesPerS: num(r.bytesPerS),
      proxyCpu,
      loadCpu,
      cpuUsPerMessage,
      rssKiB: readRssKiB(server.tracked.pid),
      warnings,
    };
  } catch (err) {
    return {
      ...base,
      ok: false,
      failure: downMessage(proxy, server) ?? (err as Error).message.slice(0, 500),
      warnings,
    };
  } finally {
    if (client) await stopTracked(client.tracked, 1000);
  }
}

// ---------------------------------------------------------------------------
// idle

interface IdleReady {
  served: number;
  failed: number;
  errors: string[];
  elapsedMs: number;
}

/** Opens `count` WebSockets through `port` (one echo each), resolves once all are idle. */
async function openIdleWs(
  port: number,
  count: number,
): Promise<{ ready: IdleReady; close(): Promise<{ open: number; closedByPeer: number }> }> {
  const client = startClient([
    '--mode',
    'idle',
    '--url',
    `ws://127.0.0.1:${port}/`,
    '--count',
    String(count),
    '--concurrency',
    String(WS_IDLE_CONCURRENCY),
    '--size',
    String(WS_IDLE_SIZE),
    '--max-seconds',
    '300',
  ]);
  try {
    const ready = (await client.waitFor('ready', 120_000)) as unknown as IdleReady;
    return {
      ready,
      async close() {
        client.finish('close');
        try {
          return (await client.waitFor('closed', 15_000)) as unknown as { open: number; closedByPeer: number };
        } finally {
          await stopTracked(client.tracked, 5000);
        }
      },
    };
  } catch (err) {
    await stopTracked(client.tracked, 1000);
    throw err;
  }
}

export function wsIdleMethod(idleSockets: number): string {
  return (
    `a fresh proxy per measurement; ${WS_IDLE_WARMUP} WebSockets opened, echoed and closed, ${WS_IDLE_SETTLE_MS / 1000} s (muxgate's memory trim runs once after start), VmRSS read; then ` +
    `\`bench/ws-client.ts --mode idle\` (on the load core) opens ${idleSockets.toLocaleString('en-US')} WebSockets ` +
    `(${WS_IDLE_CONCURRENCY} opening at once), each sends one ${WS_IDLE_SIZE}-byte message and reads its echo, then idles; ` +
    `VmRSS read after ${WS_IDLE_SETTLE_MS / 1000} s; (after − before) ÷ WebSockets`
  );
}

async function measureIdle(round: number, proxy: WsProxy, idleSockets: number, ctx: FigureContext): Promise<WsRun> {
  const base = { round, part: 'idle' as const, proxy };
  const warnings: string[] = [];
  let server: RunningServer;
  try {
    server = await startServer(wsProxySpec(proxy, ctx.runDir, idleSockets, true), ctx.runDir);
  } catch (err) {
    const details = err instanceof StartError ? `\n${err.details}` : '';
    return { ...base, ok: false, failure: `${(err as Error).message}${details}`.slice(0, 1500), warnings };
  }
  try {
    // Both readings after muxgate's memory trim (once after start, then after the burst):
    // bench/idle-memory.ts says why.
    const warm = await openIdleWs(server.spec.port, WS_IDLE_WARMUP);
    await warm.close();
    if (warm.ready.served < WS_IDLE_WARMUP) {
      throw new Error(`warm-up: ${warm.ready.served}/${WS_IDLE_WARMUP} echoed (${warm.ready.errors.join('; ')})`);
    }
    await sleep(WS_IDLE_SETTLE_MS);
    const beforeKiB = readRssKiB(server.tracked.pid);
    const idle = await openIdleWs(server.spec.port, idleSockets);
    await sleep(WS_IDLE_SETTLE_MS);
    const afterKiB = readRssKiB(server.tracked.pid);
    const closed = await idle.close();
    const r = idle.ready;
    if (r.failed) warnings.push(`${r.failed} WebSockets failed (${r.errors.join('; ')})`);
    if (closed.closedByPeer) warnings.push(`${closed.closedByPeer} idle WebSockets were closed by the proxy side`);
    const down = downMessage(proxy, server);
    if (down) throw new Error(down);
    if (beforeKiB === undefined || afterKiB === undefined) throw new Error('cannot read VmRSS');
    if (r.served === 0) throw new Error(`no WebSocket got its echo (${r.errors.join('; ')})`);
    return {
      ...base,
      ok: true,
      sockets: r.served,
      beforeKiB,
      afterKiB,
      bytesPerSocket: ((afterKiB - beforeKiB) * 1024) / r.served,
      warnings,
    };
  } catch (err) {
    return { ...base, ok: false, failure: (err as Error).message.slice(0, 1000), warnings };
  } finally {
    await stopServer(server);
  }
}

// ---------------------------------------------------------------------------
// the figure

export function wsMethod(durationS: number, warmupS: number, idleSockets: number, impl: WsBackendImpl): string {
  return (
    'WebSockets (HTTP/1.1 Upgrade) through muxgate (route `upgrades: [websocket]`) and HAProxy (`mode http`, `timeout tunnel 1h`), ' +
    `both pinned to the proxy core, to an echo backend, ${backendDescription(impl)}; \`ws\` clients in their own process on the load core. ` +
    `rtt: \`${wsClientCommand('rtt', durationS, warmupS)}\` (binary messages ping-ponged one at a time, round-trip times over the ${durationS} s after the ${warmupS} s warm-up); ` +
    `throughput: \`${wsClientCommand('throughput', durationS, warmupS)}\` (each socket keeps ${WS_THROUGHPUT.window} messages in flight; ` +
    'echoes received per second, and the proxy CPU time per message from `/proc/<pid>/stat` over the measured window); ' +
    `interleaved rounds on one proxy each. Idle memory: ${wsIdleMethod(idleSockets)}.`
  );
}

const fmtUs = (v: number | undefined): string =>
  v === undefined ? '–' : `${Math.round(v).toLocaleString('en-US')} µs`;
const fmtRate = (v: number | undefined): string => (v === undefined ? '–' : Math.round(v).toLocaleString('en-US'));
const fmtMBps = (v: number | undefined): string => (v === undefined ? '–' : `${(v / 1e6).toFixed(1)} MB/s`);
const fmtPct = (v: number | undefined): string => (v === undefined ? '–' : `${Math.round(v * 100)} %`);
const fmtCpuUs = (v: number | undefined): string => (v === undefined ? '–' : `${v.toFixed(2)} µs`);
const fmtKiBPer = (b: number | undefined): string =>
  b === undefined ? '–' : `${(b / 1024).toFixed(1)} KiB (${Math.round(b).toLocaleString('en-US')} B)`;

export function wsConsoleLine(r: WsRun): string {
  const head = `${String(r.round).padEnd(6)}${`ws-${r.part}`.padEnd(16)}${r.proxy.padEnd(10)}`;
  if (!r.ok) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const warn = r.warnings.length ? `  ⚠ ${r.warnings.join('; ')}` : '';
  if (r.part === 'rtt') {
    return `${head}p50 ${fmtUs(r.p50Us)}  p99 ${fmtUs(r.p99Us)}  p99.9 ${fmtUs(r.p999Us)}  (${r.messages} round trips; proxy CPU ${fmtPct(r.proxyCpu)}, load core ${fmtPct(r.loadCpu)})${warn}`;
  }
  if (r.part === 'throughput') {
    return `${head}${fmtRate(r.messagesPerS).padStart(9)} msg/s  ${fmtMBps(r.bytesPerS)}  proxy CPU ${fmtPct(r.proxyCpu)} (${fmtCpuUs(r.cpuUsPerMessage)}/msg), load core ${fmtPct(r.loadCpu)}${warn}`;
  }
  return `${head}${fmtKiBPer(r.bytesPerSocket)} per idle WebSocket  (RSS ${fmtMiB(r.beforeKiB)} → ${fmtMiB(r.afterKiB)}, ${r.sockets} sockets)${warn}`;
}

/** Starts the backend and the proxies, runs the interleaved rounds, then the idle part. `ctx.durationS` is the ws duration. */
export async function runWsFigure(
  ctx: FigureContext,
  idleSockets: number,
  impl: WsBackendImpl,
  st: WsState,
): Promise<void> {
  const proxies = wsProxies(ctx.proxies);
  if (proxies.length === 0) {
    console.error(`✗ ${WS_SCENARIO}: needs muxgate or HAProxy among the proxies`);
    return;
  }
  console.log(
    `\n[${WS_SCENARIO}] WebSockets; ${proxies.join(', ')} on core ${PROXY_CPU}; echo backend (${impl}) and ws clients on core ${LOAD_CPU}; ` +
      `${ctx.durationS} s per run after ${ctx.warmupS} s warm-up; ${idleSockets} idle WebSockets`,
  );
  let backend: RunningServer;
  try {
    backend = await startServer(backendSpec(impl), ctx.runDir);
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    ctx.startFailures.set(`ws-backend (${WS_SCENARIO})`, `${err.message}\n${err.details}`);
    console.error(`✗ ws-backend failed to start: ${err.message}\n${err.details}\n`);
    return;
  }
  const record = (r: WsRun): void => {
    st.runs.push(r);
    console.log(wsConsoleLine(r));
    ctx.recorded();
  };
  try {
    const backendErr = await checkWsEcho(WS_BACKEND_PORT);
    if (backendErr) {
      ctx.checkFailures.set(`${WS_SCENARIO}/ws-backend`, backendErr);
      console.error(`✗ ws backend: ${backendErr}\n${serverOutput(backend)}`);
      return;
    }
    const running = new Map<WsProxy, RunningServer>();
    try {
      for (const proxy of proxies) {
        if (ctx.stopped()) return;
        let server: RunningServer;
        try {
          server = await startServer(wsProxySpec(proxy, ctx.runDir, idleSockets, false), ctx.runDir);
        } catch (err) {
          if (!(err instanceof StartError)) throw err;
          ctx.startFailures.set(`${proxy} (${WS_SCENARIO})`, `${err.message}\n${err.details}`);
          console.error(`✗ ${proxy} failed to start: ${err.message}\n${err.details}\n`);
          continue;
        }
        console.log(`started ${server.spec.name} (pid ${server.tracked.pid}, port ${server.spec.port})`);
        const err = await checkWsEcho(server.spec.port);
        if (err) {
          ctx.checkFailures.set(`${WS_SCENARIO}/${proxy}`, err);
          console.error(`✗ ${proxy}: sanity check for ${WS_SCENARIO} failed: ${err}`);
          await stopServer(server);
          continue;
        }
        running.set(proxy, server);
      }
      const ready = proxies.filter((p) => running.has(p));
      for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
        for (const part of LOADED_PARTS) {
          for (const proxy of rotate(ready, round - 1)) {
            if (ctx.stopped()) return;
            const r = await measureLoaded(round, part, proxy, running.get(proxy)!, backend, ctx);
            if (ctx.stopped()) return;
            record(r);
          }
        }
      }
    } finally {
      for (const server of running.values()) await stopServer(server);
    }
    // idle memory: a fresh proxy per measurement, for the proxies that passed the sanity check
    const idleProxies = proxies.filter((p) => !ctx.checkFailures.has(`${WS_SCENARIO}/${p}`));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const proxy of rotate(idleProxies, round - 1)) {
        if (ctx.stopped()) return;
        const r = await measureIdle(round, proxy, idleSockets, ctx);
        if (ctx.stopped()) return;
        record(r);
      }
    }
  } finally {
    await stopServer(backend);
  }
}

// ---------------------------------------------------------------------------
// report

type Metric = (r: WsRun) => number | undefined;

/** Median over rounds of (muxgate ÷ HAProxy in the same round) for one part and metric. */
function pairedRatio(runs: readonly WsRun[], part: Part, metric: Metric): number | undefined {
  const ratios: number[] = [];
  for (const r of runs) {
    if (r.part !== part || r.proxy !== 'muxgate' || !r.ok) continue;
    const other = runs.find((o) => o.part === part && o.proxy === 'haproxy' && o.round === r.round && o.ok);
    const a = metric(r);
    const b = other ? metric(other) : undefined;
    if (a !== undefined && b) ratios.push(a / b);
  }
  return median(ratios);
}

function medianOf(runs: readonly WsRun[], part: Part, proxy: WsProxy, metric: Metric): number | undefined {
  return median(
    runs
      .filter((r) => r.part === part && r.proxy === proxy && r.ok)
      .map(metric)
      .filter((v): v is number => v !== undefined),
  );
}

export function renderWs(
  runs: readonly WsRun[],
  proxies: readonly ProxyName[],
  durationS: number,
  warmupS: number,
  idleSockets: number,
  impl: WsBackendImpl,
): string {
  const out: string[] = ['### WebSockets', ''];
  out.push(
    `Scenario \`${WS_SCENARIO}\`. WebSockets (HTTP/1.1 Upgrade) → proxy → echo backend ${backendDescription(impl)}; ` +
      '`ws` clients (`bench/ws-client.ts`) in their own process on the load core; binary messages, no compression.',
    '',
    '- muxgate: route `upgrades: [websocket]`, cluster `websocket: http1` (the default: each WebSocket an Upgrade on an upstream connection of its own), otherwise as in get-12b.',
    '- HAProxy: `mode http` (it passes the Upgrade natively), `timeout tunnel 1h`, otherwise as in get-12b.',
    `- rtt: ${WS_RTT.sockets} WebSocket, ${WS_RTT.size}-byte messages, the next sent when the echo of the previous one arrives; ` +
      `round-trip time at the client over the ${durationS} s after a ${warmupS} s warm-up. Command: \`${wsClientCommand('rtt', durationS, warmupS)}\`.`,
    `- throughput: ${WS_THROUGHPUT.sockets} WebSockets, each keeping ${WS_THROUGHPUT.window} messages of ${WS_THROUGHPUT.size.toLocaleString('en-US')} bytes in flight ` +
      `(a new one per echo); echoes received per second over the ${durationS} s after the warm-up; MB/s counts the echoed payload one way (each message crosses the proxy twice). ` +
      `Command: \`${wsClientCommand('throughput', durationS, warmupS)}\`.`,
    '- proxy CPU: utime + stime of the proxy process (`/proc/<pid>/stat`) over the measured window, as a share of one core and per echoed message; ' +
      '"load core" is the same for the client and backend processes together. A proxy well under 100 % while the load core is near 100 % was held back by the load side: ' +
      'then messages/s understates the difference and CPU per message is the fairer comparison.',
    `- idle memory: ${wsIdleMethod(idleSockets)}. Each WebSocket holds two TCP connections in the proxy (client and backend side).`,
    '- muxgate ÷ HAProxy: median over rounds of the ratio within a round. Lower is better for latency, CPU per message and memory; higher for messages/s.',
    '',
  );
  const shown = WS_PROXIES.filter((p) => proxies.includes(p) && runs.some((r) => r.proxy === p));
  if (shown.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  // [label, part, metric, format, whether a ratio means something]
  const rows: [string, Part, Metric, (v: number | undefined) => string, boolean?][] = [
    [`rtt p50 (${WS_RTT.sockets} socket, ${WS_RTT.size} B ping-pong)`, 'rtt', (r) => r.p50Us, fmtUs],
    [`rtt p99 (${WS_RTT.sockets} socket, ${WS_RTT.size} B ping-pong)`, 'rtt', (r) => r.p99Us, fmtUs],
    [
      `throughput, messages/s (${WS_THROUGHPUT.sockets} × ${WS_THROUGHPUT.window} in flight, ${WS_THROUGHPUT.size / 1024} KiB)`,
      'throughput',
      (r) => r.messagesPerS,
      fmtRate,
    ],
    ['throughput, MB/s (payload, one way)', 'throughput', (r) => r.bytesPerS, fmtMBps],
    ['throughput, proxy CPU per message', 'throughput', (r) => r.cpuUsPerMessage, fmtCpuUs],
    ['throughput, proxy core busy', 'throughput', (r) => r.proxyCpu, fmtPct],
    ['throughput, load core busy (clients + backend)', 'throughput', (r) => r.loadCpu, fmtPct, false],
    [
      `memory per idle WebSocket (${idleSockets.toLocaleString('en-US')} sockets)`,
      'idle',
      (r) => r.bytesPerSocket,
      fmtKiBPer,
    ],
  ];
  const has = (p: WsProxy): boolean => shown.includes(p);
  out.push(
    mdTable(
      ['figure', 'muxgate', 'HAProxy', 'muxgate ÷ HAProxy'],
      rows.map(([label, part, metric, fmt, ratio]) => [
        label,
        has('muxgate') ? fmt(medianOf(runs, part, 'muxgate', metric)) : '–',
        has('haproxy') ? fmt(medianOf(runs, part, 'haproxy', metric)) : '–',
        ratio === false ? '–' : fmtRatio(pairedRatio(runs, part, metric)),
      ]),
      ['l', 'r', 'r', 'r'],
    ),
    '',
  );

  const ratio = (part: Part, metric: Metric): string => fmtRatio(pairedRatio(runs, part, metric));
  if (has('muxgate') && has('haproxy')) {
    out.push(
      `muxgate ÷ HAProxy (median of per-round ratios): rtt p50 **${ratio('rtt', (r) => r.p50Us)}×**, p99 **${ratio('rtt', (r) => r.p99Us)}×**; ` +
        `throughput **${ratio('throughput', (r) => r.messagesPerS)}×** messages/s at **${ratio('throughput', (r) => r.cpuUsPerMessage)}×** the CPU per message; ` +
        `memory per idle WebSocket **${ratio('idle', (r) => r.bytesPerSocket)}×**.`,
      '',
    );
  }
  // who set the pace of the throughput runs
  for (const p of shown) {
    const proxyCpu = medianOf(runs, 'throughput', p, (r) => r.proxyCpu);
    const loadCpu = medianOf(runs, 'throughput', p, (r) => r.loadCpu);
    if (proxyCpu !== undefined && loadCpu !== undefined && proxyCpu < 0.9) {
      out.push(
        `- ${p === 'haproxy' ? 'HAProxy' : p}'s core was ${fmtPct(proxyCpu)} busy in the throughput runs (load core ${fmtPct(loadCpu)}): ` +
          `${loadCpu >= 0.9 ? 'the load side (clients + backend), not the proxy, set its rate' : 'neither core was saturated (other work on the machine?)'}; ` +
          'compare the CPU per message.',
      );
    }
  }
  const warned = runs.filter((r) => r.ok && r.warnings.length).length;
  const failed = runs.filter((r) => !r.ok).length;
  if (warned) out.push(`- ⚠ ${warned}/${runs.length} runs with warnings (see the raw numbers).`);
  if (failed) out.push(`- ⚠ ${failed}/${runs.length} runs failed (see the raw numbers).`);
  if (out[out.length - 1] !== '') out.push('');

  const notes = (r: WsRun): string =>
    r.ok
      ? r.warnings.map((w) => `⚠ ${w}`).join('; ') || 'none'
      : `FAILED: ${(r.failure ?? 'unknown').replaceAll('\n', ' ')}`;
  const loaded = runs.filter((r) => r.part !== 'idle');
  const idle = runs.filter((r) => r.part === 'idle');
  out.push('<details>', `<summary>Raw per-round numbers (${WS_SCENARIO})</summary>`, '');
  if (loaded.length) {
    out.push(
      mdTable(
        [
          'round',
          'part',
          'proxy',
          'messages',
          'p50',
          'p99',
          'p99.9',
          'msg/s',
          'MB/s',
          'proxy CPU',
          'CPU per msg',
          'load core',
          'RSS',
          'notes',
        ],
        loaded.map((r) => [
          String(r.round),
          r.part,
          r.proxy,
          r.messages === undefined ? '–' : String(r.messages),
          fmtUs(r.p50Us),
          fmtUs(r.p99Us),
          fmtUs(r.p999Us),
          fmtRate(r.messagesPerS),
          fmtMBps(r.bytesPerS),
          fmtPct(r.proxyCpu),
          fmtCpuUs(r.cpuUsPerMessage),
          fmtPct(r.loadCpu),
          fmtMiB(r.rssKiB),
          notes(r),
        ]),
        ['r', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
    );
  }
  if (idle.length) {
    out.push(
      mdTable(
        ['round', 'proxy', 'idle WebSockets', 'RSS before', 'RSS after', 'per WebSocket', 'notes'],
        idle.map((r) => [
          String(r.round),
          r.proxy,
          r.sockets === undefined ? '–' : String(r.sockets),
          fmtMiB(r.beforeKiB),
          fmtMiB(r.afterKiB),
          fmtKiBPer(r.bytesPerSocket),
          notes(r),
        ]),
        ['r', 'l', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
    );
  }
  out.push('</details>', '');
  return out.join('\n');
}
