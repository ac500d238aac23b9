// What bench/run.ts hands to the runner of each figure that is not a plain wrk
// scenario (bench/fixed-rate.ts, bench/idle-memory.ts, bench/workers.ts, bench/access-log.ts, bench/h2.ts),
// and what those runners share.

import { descendantPids, sumTicks, ticksPerSecond } from './procs.ts';
import { median } from './report.ts';
import { GET_12B } from './scenarios.ts';
import { LOAD_CPU, type ProxyName, type RunningServer, StartError, startServer, stopServer } from './servers.ts';
import { runWrk, runWrkRaw, type WrkResult } from './wrk.ts';

export interface FigureContext {
  /** configs, logs and scratch files of this run */
  runDir: string;
  rounds: number;
  durationS: number;
  warmupS: number;
  proxies: readonly ProxyName[];
  /** true once the run was interrupted (Ctrl-C): stop after the current measurement */
  stopped(): boolean;
  /** call after recording each result (rewrites the report) */
  recorded(): void;
  /** server -> why it could not be started */
  startFailures: Map<string, string>;
  /** "scenario/server" -> why its sanity check failed */
  checkFailures: Map<string, string>;
}

/** `list` rotated left by `by`: the order of the servers changes from one round to the next. */
export function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length === 0) return [];
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** Starts a server for a figure, recording a failure to start or a failed sanity check; undefined then. */
export async function startChecked(
  ctx: FigureContext,
  scenario: string,
  id: string,
  spec: Parameters<typeof startServer>[0],
  check: (port: number) => Promise<string | undefined>,
): Promise<RunningServer | undefined> {
  let server: RunningServer;
  try {
    server = await startServer(spec, ctx.runDir);
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    ctx.startFailures.set(`${id} (${scenario})`, `${err.message}\n${err.details}`);
    console.error(`✗ ${id} failed to start: ${err.message}\n${err.details}\n`);
    return undefined;
  }
  console.log(`started ${spec.name} (pid ${server.tracked.pid}, port ${spec.port})`);
  const err = await check(spec.port);
  if (err) {
    ctx.checkFailures.set(`${scenario}/${id}`, err);
    console.error(`✗ ${id}: sanity check for ${scenario} failed: ${err}`);
    await stopServer(server);
    return undefined;
  }
  return server;
}

/** A run of one variant of a figure: enough to pair it with another variant's run of the same round. */
export interface PairedRun {
  variant: string;
  round: number;
  wrk?: { rps: number } | undefined;
  cpuUsPerReq?: number | undefined;
}

/** What a paired ratio compares: req/s, or the proxy's CPU time per request. */
export type PairedMeasure = 'rps' | 'cpu';

const measureOf = (r: PairedRun, m: PairedMeasure): number | undefined => (m === 'rps' ? r.wrk?.rps : r.cpuUsPerReq);

/** a ÷ b (req/s, or CPU per request) in each round where both ran, in round order. */
export function pairedRatios(runs: readonly PairedRun[], a: string, b: string, m: PairedMeasure = 'rps'): number[] {
  const ratios: number[] = [];
  for (const r of runs) {
    const mine = measureOf(r, m);
    if (r.variant !== a || mine === undefined) continue;
    const other = runs.find((o) => o.variant === b && o.round === r.round && measureOf(o, m) !== undefined);
    const theirs = other === undefined ? undefined : measureOf(other, m);
    if (theirs) ratios.push(mine / theirs);
  }
  return ratios;
}

/** Median over rounds of (a ÷ b in the same round). */
export function pairedRatio(
  runs: readonly PairedRun[],
  a: string,
  b: string,
  m: PairedMeasure = 'rps',
): number | undefined {
  return median(pairedRatios(runs, a, b, m));
}

/** utime + stime of a server and the processes it started (nginx's workers), in clock ticks. */
function serverTicks(server: RunningServer): number | undefined {
  const pid = server.tracked.pid;
  return sumTicks([pid, ...descendantPids(pid)]);
}

/**
 * One get-12b measurement of a server a figure started: wrk on the load core against `port`, after
 * the warm-up run; a server that died or answered nothing is a failure with its reason.
 */
export async function measureGet12b(
  id: string,
  port: number,
  server: RunningServer,
  ctx: FigureContext,
): Promise<{ ok: true; wrk: WrkResult; cpuUsPerReq: number | undefined } | { ok: false; failure: string }> {
  const down = (): string | undefined =>
    server.tracked.exit
      ? `${id} is not running (exit ${server.tracked.exit.signal ?? server.tracked.exit.code})`
      : undefined;
  const opts = { url: `http://127.0.0.1:${port}/`, args: GET_12B.wrkArgs, cpu: LOAD_CPU };
  try {
    if (down()) return { ok: false, failure: down()! };
    await runWrkRaw({ ...opts, durationS: ctx.warmupS });
    // The proxy's CPU time per request besides req/s: a round's req/s moves with whatever else the
    // load core is doing, the proxy's own cost per request far less.
    const before = serverTicks(server);
    const wrk = await runWrk({ ...opts, durationS: ctx.durationS });
    const after = serverTicks(server);
    if (down()) return { ok: false, failure: down()! };
    if (wrk.requests === 0) return { ok: false, failure: `${id} answered no request in ${ctx.durationS} s` };
    const cpuUsPerReq =
      before === undefined || after === undefined
        ? undefined
        : ((after - before) / ticksPerSecond() / wrk.requests) * 1e6;
    return { ok: true, wrk, cpuUsPerReq };
  } catch (err) {
    return { ok: false, failure: down() ?? (err as Error).message.slice(0, 500) };
  }
}
