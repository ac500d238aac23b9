// The `ws-h2-idle` figure: muxgate's resident memory per idle multiplexed WebSocket and per idle
// HTTP/2 client connection (muxgate only; no other proxy here speaks RFC 8441 on both sides).
//
// - backend: bench/ws-h2-backend.ts in its own process on the load core: node:http2 over h2c with
//   SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT `:protocol websocket` is answered 200 and
//   its frames echoed; anything else 200 "ok"
// - muxgate (pinned to the proxy core): one `protocol: auto` listener (HTTP/1.1 and h2c on one port)
//   whose route has `upgrades: [websocket]`, to a cluster `protocol: http2` (h2c), `websocket: h2`,
//   `pool: { max_connections: 200 }`, `http2: { max_concurrent_streams: 100 }`: every WebSocket is
//   an RFC 8441 stream upstream and 10,000 of them fit in 100 upstream connections (the pool packs
//   streams into as few sessions as it can), the second batch's 10,000 in 100 more; admin on, for /stats
// - clients: bench/ws-h2-client.ts in a process of its own on the load core (raw sockets and
//   node:http2, no WebSocket library)
//
// Three cases, each on a fresh muxgate, `--rounds` times:
//   A. h1-upgrade: N WebSockets arriving as HTTP/1.1 Upgrades (a TCP connection each)
//   B. h2-streams: N WebSockets arriving as RFC 8441 streams, N/100 h2c connections × 100 streams
//   C. h2-conns: M idle h2c client connections that each served one GET (upstream on the h2 pool)
// Method: N items opened (one echo or GET each) and closed, the warm-up; once muxgate's memory trim has
// run after that burst (/stats memory.trims grew) and 1 s more, VmRSS read; N items opened and left
// idle; VmRSS read the same way; (after − before) ÷ items. Then, with those still open, a second batch
// of N items (a second client process, same arguments); VmRSS read again (after2); marginal per item =
// (after2 − after) ÷ items of the second batch. Why the warm-up and the trim: a burst of openings makes
// V8 grow its young generation to its maximum (2 × 8 MiB semi-spaces under muxgate's
// --max-semi-space-size=8) and V8 inside Node never shrinks it; before muxgate's memory_trim the first
// figure carried that (B: 1.3-2.6 KiB per item from round to round, the live heap ~1.1). muxgate now
// gives it back once idle, and every reading is taken after that, so before and after are the same kind
// of state. /stats (process.memoryUsage(), connection, tunnel and upstream session counts) is read right
// after each VmRSS, and `ss` counts muxgate's established connections to the backend.
//
// File descriptors: muxgate holds both batches' client sockets at once. Where its hard RLIMIT_NOFILE
// is too low for that and cannot be raised (prlimit needs CAP_SYS_RESOURCE; a container at 20,000
// cannot hold 2 × 10,000 upgrade sockets), the second batch is cut to what fits and the report says so:
// the marginal figure is per item of whatever size the second batch had.
//
// A note on closing: the client process exits instead of destroying its HTTP/2 sessions. node:http2's
// session.destroy() first sends RST_STREAM(NO_ERROR) for every open stream; muxgate's Splice takes a
// NO_ERROR reset of the client stream for a clean end, ends the upstream stream and waits for its
// 'close', which never comes (the upstream duplex, unpiped from the destroyed client stream, is paused
// and never reads the END_STREAM it got), so such tunnels stay counted in tunnels_open, with their
// objects, until upgrade_idle_timeout (1 h). That would leave the warm-up's tunnels in "before".

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FigureContext } from './figure.ts';
import { upstreamConnections } from './h2.ts';
import { readRssKiB, stopTracked } from './procs.ts';
import { fmtMiB, mdTable, median } from './report.ts';
import {
  LOAD_CPU,
  MUXGATE_NODE_FLAGS,
  PROXY_CPU,
  type RunningServer,
  type ServerSpec,
  StartError,
  serverOutput,
  startServer,
  stopServer,
} from './servers.ts';
import { type ClientProcess, startEventClient } from './ws.ts';

export const WS_H2_IDLE_SCENARIO = 'ws-h2-idle';
/** idle WebSockets per measurement of cases A and B (`--ws-h2-sockets`; a multiple of STREAMS_PER_CONNECTION) */
export const WS_H2_DEFAULT_SOCKETS = 10_000;
/** idle HTTP/2 client connections per measurement of case C (`--h2-idle-connections`) */
export const WS_H2_DEFAULT_CONNECTIONS = 5000;

export const WS_H2_BACKEND_PORT = 18180;
export const WS_H2_PORT = 18181;
export const WS_H2_ADMIN_PORT = 18182;

/** the cluster's and the listener's max_concurrent_streams, and the streams per client connection of case B */
const STREAMS_PER_CONNECTION = 100;
/**
 * the cluster's pool.max_connections: room for both batches of B (2 × 10,000 streams ÷ 100), where 100
 * would queue the second batch's streams (pool_queue_full past max_pending). The first batch alone
 * still takes at most N ÷ 100 connections: the pool fills a session before it opens another.
 */
const UPSTREAM_MAX_CONNECTIONS = 200;
/** muxgate's file descriptors besides client and upstream sockets (stdio, epoll, listeners, admin…), with room */
const FD_SLACK = 256;
/** items opening at once (A, C); in B, connections opening their streams at once (2 × 100 streams) */
const CONCURRENCY = 200;
const B_CONCURRENCY = 2;
const SETTLE_MS = 1000;
/** How long a reading waits for muxgate's memory trim after a burst (it runs within ~2 s of idling). */
const TRIM_WAIT_MS = 15_000;
const MESSAGE_SIZE = 32;
/** bytes per idle item */
const GOALS: Record<WsH2Case, number> = {
  'h1-upgrade': 5 * 1024,
  'h2-streams': 1.5 * 1024,
  'h2-conns': 8 * 1024,
};

