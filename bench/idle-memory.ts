// The `idle-rss` figure: the proxy's resident memory per idle keep-alive
// downstream connection. Each measurement starts a fresh proxy (pinned to the
// proxy core, limits raised to hold the connections), serves 100 warm-up
// connections and closes them, waits 4 s, reads VmRSS, opens N connections that
// each serve one GET and then idle (bench/idle-clients.ts on the load core),
// waits 4 s, reads VmRSS again: (after - before) / N. muxgate's readings are each
// taken right after `POST /memory/trim` (what memory_trim does by itself once idle
// after a burst), so neither holds young-generation garbage the other does not:
// waiting for its own trim was not enough, since 100 warm-up connections do not
// grow the young generation past `young_above`, and "before" then held a few MiB
// that the trim after the burst gave back. A warm-up as large as the measurement is
// not used: nginx and HAProxy keep the memory of closed connections for reuse,
// and would then look free.
// Goal: <= 4 KB per connection for muxgate.

import { type FigureContext, rotate } from './figure.ts';
import { openIdleClients } from './idle-clients-process.ts';
import { readRssKiB } from './procs.ts';
import { fmtRatio, mdTable, median } from './report.ts';
import {
  LOAD_CPU,
  PROXY_CPU,
  PROXY_PORTS,
  type ProxyName,
  proxySpec,
  StartError,
  serverOutput,
  startServer,
  stopServer,
} from './servers.ts';

export const IDLE_RSS_SCENARIO = 'idle-rss';
export const IDLE_DEFAULT_CONNECTIONS = 9000;
/** After a burst: muxgate's memory trim runs within ~2 s of the process going idle. */
const IDLE_TRIM_WAIT_MS = 4000;
export const IDLE_WARMUP_CONNECTIONS = 100;
/** muxgate's admin port in this figure: each reading comes right after `POST /memory/trim`. */
export const IDLE_ADMIN_PORT = 18197;

/**
 * muxgate: one memory trim now (the one `memory_trim` runs by itself once idle after a burst), so that
 * the reading holds no young-generation garbage that a later trim would give back.
 */
