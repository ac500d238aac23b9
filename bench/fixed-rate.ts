// The `latency-fixed-rate` figure: latency of GET / (12-byte body) at a fixed
// rate of half nginx's maximum, for every proxy, with h2load (bench/h2load.ts).
// Goal: muxgate's p99 <= 1.5x nginx's p99 at that rate.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { type FigureContext, rotate } from './figure.ts';
import { type LatencySummary, parseH2loadLogFile, runH2load, summarizeH2loadLog } from './h2load.ts';
import { fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { GET_12B } from './scenarios.ts';
import { LOAD_CPU, type ProxyName, type RunningServer } from './servers.ts';
import { runWrk, runWrkRaw } from './wrk.ts';

export const FIXED_RATE_SCENARIO = 'latency-fixed-rate';
export const FIXED_RATE_CLIENTS = 50;
/** the target is half of nginx's maximum */
export const FIXED_RATE_FRACTION = 0.5;
/** a run that served less than this share of the target rate did not sustain it */
const SUSTAINED_SHARE = 0.95;
/** the goal: muxgate's p99 at most this many times nginx's */
const P99_GOAL = 1.5;
/** length of the wrk run that measures nginx's maximum when get-12b did not run */
const MAX_RATE_PROBE_S = 5;

export interface FixedRateRun {
  round: number;
  proxy: string;
  ok: boolean;
  failure?: string;
  targetRps: number;
  summary?: LatencySummary;
  /** h2load overran its time limit (the proxy fell behind) and was stopped; the summary covers its log so far */
  cutShort?: boolean;
}

export interface FixedRateOptions {
  round: number;
  proxy: string;
  port: number;
  targetRps: number;
  warmupS: number;
  durationS: number;
  /** where h2load writes its per-request log (deleted once read) */
  dir: string;
  cpu: string;
}

/** One h2load run against one proxy; never throws. */
export async function measureFixedRate(o: FixedRateOptions): Promise<FixedRateRun> {
  const base = { round: o.round, proxy: o.proxy, targetRps: o.targetRps };
  const logFile = join(o.dir, `h2load-${o.proxy}-round${o.round}.log`);
  const seconds = o.warmupS + o.durationS;
  // a proxy that cannot keep up would take (target / its rate) times longer: cut it short instead
  const timeoutMs = (seconds * 1.5 + 5) * 1000;
  try {
    const raw = await runH2load(
      {
        url: `http://127.0.0.1:${o.port}/`,
        rps: o.targetRps,
        clients: FIXED_RATE_CLIENTS,
        seconds,
        logFile,
        cpu: o.cpu,
      },
      timeoutMs,
    );
    if (!raw.killed && raw.code !== 0) {
      return {
        ...base,
        ok: false,
        failure: `h2load exited with ${raw.code ?? raw.signal}: ${(raw.stderr || raw.stdout).trim().slice(-500)}`,
      };
    }
    const summary = summarizeH2loadLog(parseH2loadLogFile(logFile), o.warmupS);
    if (summary.ok === 0) {
      return { ...base, ok: false, failure: `no successful response after the warm-up (${summary.failed} failed)` };
    }
    return { ...base, ok: true, summary, cutShort: raw.killed };
  } catch (err) {
    return { ...base, ok: false, failure: (err as Error).message.slice(0, 500) };
  } finally {
    rmSync(logFile, { force: true });
  }
}

export interface FixedRateState {
  runs: FixedRateRun[];
  targetRps: number | undefined;
  /** how the target rate was obtained */
  rateSource: string;
}

/**
 * The figure, in interleaved rounds, against proxies already running (pinned as for the wrk
 * scenarios). The rate is half of nginx's median get-12b req/s (`nginxGet12bRps`, from the same
 * run); without those, a short wrk run measures nginx's maximum first.
 */
export async function runFixedRateFigure(
  ctx: FigureContext,
  running: ReadonlyMap<ProxyName, RunningServer>,
  nginxGet12bRps: readonly number[],
  state: FixedRateState,
): Promise<void> {
  const nginx = running.get('nginx');
  if (nginx === undefined || ctx.checkFailures.has(`${FIXED_RATE_SCENARIO}/nginx`)) {
    state.rateSource = 'none: nginx, the reference, did not run';
    console.error(`✗ ${FIXED_RATE_SCENARIO}: nginx did not run, so there is no rate to test at`);
    return;
  }
  let max = median(nginxGet12bRps);
  const pct = `${FIXED_RATE_FRACTION * 100} %`;
  if (max !== undefined) {
    state.rateSource = `${pct} of nginx's median ${GET_12B.name} rate in this run (${fmtRps(max)} req/s)`;
  } else {
    const wrkOpts = { url: `http://127.0.0.1:${nginx.spec.port}/`, args: GET_12B.wrkArgs, cpu: LOAD_CPU };
    await runWrkRaw({ ...wrkOpts, durationS: ctx.warmupS });
    max = (await runWrk({ ...wrkOpts, durationS: MAX_RATE_PROBE_S })).rps;
    state.rateSource =
      `${pct} of nginx's rate in a ${MAX_RATE_PROBE_S} s \`wrk ${GET_12B.wrkArgs.join(' ')}\` run made for this ` +
      `(${fmtRps(max)} req/s; ${GET_12B.name} did not run)`;
  }
  const target = Math.round(max * FIXED_RATE_FRACTION);
  state.targetRps = target;
  console.log(`\n[${FIXED_RATE_SCENARIO}] ${fmtRps(target)} req/s: ${state.rateSource}`);
  const proxies = ctx.proxies.filter((p) => running.has(p) && !ctx.checkFailures.has(`${FIXED_RATE_SCENARIO}/${p}`));
  for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
    for (const proxy of rotate(proxies, round - 1)) {
      if (ctx.stopped()) break;
      const r = await measureFixedRate({
        round,
        proxy,
        port: running.get(proxy)!.spec.port,
        targetRps: target,
        warmupS: ctx.warmupS,
        durationS: ctx.durationS,
        dir: ctx.runDir,
        cpu: LOAD_CPU,
      });
      if (ctx.stopped()) break;
      state.runs.push(r);
      console.log(fixedRateConsoleLine(r));
      ctx.recorded();
    }
  }
}