export const WS_H2_CASES = ['h1-upgrade', 'h2-streams', 'h2-conns'] as const;
export type WsH2Case = (typeof WS_H2_CASES)[number];

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));
const CLIENT_SCRIPT = here('./ws-h2-client.ts');
const BACKEND_SCRIPT = here('./ws-h2-backend.ts');
const repoRoot = here('..');

/** Every port the figure listens on. */
export function wsH2Ports(figures: readonly string[]): [number, string][] {
  if (!figures.includes(WS_H2_IDLE_SCENARIO)) return [];
  return [
    [WS_H2_BACKEND_PORT, `backend (${WS_H2_IDLE_SCENARIO})`],
    [WS_H2_PORT, `muxgate (${WS_H2_IDLE_SCENARIO})`],
    [WS_H2_ADMIN_PORT, `muxgate admin (${WS_H2_IDLE_SCENARIO})`],
  ];
}

export interface WsH2Options {
  /** WebSockets in cases A and B */
  sockets: number;
  /** HTTP/2 client connections in case C */
  connections: number;
}

/** process.memoryUsage() of muxgate, from /stats, in bytes */
interface Mem {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

export interface WsH2Run {
  round: number;
  case: WsH2Case;
  ok: boolean;
  failure?: string;
  /** items asked for */
  items: number;
  /** items that completed their exchange (the divisor) */
  served?: number;
  beforeKiB?: number;
  afterKiB?: number;
  bytesPerItem?: number;
  memBefore?: Mem | undefined;
  memAfter?: Mem | undefined;
  /** muxgate's established TCP connections to the backend (ss), with everything open */
  upstreamConnections?: number | undefined;
  /** /stats: the endpoint's upstream HTTP/2 sessions and active streams */
  upstreamSessions?: number | undefined;
  upstreamStreams?: number | undefined;
  /** /stats: the listener's open client connections and tunnels */
  downstreamConnections?: number | undefined;
  tunnels?: number | undefined;
  /** the backend's own count of open WebSocket streams */
  backendStreams?: number | undefined;
  /** how long opening took, ms */
  openMs?: number | undefined;
  /** the second batch, opened with the first still open (the marginal measurement); items asked for */
  items2?: number;
  /** why the second batch is smaller than the first (file descriptors) */
  items2Cut?: string | undefined;
  served2?: number | undefined;
  after2KiB?: number | undefined;
  /** (after2 − after) ÷ served2 */
  marginalBytesPerItem?: number | undefined;
  memAfter2?: Mem | undefined;
  /** the same counts as above, with both batches open */
  upstreamConnections2?: number | undefined;
  upstreamSessions2?: number | undefined;
  upstreamStreams2?: number | undefined;
  downstreamConnections2?: number | undefined;
  tunnels2?: number | undefined;
  backendStreams2?: number | undefined;
  openMs2?: number | undefined;
  /** muxgate's memory trims before each reading (warm-up, 1st batch, 2nd batch): how long each paused, ms */
  trimPausesMs?: number[];
  /** what makes the number suspect: failed items, closes nobody asked for, wrong counts… */
  warnings: string[];
}

export interface WsH2State {
  runs: WsH2Run[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// file descriptors

/** The soft and hard RLIMIT_NOFILE of this process (children inherit them). */
function fdLimits(): { soft: number; hard: number } | undefined {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    const n = (s: string | undefined): number => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return undefined;
  }
}

/**
 * `argv` as it must be run to hold `need` file descriptors: unchanged when the soft limit is enough,
 * else under `prlimit --nofile` (raising the hard limit too needs root, and prlimit then fails with a
 * clear message). prlimit execs the command, so the pid stays the command's.
 */
function withFdLimit(argv: readonly string[], need: number): string[] {
  const lim = fdLimits();
  if (lim === undefined || lim.soft >= need) return [...argv];
  const hard = Math.max(lim.hard === Number.POSITIVE_INFINITY ? need : lim.hard, need);
  return ['prlimit', `--nofile=${need}:${hard}`, '--', ...argv];
}

/** Whether a child can be given `need` file descriptors (soft limit, or prlimit allowed to raise the hard one). */
function canHoldFds(need: number): boolean {
  const lim = fdLimits();
  if (lim === undefined || lim.hard >= need) return true;
  // raising the hard limit needs CAP_SYS_RESOURCE, which a root in a container may lack: ask prlimit
  return spawnSync('prlimit', [`--nofile=${need}:${need}`, '--', 'true']).status === 0;
}

/** The client-side sockets muxgate holds for `items` items of case `c`. */
const clientSockets = (c: WsH2Case, items: number): number =>
  c === 'h2-streams' ? Math.ceil(items / STREAMS_PER_CONNECTION) : items;

/** muxgate's file descriptors with `items` items of case `c` open: client sockets, upstream connections, slack. */
const muxgateFds = (c: WsH2Case, items: number): number =>
  clientSockets(c, items) + UPSTREAM_MAX_CONNECTIONS + FD_SLACK;

/**
 * The size of the second batch: `items` when muxgate can hold both batches' sockets, else as many as
 * fit under its hard limit (a multiple of STREAMS_PER_CONNECTION), with the reason.
 */
function secondBatch(c: WsH2Case, items: number): { items: number; cut?: string } {
  if (canHoldFds(muxgateFds(c, 2 * items))) return { items };
  const hard = fdLimits()?.hard ?? 0;
  const fit = hard - muxgateFds(c, items);
  const n = Math.max(0, Math.min(items, Math.floor(fit / STREAMS_PER_CONNECTION) * STREAMS_PER_CONNECTION));
  return {
    items: n,
    cut:
      `hard RLIMIT_NOFILE ${hard.toLocaleString('en-US')}, which prlimit could not raise (that needs CAP_SYS_RESOURCE): ` +
      `muxgate holds ${muxgateFds(c, items + n).toLocaleString('en-US')} fds with ${(items + n).toLocaleString('en-US')} items open`,
  };
}

// ---------------------------------------------------------------------------
// servers

function backendSpec(): ServerSpec {
  return {
    name: 'ws-h2-backend',
    port: WS_H2_BACKEND_PORT,
    cpu: LOAD_CPU,
    command: process.execPath,
    args: [BACKEND_SCRIPT, String(WS_H2_BACKEND_PORT)],
    logFiles: [],
  };
}

export function wsH2MuxgateConfig(): string {
  return `log_level: warn
access_log: { enabled: false }
workers: 1
drain_timeout: 2s
admin: { address: "127.0.0.1:${WS_H2_ADMIN_PORT}" }
listeners:
  - name: bench
    address: 127.0.0.1:${WS_H2_PORT}
    protocol: auto
    http2: { max_concurrent_streams: ${STREAMS_PER_CONNECTION} }
    idle_timeout: 300s
    routes:
      - cluster: backend
        upgrades: [websocket]
clusters:
  backend:
    protocol: http2
    websocket: h2
    endpoints: ["127.0.0.1:${WS_H2_BACKEND_PORT}"]
    http2: { max_concurrent_streams: ${STREAMS_PER_CONNECTION} }
    pool: { max_connections: ${UPSTREAM_MAX_CONNECTIONS} }
`;
}

/** Writes muxgate's config into `dir` and describes its command line; `items`: both batches. */
function muxgateSpec(dir: string, c: WsH2Case, items: number): ServerSpec {
  const conf = join(dir, 'muxgate-ws-h2-idle.yaml');
  writeFileSync(conf, wsH2MuxgateConfig());
  const args = [...MUXGATE_NODE_FLAGS, join(repoRoot, 'bin', 'muxgate.js'), 'start', '-c', conf];
  // MUXGATE_NODE_ARGS="…": Node options for muxgate only, as in bench/servers.ts
  const extra = process.env.MUXGATE_NODE_ARGS;
  // after muxgate's own flags, so that one given here wins (V8 takes the last)
  if (extra !== undefined && extra !== '')
    args.splice(MUXGATE_NODE_FLAGS.length, 0, ...extra.split(' ').filter((a) => a !== ''));
  // both batches' client sockets at once, upstream connections and some slack
  const [command, ...rest] = withFdLimit([process.execPath, ...args], muxgateFds(c, items));
  return { name: 'muxgate-ws-h2-idle', port: WS_H2_PORT, cpu: PROXY_CPU, command: command!, args: rest, logFiles: [] };
}

function downMessage(server: RunningServer): string | undefined {
  const e = server.tracked.exit;
  return e ? `muxgate is not running (exit ${e.signal ?? e.code}); ${serverOutput(server).slice(-500)}` : undefined;
}

// ---------------------------------------------------------------------------
// stats

interface MuxgateStats {
  memory: {
    rss: number;
    heap_total: number;
    heap_used: number;
    external: number;
    trims: number;
    trim_last_pause_ms: number;
  };
  listeners: { connections_open: number; tunnels_open: number }[];
  clusters: { endpoints: { h2: { sessions: number; streams_active: number } | null }[] }[];
}

/** muxgate's admin /stats, or undefined when it does not answer within 5 s. */
function muxgateStats(): Promise<MuxgateStats | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: WS_H2_ADMIN_PORT, path: '/stats', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? (JSON.parse(body) as MuxgateStats) : undefined);
        } catch {
          resolve(undefined);
        }
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(undefined));
  });
}