async function trimMuxgate(): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${IDLE_ADMIN_PORT}/memory/trim`, { method: 'POST' });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`POST /memory/trim: ${r.status} ${body}`);
}

/** bytes per connection; "4 KB" taken as 4 KiB */
const GOAL_BYTES = 4096;

/** Fresh proxies of this figure listen here, apart from the throughput runs' ones. */
export const IDLE_PORTS: Record<ProxyName, number> = {
  muxgate: PROXY_PORTS.muxgate + 10,
  nginx: PROXY_PORTS.nginx + 10,
  haproxy: PROXY_PORTS.haproxy + 10,
  'http-proxy': PROXY_PORTS['http-proxy'] + 10,
};

export interface IdleRssRun {
  round: number;
  proxy: string;
  ok: boolean;
  failure?: string;
  connections: number;
  /** connections that served their request (the divisor) */
  served?: number;
  beforeKiB?: number;
  afterKiB?: number;
  bytesPerConnection?: number;
  /** what makes the number suspect: refused connections, connections the proxy closed while idle… */
  warnings: string[];
}

export interface IdleRssOptions {
  round: number;
  proxy: ProxyName;
  connections: number;
  dir: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One measurement on a freshly started proxy; never throws. */
export async function measureIdleRss(o: IdleRssOptions): Promise<IdleRssRun> {
  const base = { round: o.round, proxy: o.proxy, connections: o.connections };
  const warnings: string[] = [];
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(
      proxySpec(o.proxy, o.dir, {
        tag: 'idle',
        port: IDLE_PORTS[o.proxy],
        cpu: PROXY_CPU,
        maxConnections: o.connections,
        ...(o.proxy === 'muxgate' ? { adminPort: IDLE_ADMIN_PORT } : {}),
      }),
      o.dir,
    );
  } catch (err) {
    const details = err instanceof StartError ? `\n${err.details}` : '';
    return { ...base, ok: false, failure: `${(err as Error).message}${details}`.slice(0, 1500), warnings };
  }
  const port = server.spec.port;
  try {
    const warm = await openIdleClients({ port, count: IDLE_WARMUP_CONNECTIONS, cpu: LOAD_CPU });
    await warm.close();
    if (warm.ready.served < IDLE_WARMUP_CONNECTIONS) {
      throw new Error(
        `warm-up: ${warm.ready.served}/${IDLE_WARMUP_CONNECTIONS} served (${warm.ready.errors.join('; ')})`,
      );
    }
    await sleep(IDLE_TRIM_WAIT_MS); // closed, and idle
    if (o.proxy === 'muxgate') await trimMuxgate();
    const beforeKiB = readRssKiB(server.tracked.pid);

    const idle = await openIdleClients({ port, count: o.connections, cpu: LOAD_CPU });
    await sleep(IDLE_TRIM_WAIT_MS);
    if (o.proxy === 'muxgate') await trimMuxgate();
    const afterKiB = readRssKiB(server.tracked.pid);
    const closed = await idle.close();

    const r = idle.ready;
    if (r.failed) warnings.push(`${r.failed} connections failed (${r.errors.join('; ')})`);
    if (r.notKeptAlive) warnings.push(`${r.notKeptAlive} responses said Connection: close`);
    if (closed.closedByPeer) warnings.push(`the proxy closed ${closed.closedByPeer} idle connections`);
    if (server.tracked.exit) throw new Error(`${o.proxy} exited: ${serverOutput(server).slice(-500)}`);
    if (beforeKiB === undefined || afterKiB === undefined) throw new Error('cannot read VmRSS');
    if (r.served === 0) throw new Error(`no connection served a request (${r.errors.join('; ')})`);
    return {
      ...base,
      ok: true,
      served: r.served,
      beforeKiB,
      afterKiB,
      bytesPerConnection: ((afterKiB - beforeKiB) * 1024) / r.served,
      warnings,
    };
  } catch (err) {
    return { ...base, ok: false, failure: (err as Error).message.slice(0, 1000), warnings };
  } finally {
    await stopServer(server);
  }
}

/** The figure: `rounds` fresh measurements per proxy, one proxy at a time. */
export async function runIdleRssFigure(ctx: FigureContext, connections: number, runs: IdleRssRun[]): Promise<void> {
  console.log(`\n[${IDLE_RSS_SCENARIO}] ${connections} idle keep-alive connections per proxy`);
  for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
    for (const proxy of rotate(ctx.proxies, round - 1)) {
      if (ctx.stopped()) break;
      const r = await measureIdleRss({ round, proxy, connections, dir: ctx.runDir });
      if (ctx.stopped()) break;
      runs.push(r);
      console.log(idleRssConsoleLine(r));
      ctx.recorded();
    }
  }
}

const fmtBytes = (b: number | undefined): string =>
  b === undefined ? '–' : `${Math.round(b).toLocaleString('en-US')} B (${(b / 1024).toFixed(1)} KiB)`;
const fmtKiB = (kib: number | undefined): string => (kib === undefined ? '–' : `${(kib / 1024).toFixed(1)} MiB`);

export function idleRssConsoleLine(r: IdleRssRun): string {
  const head = `${String(r.round).padEnd(6)}${r.proxy.padEnd(12)}`;
  if (!r.ok) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const warn = r.warnings.length ? `  ⚠ ${r.warnings.join('; ')}` : '';
  return `${head}${fmtBytes(r.bytesPerConnection).padStart(22)} per connection  (RSS ${fmtKiB(r.beforeKiB)} → ${fmtKiB(r.afterKiB)}, ${r.served} connections)${warn}`;
}

export function idleRssMethod(connections: number): string {
  return (
    `a fresh proxy per measurement, pinned to the proxy core; ${IDLE_WARMUP_CONNECTIONS} connections served and closed, ${IDLE_TRIM_WAIT_MS / 1000} s, VmRSS read; ` +
    `then \`bench/idle-clients.ts\` (its own process, on the load core) opens ${connections.toLocaleString('en-US')} keep-alive connections, ` +
    `one GET / each, response read in full, left idle; VmRSS read after ${IDLE_TRIM_WAIT_MS / 1000} s; ` +
    '(muxgate: each reading right after `POST /memory/trim` on its admin port, one footprint-reducing GC, what `memory_trim` does by itself once idle after a burst) ' +
    '(after − before) ÷ connections. Keep-alive timeouts are 300 s everywhere; nginx `worker_connections` and HAProxy `maxconn` ' +
    'are raised to hold the connections (nginx preallocates its connection array at startup: that is in "before").'
  );
}