export function sustained(r: FixedRateRun): boolean {
  return r.ok && !r.cutShort && (r.summary?.achievedRps ?? 0) >= SUSTAINED_SHARE * r.targetRps;
}

const fmtUs = (us: number | undefined): string =>
  us === undefined ? '–' : us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${(us / 1000).toFixed(2)} ms`;

export function fixedRateConsoleLine(r: FixedRateRun): string {
  if (!r.ok) return `${String(r.round).padEnd(6)}${r.proxy.padEnd(12)}FAILED: ${r.failure ?? 'unknown'}`;
  const s = r.summary!;
  const flag = sustained(r) ? '' : `  ⚠ did not sustain the rate${r.cutShort ? ' (cut short)' : ''}`;
  const failed = s.failed ? `  ⚠ ${s.failed} failed` : '';
  return `${String(r.round).padEnd(6)}${r.proxy.padEnd(12)}${fmtRps(s.achievedRps).padStart(10)} of ${fmtRps(r.targetRps)} req/s  p50 ${fmtUs(s.p50Us)}  p99 ${fmtUs(s.p99Us)}  p99.9 ${fmtUs(s.p999Us)}${failed}${flag}`;
}

export interface FixedRateInput {
  runs: readonly FixedRateRun[];
  proxies: readonly string[];
  targetRps: number | undefined;
  /** how the target rate was obtained */
  rateSource: string;
}

export function fixedRateMethod(durationS: number, warmupS: number): string {
  return (
    `\`h2load --h1 -t1 -c${FIXED_RATE_CLIENTS} -r1 --rate-period=1ms --rps=<rate/${FIXED_RATE_CLIENTS}> -n<rate × ${warmupS + durationS} s> --log-file …\` ` +
    `pinned to the load core, GET / at ${FIXED_RATE_FRACTION * 100} % of nginx's maximum req/s; p50/p99/p99.9 from the per-request log after a ${warmupS} s warm-up ` +
    '(clients connect 1 ms apart so their request timers are out of phase: a steady rate, not bursts of 50). ' +
    'Latency counts from when h2load sends a request, so a proxy that falls behind shows as an achieved rate below the target.'
  );
}