/**
 * Waits (up to TRIM_WAIT_MS) until muxgate's memory trim has run more than `seen` times, then the
 * settle time; true if it did. muxgate trims on its own once idle after a burst (memory_trim); every
 * reading is taken after it, so that before and after are the same kind of state.
 */
async function settleAfterTrim(seen: number): Promise<{ trimmed: boolean; trims: number; pauseMs: number }> {
  const end = Date.now() + TRIM_WAIT_MS;
  let trims = seen;
  let pauseMs = 0;
  while (Date.now() < end) {
    const m = (await muxgateStats())?.memory;
    trims = m?.trims ?? trims;
    pauseMs = m?.trim_last_pause_ms ?? 0;
    if (trims > seen) break;
    await sleep(250);
  }
  await sleep(SETTLE_MS);
  return { trimmed: trims > seen, trims, pauseMs };
}

const memOf = (s: MuxgateStats | undefined): Mem | undefined =>
  s === undefined
    ? undefined
    : {
        rss: s.memory.rss,
        heapTotal: s.memory.heap_total,
        heapUsed: s.memory.heap_used,
        external: s.memory.external,
      };

/** The backend's counts (GET /stats over h2c), or an error message. */
function backendStats(): Promise<{ streamsOpen: number; sessions: number } | string> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${WS_H2_BACKEND_PORT}`);
    const done = (v: { streamsOpen: number; sessions: number } | string): void => {
      clearTimeout(timer);
      session.close();
      resolve(v);
    };
    const timer = setTimeout(() => {
      session.destroy();
      resolve('backend /stats: no answer within 5 s');
    }, 5000);
    session.on('error', (e) => done(`backend /stats: ${e.message}`));
    const req = session.request({ ':path': '/stats' });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      try {
        done(JSON.parse(body) as { streamsOpen: number; sessions: number });
      } catch {
        done(`backend /stats: not JSON: ${body.slice(0, 100)}`);
      }
    });
    req.on('error', (e) => done(`backend /stats: ${e.message}`));
    req.end();
  });
}

// ---------------------------------------------------------------------------
// clients

interface Ready {
  opened: number;
  served: number;
  failed: number;
  errors: string[];
  elapsedMs: number;
}

function clientArgs(c: WsH2Case, items: number): string[] {
  const base = ['--port', String(WS_H2_PORT), '--size', String(MESSAGE_SIZE), '--max-seconds', '600'];
  if (c === 'h1-upgrade')
    return [...base, '--mode', 'upgrade', '--count', String(items), '--concurrency', String(CONCURRENCY)];
  if (c === 'h2-conns')
    return [...base, '--mode', 'h2-conn', '--count', String(items), '--concurrency', String(CONCURRENCY)];
  return [
    ...base,
    '--mode',
    'h2-ws',
    '--connections',
    String(Math.ceil(items / STREAMS_PER_CONNECTION)),
    '--streams',
    String(STREAMS_PER_CONNECTION),
    '--concurrency',
    String(B_CONCURRENCY),
  ];
}

/** Opens the items of one case through muxgate; resolves once every one is served (or failed). */
async function openItems(
  c: WsH2Case,
  items: number,
): Promise<{ ready: Ready; close(): Promise<{ open: number; closedByPeer: number }> }> {
  // one batch each: a client process holds only its own sockets
  const argv = withFdLimit([process.execPath, CLIENT_SCRIPT, ...clientArgs(c, items)], items + FD_SLACK);
  const client: ClientProcess = startEventClient('ws-h2-client', argv);
  try {
    const ready = (await client.waitFor('ready', 300_000)) as unknown as Ready;
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

// ---------------------------------------------------------------------------
// one measurement

/** The counts /stats, ss and the backend give with the items open (what the warnings check). */
interface Counts {
  stats: MuxgateStats | undefined;
  upstream: number | undefined;
  backend: { streamsOpen: number; sessions: number } | string;
}

async function readCounts(pid: number): Promise<Counts> {
  const stats = await muxgateStats();
  const upstream = upstreamConnections(pid, WS_H2_BACKEND_PORT);
  return { stats, upstream, backend: await backendStats() };
}

/**
 * The warnings of one reading: `served` items open over what `items` asked for (the upstream
 * connections they may take: items ÷ STREAMS_PER_CONNECTION); `what` names the reading.
 */
function checkCounts(c: WsH2Case, k: Counts, items: number, served: number, what: string, warnings: string[]): void {
  const prefix = what === '' ? '' : `${what}: `;
  if (k.stats === undefined) warnings.push(`${prefix}admin /stats did not answer`);
  if (typeof k.backend === 'string') warnings.push(`${prefix}${k.backend}`);
  if (c === 'h2-conns') return;
  const listener = k.stats?.listeners[0];
  const cap = Math.ceil(items / STREAMS_PER_CONNECTION);
  if (k.upstream !== undefined && k.upstream > cap) {
    warnings.push(`${prefix}${k.upstream} upstream connections, more than ${cap}`);
  }
  if (listener !== undefined && listener.tunnels_open !== served) {
    warnings.push(`${prefix}/stats tunnels_open ${listener.tunnels_open}, ${served} WebSockets served`);
  }
  if (typeof k.backend !== 'string' && k.backend.streamsOpen !== served) {
    warnings.push(`${prefix}the backend holds ${k.backend.streamsOpen} WebSocket streams, ${served} served`);
  }
}

type Batch = Awaited<ReturnType<typeof openItems>>;

async function measure(round: number, c: WsH2Case, items: number, ctx: FigureContext): Promise<WsH2Run> {
  const second = secondBatch(c, items);
  const base = { round, case: c, items, items2: second.items, items2Cut: second.cut };
  const warnings: string[] = [];
  let server: RunningServer;
  try {
    server = await startServer(muxgateSpec(ctx.runDir, c, items + second.items), ctx.runDir);
  } catch (err) {
    const details = err instanceof StartError ? `\n${err.details}` : '';
    return { ...base, ok: false, failure: `${(err as Error).message}${details}`.slice(0, 1500), warnings };
  }
  try {
    // The warm-up is a burst as large as the batch, opened and closed: what a burst costs the process
    // once (V8's young generation grown, start-up garbage) is paid and given back by muxgate's trim
    // before "before" is read.
    const trims0 = (await muxgateStats())?.memory.trims ?? 0;
    const warm = await openItems(c, items);
    await warm.close();
    if (warm.ready.served < items) {
      throw new Error(`warm-up: ${warm.ready.served}/${items} served (${warm.ready.errors.join('; ')})`);
    }
    const warmTrim = await settleAfterTrim(trims0);
    const trimPausesMs = [warmTrim.pauseMs];
    if (!warmTrim.trimmed) warnings.push(`no memory trim within ${TRIM_WAIT_MS / 1000} s of the warm-up`);
    const beforeKiB = readRssKiB(server.tracked.pid);
    const statsBefore = await muxgateStats();

    const idle = await openItems(c, items);
    const open: Batch[] = [idle];
    let afterKiB: number | undefined;
    let counts: Counts;
    let more: Batch | undefined;
    let moreFailure: string | undefined;
    let after2KiB: number | undefined;
    let counts2: Counts | undefined;
    let closed: { open: number; closedByPeer: number }[];
    try {
      const t1 = await settleAfterTrim(warmTrim.trims);
      trimPausesMs.push(t1.pauseMs);
      if (!t1.trimmed) warnings.push(`no memory trim within ${TRIM_WAIT_MS / 1000} s of the 1st batch`);
      afterKiB = readRssKiB(server.tracked.pid);
      counts = await readCounts(server.tracked.pid);
      // the marginal batch, the first one still open: the process-wide costs a burst of openings
      // pays once (V8's young generation at its maximum, among them) are paid by now
      if (second.items > 0) {
        try {
          more = await openItems(c, second.items);
          open.push(more);
        } catch (err) {
          moreFailure = (err as Error).message.slice(0, 500);
        }
      }
      if (more !== undefined) {
        const t2 = await settleAfterTrim(t1.trims);
        trimPausesMs.push(t2.pauseMs);
        if (!t2.trimmed) warnings.push(`no memory trim within ${TRIM_WAIT_MS / 1000} s of the 2nd batch`);
        after2KiB = readRssKiB(server.tracked.pid);
        counts2 = await readCounts(server.tracked.pid);
      }
    } finally {
      // both at once: the second batch's client must not outlive the first's failure
      closed = await Promise.all(open.map((b) => b.close()));
    }

    const r = idle.ready;
    const down = downMessage(server);
    if (down) throw new Error(down);
    if (beforeKiB === undefined || afterKiB === undefined) throw new Error('cannot read VmRSS');
    if (r.served === 0) throw new Error(`nothing was served (${r.errors.join('; ')})`);
    if (r.failed) warnings.push(`${r.failed} failed (${r.errors.join('; ')})`);
    if (closed[0]!.closedByPeer) warnings.push(`${closed[0]!.closedByPeer} closed by muxgate while idle`);
    checkCounts(c, counts, items, r.served, '', warnings);

    // the second batch: its trouble is a warning, the first figure stands without it
    const r2 = more?.ready;
    if (moreFailure !== undefined) warnings.push(`2nd batch: ${moreFailure}`);
    if (r2 !== undefined) {
      if (r2.served === 0) warnings.push(`2nd batch: nothing was served (${r2.errors.join('; ')})`);
      else if (r2.failed) warnings.push(`2nd batch: ${r2.failed} failed (${r2.errors.join('; ')})`);
      if (closed[1]!.closedByPeer) warnings.push(`2nd batch: ${closed[1]!.closedByPeer} closed by muxgate while idle`);
      if (after2KiB === undefined) warnings.push('2nd batch: cannot read VmRSS');
      // both batches: at most (N + N2) ÷ 100 upstream connections, within the pool's cap
      if (counts2 !== undefined) {
        checkCounts(c, counts2, items + second.items, r.served + r2.served, 'both batches', warnings);
      }
    }
    const served2 = r2 !== undefined && r2.served > 0 ? r2.served : undefined;
    const listener = counts.stats?.listeners[0];
    const listener2 = counts2?.stats?.listeners[0];
    const h2 = counts.stats?.clusters[0]?.endpoints[0]?.h2 ?? undefined;
    const h2b = counts2?.stats?.clusters[0]?.endpoints[0]?.h2 ?? undefined;
    return {
      ...base,
      ok: true,
      served: r.served,
      beforeKiB,
      afterKiB,
      bytesPerItem: ((afterKiB - beforeKiB) * 1024) / r.served,
      trimPausesMs,
      memBefore: memOf(statsBefore),
      memAfter: memOf(counts.stats),
      upstreamConnections: counts.upstream,
      upstreamSessions: h2?.sessions,
      upstreamStreams: h2?.streams_active,
      downstreamConnections: listener?.connections_open,
      tunnels: listener?.tunnels_open,
      backendStreams: typeof counts.backend === 'string' ? undefined : counts.backend.streamsOpen,
      openMs: r.elapsedMs,
      served2,
      after2KiB,
      marginalBytesPerItem:
        served2 !== undefined && after2KiB !== undefined ? ((after2KiB - afterKiB) * 1024) / served2 : undefined,
      memAfter2: memOf(counts2?.stats),
      upstreamConnections2: counts2?.upstream,
      upstreamSessions2: h2b?.sessions,
      upstreamStreams2: h2b?.streams_active,
      downstreamConnections2: listener2?.connections_open,
      tunnels2: listener2?.tunnels_open,
      backendStreams2:
        counts2 === undefined || typeof counts2.backend === 'string' ? undefined : counts2.backend.streamsOpen,
      openMs2: r2?.elapsedMs,
      warnings,
    };
  } catch (err) {
    return { ...base, ok: false, failure: (downMessage(server) ?? (err as Error).message).slice(0, 1000), warnings };
  } finally {
    await stopServer(server);
  }
}

// ---------------------------------------------------------------------------
// the figure

const CASE_LABEL: Record<WsH2Case, string> = {
  'h1-upgrade': 'A. WebSockets as HTTP/1.1 Upgrades',
  'h2-streams': `B. WebSockets as RFC 8441 streams (${STREAMS_PER_CONNECTION} per client connection)`,
  'h2-conns': 'C. HTTP/2 client connections, one GET each',
};
const CASE_UNIT: Record<WsH2Case, string> = {
  'h1-upgrade': 'WebSocket',
  'h2-streams': 'WebSocket',
  'h2-conns': 'connection',
};

function itemsOf(c: WsH2Case, o: WsH2Options): number {
  if (c === 'h2-conns') return o.connections;
  return Math.ceil(o.sockets / STREAMS_PER_CONNECTION) * STREAMS_PER_CONNECTION;
}

function caseMethod(c: WsH2Case, o: WsH2Options): string {
  const n = itemsOf(c, o).toLocaleString('en-US');
  if (c === 'h1-upgrade') {
    return `${n} WebSockets as HTTP/1.1 Upgrades (raw sockets: a GET with a random \`Sec-WebSocket-Key\`, the 101 and its \`Sec-WebSocket-Accept\` checked), ${CONCURRENCY} opening at once`;
  }
  if (c === 'h2-streams') {
    return `${n} WebSockets as RFC 8441 extended CONNECT streams (\`:protocol websocket\`): ${(itemsOf(c, o) / STREAMS_PER_CONNECTION).toLocaleString('en-US')} h2c connections × ${STREAMS_PER_CONNECTION} streams (node:http2), ${B_CONCURRENCY} connections opening their streams at once`;
  }
  return `${n} h2c connections (node:http2, prior knowledge), one \`GET /\` each (answered by the backend through the upstream HTTP/2 pool), ${CONCURRENCY} opening at once`;
}