/** Median over rounds of (proxy bytes ÷ nginx bytes in the same round). */
function ratioToNginx(mine: readonly IdleRssRun[], ref: readonly IdleRssRun[]): number | undefined {
  const ratios: number[] = [];
  for (const r of mine) {
    const other = ref.find((o) => o.round === r.round);
    if (r.bytesPerConnection !== undefined && other?.bytesPerConnection) {
      ratios.push(r.bytesPerConnection / other.bytesPerConnection);
    }
  }
  return median(ratios);
}

export function renderIdleRss(runs: readonly IdleRssRun[], proxies: readonly string[], connections: number): string {
  const out: string[] = [`### ${IDLE_RSS_SCENARIO}`, ''];
  out.push(
    `Userland RSS (VmRSS) per idle keep-alive downstream connection, ${connections.toLocaleString('en-US')} connections. ` +
      `Goal: ≤ 4 KB (${GOAL_BYTES.toLocaleString('en-US')} B) per connection for muxgate.`,
    '',
  );
  const ok = (p: string): IdleRssRun[] => runs.filter((r) => r.proxy === p && r.ok);
  const nginx = ok('nginx');
  const rows: string[][] = [];
  for (const proxy of proxies) {
    const all = runs.filter((r) => r.proxy === proxy);
    if (all.length === 0) continue;
    const mine = ok(proxy);
    const bytes = mine.map((r) => r.bytesPerConnection!);
    const notes: string[] = [];
    const warned = mine.filter((r) => r.warnings.length).length;
    if (warned) notes.push(`⚠ ${warned}/${all.length} runs with warnings (see raw numbers)`);
    if (all.length > mine.length) notes.push(`⚠ ${all.length - mine.length}/${all.length} runs failed`);
    rows.push([
      proxy,
      fmtBytes(median(bytes)),
      bytes.length
        ? `${Math.round(Math.min(...bytes)).toLocaleString('en-US')} – ${Math.round(Math.max(...bytes)).toLocaleString('en-US')} B`
        : '–',
      fmtKiB(median(mine.map((r) => r.beforeKiB!))),
      fmtKiB(median(mine.map((r) => r.afterKiB!))),
      fmtRatio(ratioToNginx(mine, nginx)),
      notes.join('; ') || 'none',
    ]);
  }
  if (rows.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  out.push(
    mdTable(
      ['proxy', 'median per connection', 'min – max', 'RSS before', 'RSS with idle connections', '÷ nginx', 'notes'],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const mux = median(ok('muxgate').map((r) => r.bytesPerConnection!));
  if (mux !== undefined) {
    const met = mux <= GOAL_BYTES;
    out.push(
      `muxgate: ${fmtBytes(mux)} per idle connection (goal ≤ ${GOAL_BYTES.toLocaleString('en-US')} B): **${met ? 'met' : 'not met'}**.`,
      '',
    );
  }
  out.push(
    '<details>',
    `<summary>Raw per-round numbers (${IDLE_RSS_SCENARIO})</summary>`,
    '',
    mdTable(
      ['round', 'proxy', 'connections served', 'RSS before', 'RSS after', 'per connection', 'notes'],
      runs.map((r) => [
        String(r.round),
        r.proxy,
        r.served === undefined ? '–' : String(r.served),
        fmtKiB(r.beforeKiB),
        fmtKiB(r.afterKiB),
        fmtBytes(r.bytesPerConnection),
        r.ok
          ? r.warnings.map((w) => `⚠ ${w}`).join('; ') || 'none'
          : `FAILED: ${(r.failure ?? '').replaceAll('\n', ' ')}`,
      ]),
      ['r', 'l', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    '</details>',
    '',
  );
  return out.join('\n');
}
