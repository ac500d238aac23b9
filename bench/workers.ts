// The `workers` figure: muxgate `workers: 2` vs `workers: 1` on this 2-core
// machine, the proxy unpinned while wrk and the backend stay on the load core;
// nginx `worker_processes 2` vs 1 (master process, `listen … reuseport`: the
// same SO_REUSEPORT setup) as the comparison point. Also how the kernel spreads
// connections over the workers (bench/worker-spread.ts).

import { type FigureContext, pairedRatio, rotate } from './figure.ts';
import { fmtMs, fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { GET_12B } from './scenarios.ts';
import {
  ALL_CPUS,
  checkEndpoint,
  LOAD_CPU,
  type ProxyName,
  proxySpec,
  type RunningServer,
  StartError,
  startServer,
  stopServer,
} from './servers.ts';
import {
  fetchWorkerStats,
  measureSpread,
  renderSpread,
  SPREAD_CONNECTIONS,
  type SpreadRun,
  spreadConsoleLine,
} from './worker-spread.ts';
import { runWrk, runWrkRaw, type WrkResult } from './wrk.ts';

export const WORKERS_SCENARIO = 'workers';
// One wrk thread: wrk is pinned to one core (shared with the backend), where a second thread only
// adds context switches. 100 connections, so that each of two workers gets about 50, as in get-12b.
export const WORKERS_WRK_ARGS = ['-t1', '-c100'] as const;
export interface WorkersVariant {
  id: string;
  proxy: Extract<ProxyName, 'muxgate' | 'nginx'>;
  workers: number;
  port: number;
  /** muxgate's admin API, for its per-worker stats */
  adminPort?: number;
}

export const WORKERS_VARIANTS: readonly WorkersVariant[] = [
  { id: 'muxgate-w1', proxy: 'muxgate', workers: 1, port: 18121 },
  { id: 'muxgate-w2', proxy: 'muxgate', workers: 2, port: 18122, adminPort: 18132 },
  { id: 'nginx-w1', proxy: 'nginx', workers: 1, port: 18123 },
  { id: 'nginx-w2', proxy: 'nginx', workers: 2, port: 18124 },
];

export function workersPorts(v: WorkersVariant): number[] {
  return v.adminPort === undefined ? [v.port] : [v.port, v.adminPort];
}

export async function startVariant(v: WorkersVariant, dir: string): Promise<RunningServer> {
  const server = await startServer(
    proxySpec(v.proxy, dir, {
      tag: `w${v.workers}`,
      port: v.port,
      cpu: ALL_CPUS,
      workers: v.workers,
      adminPort: v.adminPort,
    }),
    dir,
  );
  // The port accepts once the first worker listens; wait for all of them.
  if (v.adminPort !== undefined) {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const stats = await fetchWorkerStats(v.adminPort).catch(() => undefined);
      if (stats !== undefined && stats.length === v.workers) break;
      if (Date.now() > deadline) {
        throw new StartError(`${v.id}: not all ${v.workers} workers answer /stats after 15 s`, '');
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return server;
}

export interface WorkersRun {
  round: number;
  variant: string;
  ok: boolean;
  failure?: string;
  wrk?: WrkResult;
}

/** wrk (warm-up run, then the measured one) against one variant; never throws. */
export async function measureWorkers(
  round: number,
  v: WorkersVariant,
  server: RunningServer,
  warmupS: number,
  durationS: number,
): Promise<WorkersRun> {
  const base = { round, variant: v.id };
  const down = (): string | undefined =>
    server.tracked.exit
      ? `${v.id} is not running (exit ${server.tracked.exit.signal ?? server.tracked.exit.code})`
      : undefined;
  const opts = { url: `http://127.0.0.1:${v.port}/`, args: WORKERS_WRK_ARGS, cpu: LOAD_CPU };
  try {
    if (down()) return { ...base, ok: false, failure: down()! };
    await runWrkRaw({ ...opts, durationS: warmupS });
    const wrk = await runWrk({ ...opts, durationS });
    if (down()) return { ...base, ok: false, failure: down()! };
    if (wrk.requests === 0) return { ...base, ok: false, failure: `${v.id} answered no request in ${durationS} s` };
    return { ...base, ok: true, wrk };
  } catch (err) {
    return { ...base, ok: false, failure: down() ?? (err as Error).message.slice(0, 500) };
  }
}

export interface WorkersState {
  runs: WorkersRun[];
  spread: SpreadRun[];
}

/**
 * The figure: every variant running at once (unpinned), interleaved wrk rounds, and after each
 * round the spread of SPREAD_CONNECTIONS short connections over the workers of each multi-worker one.
 */
export async function runWorkersFigure(
  ctx: FigureContext,
  variants: readonly WorkersVariant[],
  state: WorkersState,
): Promise<void> {
  if (variants.length === 0) {
    console.error(`✗ ${WORKERS_SCENARIO}: needs muxgate or nginx among the proxies`);
    return;
  }
  console.log(
    `\n[${WORKERS_SCENARIO}] proxies unpinned; wrk ${WORKERS_WRK_ARGS.join(' ')} and the backend on core ${LOAD_CPU}`,
  );
  const running = new Map<string, RunningServer>();
  try {
    for (const v of variants) {
      if (ctx.stopped()) return;
      try {
        const server = await startVariant(v, ctx.runDir);
        running.set(v.id, server);
        console.log(`started ${v.id} (pid ${server.tracked.pid}, port ${v.port})`);
      } catch (err) {
        if (!(err instanceof StartError)) throw err;
        ctx.startFailures.set(v.id, `${err.message}\n${err.details}`);
        console.error(`✗ ${v.id} failed to start: ${err.message}\n${err.details}\n`);
        continue;
      }
      const err = await checkEndpoint(v.port, GET_12B.path, GET_12B.check);
      if (err) {
        ctx.checkFailures.set(`${WORKERS_SCENARIO}/${v.id}`, err);
        console.error(`✗ ${v.id}: sanity check failed: ${err}`);
      }
    }
    const ready = variants.filter((v) => running.has(v.id) && !ctx.checkFailures.has(`${WORKERS_SCENARIO}/${v.id}`));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const v of rotate(ready, round - 1)) {
        if (ctx.stopped()) break;
        const r = await measureWorkers(round, v, running.get(v.id)!, ctx.warmupS, ctx.durationS);
        if (ctx.stopped()) break;
        state.runs.push(r);
        console.log(workersConsoleLine(r));
        ctx.recorded();
      }
      for (const v of ready.filter((x) => x.workers > 1)) {
        if (ctx.stopped()) break;
        const r = await measureSpread(round, v);
        if (ctx.stopped()) break;
        state.spread.push(r);
        console.log(spreadConsoleLine(r));
        ctx.recorded();
      }
    }
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

export function workersConsoleLine(r: WorkersRun): string {
  const head = `${String(r.round).padEnd(6)}${r.variant.padEnd(12)}`;
  if (!r.ok || !r.wrk) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const err = r.wrk.errorCount ? `  ⚠ ${r.wrk.errorCount} errors` : '';
  return `${head}${fmtRps(r.wrk.rps).padStart(10)} req/s  p50 ${fmtMs(r.wrk.p50Ms)}  p99 ${fmtMs(r.wrk.p99Ms)}${err}`;
}

export function workersMethod(durationS: number): string {
  return (
    `proxy unpinned (both cores), backend and \`wrk ${WORKERS_WRK_ARGS.join(' ')} -d${durationS}s\` pinned to the load core; ` +
    'muxgate `workers: 1` and `workers: 2`, nginx `worker_processes 1` and `2` (master process, `reuseport`), interleaved rounds; ' +
    `then per round ${SPREAD_CONNECTIONS.toLocaleString('en-US')} short connections (one GET each) counted per worker ` +
    '(muxgate: admin `/stats` `per_worker[].connections_total` before/after; nginx: `ss -tnp` while they are open).'
  );
}

interface WorkersInput {
  runs: readonly WorkersRun[];
  spread: readonly SpreadRun[];
  variants: readonly WorkersVariant[];
}

export function renderWorkers(input: WorkersInput): string {
  const out: string[] = [`### ${WORKERS_SCENARIO}`, ''];
  out.push(
    '`workers: 2` vs `workers: 1` on this 2-core machine (proxy unpinned, wrk and the backend pinned to one core), GET / (12-byte body). ' +
      'Goal: connections spread within 10 % of an even split.',
    '',
  );
  const ids = new Set(input.variants.map((v) => v.id));
  const one = (proxy: string): string | undefined =>
    input.variants.find((v) => v.proxy === proxy && v.workers === 1 && ids.has(v.id))?.id;
  const rows: string[][] = [];
  for (const v of input.variants) {
    const all = input.runs.filter((r) => r.variant === v.id);
    if (all.length === 0) continue;
    const ok = all.filter((r) => r.ok && r.wrk);
    const rps = ok.map((r) => r.wrk!.rps);
    const w1 = one(v.proxy);
    const nginxSame = input.variants.find((n) => n.proxy === 'nginx' && n.workers === v.workers)?.id;
    const errors = ok.reduce((n, r) => n + (r.wrk?.errorCount ?? 0), 0);
    const notes: string[] = [];
    if (errors) notes.push(`⚠ ${errors} errors`);
    if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
    rows.push([
      v.id,
      String(v.workers),
      fmtRps(median(rps)),
      rps.length ? `${fmtRps(Math.min(...rps))} – ${fmtRps(Math.max(...rps))}` : '–',
      fmtMs(median(ok.map((r) => r.wrk!.p50Ms))),
      fmtMs(median(ok.map((r) => r.wrk!.p99Ms))),
      w1 === v.id ? '1.00' : w1 === undefined ? '–' : fmtRatio(pairedRatio(input.runs, v.id, w1)),
      nginxSame === undefined ? '–' : fmtRatio(pairedRatio(input.runs, v.id, nginxSame)),
      notes.join('; ') || 'none',
    ]);
  }
  if (rows.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  out.push(
    mdTable(
      [
        'variant',
        'workers',
        'median req/s',
        'min – max req/s',
        'median p50',
        'median p99',
        '÷ workers: 1',
        '÷ nginx, same workers',
        'notes',
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const speedups = (['muxgate', 'nginx'] as const)
    .map((p) => [p, pairedRatio(input.runs, `${p}-w2`, `${p}-w1`)] as const)
    .filter(([, r]) => r !== undefined)
    .map(([p, r]) => `${p} ${fmtRatio(r)}×`);
  if (speedups.length)
    out.push(`Speed-up of the second worker (req/s, workers: 2 ÷ workers: 1): ${speedups.join(', ')}.`, '');

  out.push(
    ...renderSpread(
      input.spread,
      input.variants.filter((v) => v.workers > 1),
    ),
  );
  const failures = [...input.runs, ...input.spread].filter((r) => !r.ok);
  for (const f of failures)
    out.push(`- round ${f.round}, ${f.variant}: FAILED: ${(f.failure ?? 'unknown').replaceAll('\n', ' ')}`);
  if (failures.length) out.push('');
  return out.join('\n');
}