/** The second measurement and why it is there; in the method section and in the figure's text. */
const TRIM_READING = `once muxgate's memory trim has run after the burst (\`/stats\` \`memory.trims\` grew; it runs within ~2 s of the process going idle; waited for up to ${TRIM_WAIT_MS / 1000} s) and ${SETTLE_MS / 1000} s more`;

const MARGINAL_METHOD =
  'Then, with those still open, a 2nd batch of N items (a second client process, same arguments); ' +
  `VmRSS read the same way (after2); marginal per item = (after2 − after) ÷ items of the 2nd batch. ` +
  "Why the warm-up and the trim: a burst of openings makes V8 grow its young generation to its maximum (2 × 8 MiB semi-spaces with muxgate's `--max-semi-space-size=8`), " +
  'which V8 inside Node never gives back by itself; muxgate does (`memory_trim`, on by default: one footprint-reducing GC once the process is idle after a burst), ' +
  'and every reading is taken after it, so before and after are the same kind of state. Why two figures: the 2nd shows whether the cost per item stays the same as items add up.';

export function wsH2Method(o: WsH2Options): string {
  return (
    'muxgate only, pinned to the proxy core: a `protocol: auto` listener, route `upgrades: [websocket]`, cluster `protocol: http2` (h2c), ' +
    `\`websocket: h2\`, \`pool: { max_connections: ${UPSTREAM_MAX_CONNECTIONS} }\`, \`http2: { max_concurrent_streams: ${STREAMS_PER_CONNECTION} }\`, to an RFC 8441 backend ` +
    '(`bench/ws-h2-backend.ts`, node:http2, on the load core); clients `bench/ws-h2-client.ts` on the load core. ' +
    `Per case, a fresh muxgate; N items opened and closed (the warm-up), ${TRIM_READING}, VmRSS read; N items opened and left idle; VmRSS read ${TRIM_READING} again; ` +
    `(after − before) ÷ items. ${MARGINAL_METHOD} ` +
    `A: ${caseMethod('h1-upgrade', o)}; B: ${caseMethod('h2-streams', o)}; C: ${caseMethod('h2-conns', o)}. ` +
    `Each WebSocket sends one ${MESSAGE_SIZE}-byte message and reads its echo before idling.`
  );
}

