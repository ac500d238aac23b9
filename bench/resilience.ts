// The `resilience` figure: what retries, health checks and circuit breakers cost when nothing fails.
// muxgate with a route `retry:` (attempts 3 on connect-failure, refused-stream, reset, gateway-error,
// per_try_timeout), an HTTP health check every second and circuit breakers, against the same muxgate
// without them, both pinned to the proxy core, get-12b load, interleaved rounds. Goal (issue 16): the
// resilient one ≥ 0.97× the plain one (cost ≤ 3 %).

import { type FigureContext, measureGet12b, pairedRatio, pairedRatios, rotate, startChecked } from './figure.ts';
import { fmtMs, fmtRatio, fmtRps, fmtCpuUs, mdTable, median } from './report.ts';
import { GET_12B } from './scenarios.ts';
import { checkEndpoint, LOAD_CPU, PROXY_CPU, proxySpec, type RunningServer, stopServer } from './servers.ts';
import type { WrkResult } from './wrk.ts';

export const RESILIENCE_SCENARIO = 'resilience';

export interface ResilienceVariant {
  id: string;
  resilience: boolean;
  port: number;
}

export const RESILIENCE_VARIANTS: readonly ResilienceVariant[] = [
  { id: 'muxgate-resilient', resilience: true, port: 18181 },
  { id: 'muxgate-plain', resilience: false, port: 18182 },
];

export interface ResilienceRun {
  round: number;
  variant: string;
  ok: boolean;
  failure?: string;
  wrk?: WrkResult;
  /** The proxy's CPU time (user + kernel) per request over the measured run. */
  cpuUsPerReq?: number | undefined;
}

export interface ResilienceState {
  runs: ResilienceRun[];
}

async function measure(
  round: number,
  v: ResilienceVariant,
  server: RunningServer,
  ctx: FigureContext,
): Promise<ResilienceRun> {
  return { round, variant: v.id, ...(await measureGet12b(v.id, v.port, server, ctx)) };
}

export async function runResilienceFigure(ctx: FigureContext, state: ResilienceState): Promise<void> {
  if (!ctx.proxies.includes('muxgate')) {
    console.error(`✗ ${RESILIENCE_SCENARIO}: measures muxgate, which is not among the proxies`);
    return;
  }
  console.log(
    `\n[${RESILIENCE_SCENARIO}] muxgate on core ${PROXY_CPU} with and without retries, health checks and breakers; wrk ${GET_12B.wrkArgs.join(' ')} on core ${LOAD_CPU}`,
  );
  const running = new Map<string, RunningServer>();
  try {
    for (const v of RESILIENCE_VARIANTS) {
      if (ctx.stopped()) return;
      const spec = proxySpec('muxgate', ctx.runDir, {
        tag: v.resilience ? 'resilient' : 'plain',
        port: v.port,
        cpu: PROXY_CPU,
        resilience: v.resilience,
      });
      const server = await startChecked(ctx, RESILIENCE_SCENARIO, v.id, spec, (port) =>
        checkEndpoint(port, GET_12B.path, GET_12B.check),
      );
      if (server) running.set(v.id, server);
    }
    const ready = RESILIENCE_VARIANTS.filter((v) => running.has(v.id));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const v of rotate(ready, round - 1)) {
        if (ctx.stopped()) break;
        const r = await measure(round, v, running.get(v.id)!, ctx);
        if (ctx.stopped()) break;
        state.runs.push(r);
        const head = `${String(r.round).padEnd(6)}${r.variant.padEnd(20)}`;
        console.log(
          r.ok && r.wrk
            ? `${head}${fmtRps(r.wrk.rps).padStart(10)} req/s  p50 ${fmtMs(r.wrk.p50Ms)}  p99 ${fmtMs(r.wrk.p99Ms)}${r.cpuUsPerReq === undefined ? '' : `  CPU ${fmtCpuUs(r.cpuUsPerReq)}/request`}${r.wrk.errorCount ? `  ⚠ ${r.wrk.errorCount} errors` : ''}`
            : `${head}FAILED: ${r.failure ?? 'unknown'}`,
        );
        ctx.recorded();
      }
    }
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

