// The `access-log` figure: what an access log costs. muxgate with its default access log (format,
// batching) to a file and without one, nginx with `access_log <file> combined buffer=64k` and without
// one, each pinned to the proxy core, get-12b load, interleaved rounds. Goals (issue 15): muxgate log
// on ÷ log off ≥ 0.9, and muxgate with its log ≥ 0.8× nginx with its log.

import { createReadStream, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { type FigureContext, measureGet12b, pairedRatio, pairedRatios, rotate, startChecked } from './figure.ts';
import { fmtCpuUs, fmtMs, fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { GET_12B } from './scenarios.ts';
import {
  checkEndpoint,
  LOAD_CPU,
  PROXY_CPU,
  type ProxyName,
  proxySpec,
  type RunningServer,
  stopServer,
} from './servers.ts';
import type { WrkResult } from './wrk.ts';

export const ACCESS_LOG_SCENARIO = 'access-log';

export interface AccessLogVariant {
  id: string;
  proxy: Extract<ProxyName, 'muxgate' | 'nginx'>;
  log: boolean;
  port: number;
}

export const ACCESS_LOG_VARIANTS: readonly AccessLogVariant[] = [
  { id: 'muxgate-log', proxy: 'muxgate', log: true, port: 18171 },
  { id: 'muxgate-nolog', proxy: 'muxgate', log: false, port: 18172 },
  { id: 'nginx-log', proxy: 'nginx', log: true, port: 18173 },
  { id: 'nginx-nolog', proxy: 'nginx', log: false, port: 18174 },
];

export function accessLogVariants(proxies: readonly ProxyName[]): AccessLogVariant[] {
  return ACCESS_LOG_VARIANTS.filter((v) => proxies.includes(v.proxy));
}

export interface AccessLogRun {
  round: number;
  variant: string;
  ok: boolean;
  failure?: string;
  wrk?: WrkResult;
  /** The proxy's CPU time (user + kernel, its workers included) per request over the measured run, µs. */
  cpuUsPerReq?: number | undefined;
  /** Lines found in the log file after the run (warm-up included), ÷ the measured requests. */
  linesPerRequest?: number;
}

function logFile(ctx: FigureContext, v: AccessLogVariant): string {
  return join(ctx.runDir, `access-${v.id}.log`);
}

/** Newlines in a file, read in large chunks. */
async function countLines(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  }
  return n;
}

async function measure(
  round: number,
  v: AccessLogVariant,
  server: RunningServer,
  ctx: FigureContext,
): Promise<AccessLogRun> {
  const base = { round, variant: v.id };
  try {
    if (v.log) truncateSync(logFile(ctx, v));
    const r = await measureGet12b(v.id, v.port, server, ctx);
    if (!r.ok || !v.log) return { ...base, ...r };
    // muxgate writes a partial batch after flush_interval (1 s); nginx when its 64 KiB buffer fills.
    await new Promise((done) => setTimeout(done, 1500));
    const lines = await countLines(logFile(ctx, v));
    // The files would grow by ~100 MB a run: only the count is kept.
    truncateSync(logFile(ctx, v));
    return { ...base, ok: true, wrk: r.wrk, cpuUsPerReq: r.cpuUsPerReq, linesPerRequest: lines / r.wrk.requests };
  } catch (err) {
    return { ...base, ok: false, failure: (err as Error).message.slice(0, 500) };
  }
}

export interface AccessLogState {
  runs: AccessLogRun[];
}

export async function runAccessLogFigure(ctx: FigureContext, state: AccessLogState): Promise<void> {
  const variants = accessLogVariants(ctx.proxies);
  if (!variants.some((v) => v.proxy === 'muxgate')) {
    console.error(`✗ ${ACCESS_LOG_SCENARIO}: measures muxgate, which is not among the proxies`);
    return;
  }
  console.log(
    `\n[${ACCESS_LOG_SCENARIO}] proxies on core ${PROXY_CPU}, with and without an access log to a file; wrk ${GET_12B.wrkArgs.join(' ')} on core ${LOAD_CPU}`,
  );
  const running = new Map<string, RunningServer>();
  try {
    for (const v of variants) {
      if (ctx.stopped()) return;
      const spec = proxySpec(v.proxy, ctx.runDir, {
        tag: v.log ? 'log' : 'nolog',
        port: v.port,
        cpu: PROXY_CPU,
        accessLog: v.log ? logFile(ctx, v) : undefined,
      });
      const server = await startChecked(ctx, ACCESS_LOG_SCENARIO, v.id, spec, (port) =>
        checkEndpoint(port, GET_12B.path, GET_12B.check),
      );
      if (server) running.set(v.id, server);
    }
    const ready = variants.filter((v) => running.has(v.id));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const v of rotate(ready, round - 1)) {
        if (ctx.stopped()) break;
        const r = await measure(round, v, running.get(v.id)!, ctx);
        if (ctx.stopped()) break;
        state.runs.push(r);
        console.log(accessLogConsoleLine(r));
        ctx.recorded();
      }
    }
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

function accessLogConsoleLine(r: AccessLogRun): string {
  const head = `${String(r.round).padEnd(6)}${r.variant.padEnd(15)}`;
  if (!r.ok || !r.wrk) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const err = r.wrk.errorCount ? `  ⚠ ${r.wrk.errorCount} errors` : '';
  const lines = r.linesPerRequest === undefined ? '' : `  log lines/request ${r.linesPerRequest.toFixed(2)}`;
  const cpu = r.cpuUsPerReq === undefined ? '' : `  CPU ${fmtCpuUs(r.cpuUsPerReq)}/request`;
  return `${head}${fmtRps(r.wrk.rps).padStart(10)} req/s  p50 ${fmtMs(r.wrk.p50Ms)}  p99 ${fmtMs(r.wrk.p99Ms)}${cpu}${lines}${err}`;
}

export function accessLogMethod(durationS: number, warmupS: number): string {
  return (
    `get-12b load (\`wrk ${GET_12B.wrkArgs.join(' ')} -d${durationS}s\` after a ${warmupS} s warm-up, pinned to the load core with the backend), ` +
    'each proxy pinned to the proxy core, with and without an access log to a file in the run directory: ' +
    'muxgate `access_log: { path: <file> }` (its default format and batching: 64 KiB, 1 s), ' +
    'nginx `access_log <file> combined buffer=64k`; interleaved rounds; the log lines in the file are counted after each run ' +
    '(about 1 per request, warm-up included) and the file truncated; ' +
    "each proxy's CPU time (utime + stime of the process and its workers, `/proc/<pid>/stat`) over the measured run ÷ requests."
  );
}

export function renderAccessLog(runs: readonly AccessLogRun[], proxies: readonly ProxyName[]): string {
  const out: string[] = [`### ${ACCESS_LOG_SCENARIO}`, ''];
  out.push(
    'What an access log to a file costs, GET / (12-byte body). ' +
      'Goals: muxgate log on ÷ log off ≥ 0.9; muxgate with its log ≥ 0.8× nginx with its buffered log.',
    '',
  );
  const rows: string[][] = [];
  for (const v of accessLogVariants(proxies)) {
    const all = runs.filter((r) => r.variant === v.id);
    if (all.length === 0) continue;
    const ok = all.filter((r) => r.ok && r.wrk);
    const rps = ok.map((r) => r.wrk!.rps);
    const off = `${v.proxy}-nolog`;
    const nginxSame = `nginx-${v.log ? 'log' : 'nolog'}`;
    const notes: string[] = [];
    const errors = ok.reduce((n, r) => n + (r.wrk?.errorCount ?? 0), 0);
    if (errors) notes.push(`⚠ ${errors} errors`);
    if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
    rows.push([
      v.id,
      fmtRps(median(rps)),
      rps.length ? `${fmtRps(Math.min(...rps))} – ${fmtRps(Math.max(...rps))}` : '–',
      fmtMs(median(ok.map((r) => r.wrk!.p99Ms))),
      fmtCpuUs(median(ok.flatMap((r) => (r.cpuUsPerReq === undefined ? [] : [r.cpuUsPerReq])))),
      v.log ? fmtRatio(median(ok.map((r) => r.linesPerRequest ?? 0))) : '–',
      v.log ? fmtRatio(pairedRatio(runs, v.id, off)) : '1.00',
      v.proxy === 'nginx' ? '1.00' : fmtRatio(pairedRatio(runs, v.id, nginxSame)),
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
        'median req/s',
        'min – max req/s',
        'median p99',
        'proxy CPU / request',
        'log lines / request',
        '÷ same proxy, log off',
        '÷ nginx, same log setting',
        'notes',
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const onOff = pairedRatio(runs, 'muxgate-log', 'muxgate-nolog');
  const vsNginx = pairedRatio(runs, 'muxgate-log', 'nginx-log');
  const verdict = (v: number | undefined, goal: number) =>
    v === undefined ? 'not measured' : v >= goal ? 'met' : 'not met';
  const exact = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(3));
  out.push(
    `muxgate log on ÷ off: ${exact(onOff)} (goal 0.9: ${verdict(onOff, 0.9)}); ` +
      `muxgate with log ÷ nginx with log: ${exact(vsNginx)} (goal 0.8: ${verdict(vsNginx, 0.8)}). ` +
      'Median of per-round ratios.',
    '',
  );
  // The same comparison in the proxy's CPU time per request (lower is better), which the load core's
  // neighbours move far less than req/s: what the log costs per request, and what each proxy spends.
  const cpuOnOff = pairedRatio(runs, 'muxgate-log', 'muxgate-nolog', 'cpu');
  const cpuVsNginx = pairedRatio(runs, 'muxgate-log', 'nginx-log', 'cpu');
  const nginxOnOff = pairedRatio(runs, 'nginx-log', 'nginx-nolog', 'cpu');
  if (cpuOnOff !== undefined) {
    out.push(
      `CPU time per request (user + kernel from \`/proc/<pid>/stat\`, lower is better): muxgate log on ÷ off ${exact(cpuOnOff)} ` +
        `(the log's share of a request: ${((1 - 1 / cpuOnOff) * 100).toFixed(1)} %; nginx's ${exact(nginxOnOff)}); ` +
        `muxgate with its log ÷ nginx with its log ${exact(cpuVsNginx)}. Per round: on ÷ off ` +
        `${pairedRatios(runs, 'muxgate-log', 'muxgate-nolog', 'cpu').map(exact).join(', ')}.`,
      '',
    );
  }
  const failures = runs.filter((r) => !r.ok);
  for (const f of failures)
    out.push(`- round ${f.round}, ${f.variant}: FAILED: ${(f.failure ?? 'unknown').replaceAll('\n', ' ')}`);
  if (failures.length) out.push('');
  return out.join('\n');
}