const fmtKiBPer = (b: number | undefined): string =>
  b === undefined ? '–' : `${(b / 1024).toFixed(2)} KiB (${Math.round(b).toLocaleString('en-US')} B)`;
const fmtCount = (v: number | undefined): string => (v === undefined ? '–' : v.toLocaleString('en-US'));

/** (after − before) of one memoryUsage() field, per item. */
function perItem(r: WsH2Run, f: keyof Mem): number | undefined {
  if (r.memBefore === undefined || r.memAfter === undefined || !r.served) return undefined;
  return (r.memAfter[f] - r.memBefore[f]) / r.served;
}

/** (after2 − after) of one memoryUsage() field, per item of the 2nd batch. */
function perItem2(r: WsH2Run, f: keyof Mem): number | undefined {
  if (r.memAfter === undefined || r.memAfter2 === undefined || !r.served2) return undefined;
  return (r.memAfter2[f] - r.memAfter[f]) / r.served2;
}

export function wsH2ConsoleLine(r: WsH2Run): string {
  const head = `${String(r.round).padEnd(6)}${`ws-h2-idle ${r.case}`.padEnd(26)}`;
  if (!r.ok) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const warn = r.warnings.length ? `  ⚠ ${r.warnings.join('; ')}` : '';
  const up =
    r.case === 'h2-conns'
      ? ''
      : `, ${fmtCount(r.upstreamConnections)} upstream connections, ${fmtCount(r.tunnels)} tunnels`;
  const up2 =
    r.case === 'h2-conns'
      ? ''
      : `, ${fmtCount(r.upstreamConnections2)} upstream connections, ${fmtCount(r.tunnels2)} tunnels`;
  const second =
    r.served2 === undefined
      ? ''
      : `; 2nd batch (marginal): ${fmtKiBPer(r.marginalBytesPerItem)} per idle ${CASE_UNIT[r.case]}  (RSS → ${fmtMiB(r.after2KiB)}, ` +
        `${fmtCount(r.served2)} served in ${fmtCount(r.openMs2)} ms${up2}; heap used ${fmtKiBPer(perItem2(r, 'heapUsed'))} per item)`;
  return (
    `${head}${fmtKiBPer(r.bytesPerItem)} per idle ${CASE_UNIT[r.case]}  (RSS ${fmtMiB(r.beforeKiB)} → ${fmtMiB(r.afterKiB)}, ` +
    `${fmtCount(r.served)} served in ${fmtCount(r.openMs)} ms${up}; heap used ${fmtKiBPer(perItem(r, 'heapUsed'))}, external ${fmtKiBPer(perItem(r, 'external'))} per item)` +
    `${second}; memory trim pauses ${(r.trimPausesMs ?? []).map((p) => `${p} ms`).join(' / ')}${warn}`
  );
}