export function resilienceMethod(durationS: number, warmupS: number): string {
  return (
    `get-12b load (\`wrk ${GET_12B.wrkArgs.join(' ')} -d${durationS}s\` after a ${warmupS} s warm-up, pinned to the load core with the backend) ` +
    'against two muxgate instances pinned to the proxy core: one with a route `retry: { attempts: 3, on: [connect-failure, refused-stream, reset, gateway-error], per_try_timeout: 5s }`, ' +
    'a cluster `health_check: { path: /, interval: 1s }` and `circuit_breakers` (limits the load never reaches), one without; nothing fails; interleaved rounds.'
  );
}

export function renderResilience(runs: readonly ResilienceRun[]): string {
  const out: string[] = [`### ${RESILIENCE_SCENARIO}`, ''];
  out.push(
    'What retries, health checks and circuit breakers cost when nothing fails, GET / (12-byte body). Goal: resilient ÷ plain ≥ 0.97.',
    '',
  );
  const rows: string[][] = [];
  for (const v of RESILIENCE_VARIANTS) {
    const all = runs.filter((r) => r.variant === v.id);
    if (all.length === 0) continue;
    const ok = all.filter((r) => r.ok && r.wrk);
    const rps = ok.map((r) => r.wrk!.rps);
    const errors = ok.reduce((n, r) => n + (r.wrk?.errorCount ?? 0), 0);
    const notes: string[] = [];
    if (errors) notes.push(`⚠ ${errors} errors`);
    if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
    rows.push([
      v.id,
      fmtRps(median(rps)),
      rps.length ? `${fmtRps(Math.min(...rps))} – ${fmtRps(Math.max(...rps))}` : '–',
      fmtMs(median(ok.map((r) => r.wrk!.p99Ms))),
      fmtCpuUs(median(ok.flatMap((r) => (r.cpuUsPerReq === undefined ? [] : [r.cpuUsPerReq])))),
      v.resilience ? fmtRatio(pairedRatio(runs, v.id, 'muxgate-plain')) : '1.00',
      notes.join('; ') || 'none',
    ]);
  }
  if (rows.length === 0) return [...out, 'No results.', ''].join('\n');
  out.push(
    mdTable(
      ['variant', 'median req/s', 'min – max req/s', 'median p99', 'proxy CPU / request', '÷ plain', 'notes'],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const ratio = pairedRatio(runs, 'muxgate-resilient', 'muxgate-plain');
  const perRound = pairedRatios(runs, 'muxgate-resilient', 'muxgate-plain').map((r) => r.toFixed(3));
  out.push(
    `resilient ÷ plain: ${ratio === undefined ? '–' : ratio.toFixed(3)} (goal 0.97: ${ratio === undefined ? 'not measured' : ratio >= 0.97 ? 'met' : 'not met'}); ` +
      `per round: ${perRound.join(', ')}. Median of per-round ratios.`,
    '',
  );
  // req/s moves with the load core's neighbours; the CPU each request costs the proxy says what the features cost
  const cpu = pairedRatio(runs, 'muxgate-resilient', 'muxgate-plain', 'cpu');
  if (cpu !== undefined) {
    const cpuRounds = pairedRatios(runs, 'muxgate-resilient', 'muxgate-plain', 'cpu').map((r) => r.toFixed(3));
    out.push(
      `CPU time per request (user + kernel from \`/proc/<pid>/stat\`, lower is better), resilient ÷ plain: ${cpu.toFixed(3)}; per round: ${cpuRounds.join(', ')}.`,
      '',
    );
  }
  for (const f of runs.filter((r) => !r.ok))
    out.push(`- round ${f.round}, ${f.variant}: FAILED: ${(f.failure ?? 'unknown').replaceAll('\n', ' ')}`);
  return out.join('\n');
}