/** Median over rounds of (proxy p99 ÷ nginx p99 in the same round). */
function p99Ratio(mine: readonly FixedRateRun[], ref: readonly FixedRateRun[]): number | undefined {
  const ratios: number[] = [];
  for (const r of mine) {
    const other = ref.find((o) => o.round === r.round);
    if (r.summary?.p99Us !== undefined && other?.summary?.p99Us) ratios.push(r.summary.p99Us / other.summary.p99Us);
  }
  return median(ratios);
}

export function renderFixedRate(input: FixedRateInput): string {
  const out: string[] = [`### ${FIXED_RATE_SCENARIO}`, ''];
  out.push(
    `GET / (12-byte body) at a fixed rate of ${fmtRps(input.targetRps)} req/s: ${input.rateSource}. ` +
      `Goal: muxgate's p99 ≤ ${P99_GOAL}× nginx's.`,
    '',
  );
  const okRuns = (p: string): FixedRateRun[] => input.runs.filter((r) => r.proxy === p && r.ok);
  const nginx = okRuns('nginx');
  const rows: string[][] = [];
  for (const proxy of input.proxies) {
    const all = input.runs.filter((r) => r.proxy === proxy);
    if (all.length === 0) continue;
    const ok = okRuns(proxy);
    const pick = (f: (s: LatencySummary) => number | undefined): number | undefined =>
      median(ok.map((r) => f(r.summary!)).filter((v): v is number => v !== undefined));
    const notSustained = ok.filter((r) => !sustained(r)).length;
    const failedRequests = ok.reduce((n, r) => n + (r.summary?.failed ?? 0), 0);
    const notes: string[] = [];
    if (notSustained) notes.push(`⚠ did not sustain the rate in ${notSustained}/${all.length} runs`);
    if (failedRequests) notes.push(`⚠ ${failedRequests} failed requests`);
    if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
    rows.push([
      proxy,
      fmtRps(pick((s) => s.achievedRps)),
      fmtUs(pick((s) => s.p50Us)),
      fmtUs(pick((s) => s.p99Us)),
      fmtUs(pick((s) => s.p999Us)),
      fmtRatio(p99Ratio(ok, nginx)),
      notes.join('; ') || 'none',
    ]);
  }
  if (rows.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  out.push(
    mdTable(['proxy', 'achieved req/s', 'median p50', 'median p99', 'median p99.9', 'p99 ÷ nginx p99', 'notes'], rows, [
      'l',
      'r',
      'r',
      'r',
      'r',
      'r',
      'l',
    ]),
    '',
  );
  const mux = okRuns('muxgate');
  const muxRatio = p99Ratio(mux, nginx);
  if (muxRatio !== undefined) {
    const allSustained = mux.every(sustained);
    const met = muxRatio <= P99_GOAL && allSustained;
    out.push(
      `muxgate's p99 is ${fmtRatio(muxRatio)}× nginx's (goal ≤ ${P99_GOAL}×, at the target rate)` +
        `${allSustained ? '' : ', and it did not sustain the rate'}: **${met ? 'met' : 'not met'}**.`,
      '',
    );
  }
  out.push('<details>', `<summary>Raw per-round numbers (${FIXED_RATE_SCENARIO})</summary>`, '');
  out.push(
    mdTable(
      ['round', 'proxy', 'target req/s', 'achieved req/s', 'requests', 'p50', 'p99', 'p99.9', 'max', 'notes'],
      input.runs.map((r) => {
        const s = r.summary;
        const notes = !r.ok
          ? `FAILED: ${(r.failure ?? 'unknown').replaceAll('\n', ' ')}`
          : [
              sustained(r) ? '' : `⚠ did not sustain the rate${r.cutShort ? ' (h2load cut short)' : ''}`,
              s?.failed ? `⚠ ${s.failed} failed` : '',
            ]
              .filter(Boolean)
              .join('; ') || 'none';
        return [
          String(r.round),
          r.proxy,
          fmtRps(r.targetRps),
          fmtRps(s?.achievedRps),
          s ? String(s.requests) : '–',
          fmtUs(s?.p50Us),
          fmtUs(s?.p99Us),
          fmtUs(s?.p999Us),
          fmtUs(s?.maxUs),
          notes,
        ];
      }),
      ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    '</details>',
    '',
  );
  return out.join('\n');
}