/** Starts the backend, then measures each case on a fresh muxgate, `ctx.rounds` times. */
export async function runWsH2Figure(ctx: FigureContext, o: WsH2Options, st: WsH2State): Promise<void> {
  if (!ctx.proxies.includes('muxgate')) {
    console.error(`✗ ${WS_H2_IDLE_SCENARIO}: measures muxgate only, which is not among the proxies`);
    return;
  }
  console.log(
    `\n[${WS_H2_IDLE_SCENARIO}] idle memory of multiplexed WebSockets; muxgate on core ${PROXY_CPU}; RFC 8441 backend and clients on core ${LOAD_CPU}; ` +
      `${itemsOf('h1-upgrade', o)} WebSockets (A, B), ${o.connections} HTTP/2 connections (C)`,
  );
  let backend: RunningServer;
  try {
    backend = await startServer(backendSpec(), ctx.runDir);
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    ctx.startFailures.set(`ws-h2-backend (${WS_H2_IDLE_SCENARIO})`, `${err.message}\n${err.details}`);
    console.error(`✗ ws-h2-backend failed to start: ${err.message}\n${err.details}\n`);
    return;
  }
  try {
    const check = await backendStats();
    if (typeof check === 'string') {
      ctx.checkFailures.set(`${WS_H2_IDLE_SCENARIO}/ws-h2-backend`, check);
      console.error(`✗ ws-h2 backend: ${check}\n${serverOutput(backend)}`);
      return;
    }
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const c of WS_H2_CASES) {
        if (ctx.stopped()) return;
        const r = await measure(round, c, itemsOf(c, o), ctx);
        if (ctx.stopped()) return;
        st.runs.push(r);
        console.log(wsH2ConsoleLine(r));
        ctx.recorded();
      }
    }
  } finally {
    await stopServer(backend);
  }
}

// ---------------------------------------------------------------------------
// report

function medianOf(runs: readonly WsH2Run[], c: WsH2Case, metric: (r: WsH2Run) => number | undefined) {
  return median(
    runs
      .filter((r) => r.case === c && r.ok)
      .map(metric)
      .filter((v): v is number => v !== undefined),
  );
}

const maxOf = (runs: readonly WsH2Run[], c: WsH2Case, metric: (r: WsH2Run) => number | undefined) => {
  const vs = runs
    .filter((r) => r.case === c && r.ok)
    .map(metric)
    .filter((v): v is number => v !== undefined);
  return vs.length ? Math.max(...vs) : undefined;
};

export function renderWsH2(runs: readonly WsH2Run[], o: WsH2Options): string {
  const out: string[] = ['### Idle memory of multiplexed WebSockets', ''];
  out.push(
    `Scenario \`${WS_H2_IDLE_SCENARIO}\`. muxgate only (pinned to the proxy core), one \`protocol: auto\` listener whose route has \`upgrades: [websocket]\`, ` +
      `to a cluster \`protocol: http2\` (h2c), \`websocket: h2\`, \`pool: { max_connections: ${UPSTREAM_MAX_CONNECTIONS} }\`, ` +
      `\`http2: { max_concurrent_streams: ${STREAMS_PER_CONNECTION} }\`: every WebSocket is an RFC 8441 stream upstream, ` +
      `${STREAMS_PER_CONNECTION} to a connection (the pool cap leaves room for both batches below). Backend: \`bench/ws-h2-backend.ts\` (node:http2 over h2c, \`enableConnectProtocol\`, echoes the frames of each extended CONNECT stream), ` +
      'on the load core; clients: `bench/ws-h2-client.ts` (raw sockets and node:http2), on the load core.',
    '',
    `- A: ${caseMethod('h1-upgrade', o)}.`,
    `- B: ${caseMethod('h2-streams', o)}.`,
    `- C: ${caseMethod('h2-conns', o)}.`,
    `- Each case on a fresh muxgate: N items opened (one ${MESSAGE_SIZE}-byte echo or GET each) and closed (the warm-up), ${TRIM_READING}, VmRSS read; ` +
      `the N items opened and left idle; VmRSS read ${TRIM_READING} again; (after − before) ÷ items served. ` +
      "The upstream connections muxgate opens for them are part of the difference. Heap used and external: the same difference of muxgate's " +
      '`process.memoryUsage()` (admin `/stats`, read right after each VmRSS), per item.',
    `- ${MARGINAL_METHOD} Heap used per item of the 2nd batch: the same difference of \`process.memoryUsage()\`. Both batches are closed after the second reading.`,
    "- Upstream connections: muxgate's established connections to the backend (`ss -Htnp state established '( dport = :PORT )'`, by pid) with every item open " +
      'of the 1st batch, then of both; tunnels: `/stats` `tunnels_open` of the listener, likewise.',
    '',
  );
  const shown = WS_H2_CASES.filter((c) => runs.some((r) => r.case === c));
  if (shown.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  const goalCell = (c: WsH2Case, per: number | undefined): string => {
    const goal = GOALS[c];
    const met = per === undefined ? '' : per <= goal ? ' ✓' : ' ✗';
    return `≤ ${(goal / 1024).toFixed(1)} KiB per ${CASE_UNIT[c]}${met}`;
  };
  out.push(
    mdTable(
      [
        'case',
        'items',
        'RSS per idle item',
        'goal',
        'items, 2nd batch',
        'RSS per idle item, 2nd batch (marginal)',
        'goal (marginal)',
        'heap used per item',
        'heap used per item, 2nd batch',
        'external per item',
        'upstream connections, 1st batch / both',
        'tunnels open, 1st batch / both',
      ],
      shown.map((c) => {
        const per = medianOf(runs, c, (r) => r.bytesPerItem);
        const marginal = medianOf(runs, c, (r) => r.marginalBytesPerItem);
        const up = `${fmtCount(maxOf(runs, c, (r) => r.upstreamConnections))} / ${fmtCount(maxOf(runs, c, (r) => r.upstreamConnections2))}`;
        return [
          CASE_LABEL[c],
          fmtCount(medianOf(runs, c, (r) => r.served)),
          fmtKiBPer(per),
          goalCell(c, per),
          fmtCount(medianOf(runs, c, (r) => r.served2)),
          fmtKiBPer(marginal),
          goalCell(c, marginal),
          fmtKiBPer(medianOf(runs, c, (r) => perItem(r, 'heapUsed'))),
          fmtKiBPer(medianOf(runs, c, (r) => perItem2(r, 'heapUsed'))),
          fmtKiBPer(medianOf(runs, c, (r) => perItem(r, 'external'))),
          c === 'h2-conns' ? up : `${up} (cap ${UPSTREAM_MAX_CONNECTIONS})`,
          c === 'h2-conns'
            ? '–'
            : `${fmtCount(medianOf(runs, c, (r) => r.tunnels))} / ${fmtCount(medianOf(runs, c, (r) => r.tunnels2))}`,
        ];
      }),
      ['l', 'r', 'r', 'l', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    'Medians over rounds; upstream connections: the most in any round.',
    '',
  );
  for (const c of shown) {
    if (c === 'h2-conns') continue;
    const served = medianOf(runs, c, (r) => r.served);
    const up = maxOf(runs, c, (r) => r.upstreamConnections);
    if (served === undefined || up === undefined) continue;
    const from = c === 'h2-streams' ? ` from ${fmtCount(served / STREAMS_PER_CONNECTION)} client connections` : '';
    // the first batch alone packs into N ÷ 100 upstream connections, as with a cap of 100: the pool
    // fills a session before it opens another; the cap of 200 is there for both batches
    const served2 = medianOf(runs, c, (r) => r.served2);
    const up2 = maxOf(runs, c, (r) => r.upstreamConnections2);
    const both =
      served2 === undefined || up2 === undefined
        ? ''
        : `; with the 2nd batch, ${fmtCount(served + served2)} over ${fmtCount(up2)}`;
    out.push(
      `- ${CASE_LABEL[c].slice(0, 1)}: ${fmtCount(served)} idle WebSockets${from} over ${fmtCount(up)} upstream connections${both} ` +
        `(\`pool.max_connections: ${UPSTREAM_MAX_CONNECTIONS}\`, room for both batches).`,
    );
  }
  // a 2nd batch cut to the file descriptors muxgate may hold: say so, the marginal figure is per item of that batch
  for (const c of shown) {
    const cut = runs.find((r) => r.case === c && r.items2Cut !== undefined);
    if (cut === undefined) continue;
    out.push(
      `- ${CASE_LABEL[c].slice(0, 1)}: 2nd batch of ${fmtCount(cut.items2)}, not ${fmtCount(cut.items)}: ${cut.items2Cut}. ` +
        'The marginal figure is per item of that batch.',
    );
  }
  const warned = runs.filter((r) => r.ok && r.warnings.length).length;
  const failed = runs.filter((r) => !r.ok).length;
  if (warned) out.push(`- ⚠ ${warned}/${runs.length} runs with warnings (see the raw numbers).`);
  if (failed) out.push(`- ⚠ ${failed}/${runs.length} runs failed (see the raw numbers).`);
  if (out[out.length - 1] !== '') out.push('');

  const notes = (r: WsH2Run): string =>
    r.ok
      ? r.warnings.map((w) => `⚠ ${w}`).join('; ') || 'none'
      : `FAILED: ${(r.failure ?? 'unknown').replaceAll('\n', ' ')}`;
  const mib = (b: number | undefined): string => (b === undefined ? '–' : fmtMiB(b / 1024));
  const secs = (ms: number | undefined): string => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)} s`);
  // with a 2nd batch, each count as "1st batch → both"
  const pair = (a: number | undefined, b: number | undefined, two: boolean): string =>
    two ? `${fmtCount(a)} → ${fmtCount(b)}` : fmtCount(a);
  out.push(
    '<details>',
    `<summary>Raw per-round numbers (${WS_H2_IDLE_SCENARIO})</summary>`,
    '',
    'Where two counts are given, the first is with the 1st batch open, the second with both.',
    '',
    mdTable(
      [
        'round',
        'case',
        'served (1st + 2nd batch)',
        'open time (1st + 2nd)',
        'RSS before',
        'RSS after',
        'per item',
        'RSS after 2nd batch (after2)',
        'marginal per item',
        'heap used before → after → after2',
        'external before → after → after2',
        'upstream conns (ss)',
        'upstream sessions / streams (/stats)',
        'client conns / tunnels (/stats)',
        'backend streams',
        'memory trim pauses (warm-up / 1st / 2nd)',
        'notes',
      ],
      runs.map((r) => {
        const two = r.after2KiB !== undefined;
        return [
          String(r.round),
          r.case,
          r.served2 === undefined ? fmtCount(r.served) : `${fmtCount(r.served)} + ${fmtCount(r.served2)}`,
          r.openMs2 === undefined ? secs(r.openMs) : `${secs(r.openMs)} + ${secs(r.openMs2)}`,
          fmtMiB(r.beforeKiB),
          fmtMiB(r.afterKiB),
          fmtKiBPer(r.bytesPerItem),
          fmtMiB(r.after2KiB),
          fmtKiBPer(r.marginalBytesPerItem),
          `${mib(r.memBefore?.heapUsed)} → ${mib(r.memAfter?.heapUsed)} → ${mib(r.memAfter2?.heapUsed)}`,
          `${mib(r.memBefore?.external)} → ${mib(r.memAfter?.external)} → ${mib(r.memAfter2?.external)}`,
          pair(r.upstreamConnections, r.upstreamConnections2, two),
          two
            ? `${fmtCount(r.upstreamSessions)} / ${fmtCount(r.upstreamStreams)} → ${fmtCount(r.upstreamSessions2)} / ${fmtCount(r.upstreamStreams2)}`
            : `${fmtCount(r.upstreamSessions)} / ${fmtCount(r.upstreamStreams)}`,
          two
            ? `${fmtCount(r.downstreamConnections)} / ${fmtCount(r.tunnels)} → ${fmtCount(r.downstreamConnections2)} / ${fmtCount(r.tunnels2)}`
            : `${fmtCount(r.downstreamConnections)} / ${fmtCount(r.tunnels)}`,
          pair(r.backendStreams, r.backendStreams2, two),
          (r.trimPausesMs ?? []).map((p) => `${p} ms`).join(' / '),
          notes(r),
        ];
      }),
      ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    '</details>',
    '',
  );
  return out.join('\n');
}
