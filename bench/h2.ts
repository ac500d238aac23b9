// The two HTTP/2 figures (issue "HTTP/2 on both sides and TLS"):
//
// - `h2-ingress`: h2load over h2c (HTTP/2 in cleartext, prior knowledge) -> muxgate
//   (`protocol: http2` listener), nginx (`listen … http2`) and HAProxy (`bind … proto h2`), each
//   proxying over HTTP/1.1 to the usual nginx backend. All three speak h2c with prior knowledge
//   (checked with nginx 1.22.1 and HAProxy 2.6.12), so no TLS is involved.
// - `h2-upstream`: wrk (HTTP/1.1, like get-12b) -> muxgate -> the nginx backend, once with the
//   cluster on `protocol: http1` (the keep-alive pool) and once on `protocol: http2` to the same
//   nginx server block on its h2c port (servers.ts BACKEND_H2C_PORT): only the upstream protocol
//   differs. Also counts the upstream TCP connections each one holds at the end of a run.
//
// Same discipline as the wrk scenarios: proxies pinned to the proxy core, load generator and
// backend on the load core, interleaved rounds (order rotating), medians, ratios within a round.

import { rmSync } from 'node:fs';
import http2 from 'node:http2';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type FigureContext, rotate, startChecked } from './figure.ts';
import { h2loadLoadArgv, parseH2loadLogFile, parseH2loadSummary, percentile, runH2loadArgv } from './h2load.ts';
import { cpuTicks, readRssKiB, ticksPerSecond } from './procs.ts';
import { fmtCpuUs, fmtMiB, fmtMs, fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { GET_12B, type ScenarioCheck } from './scenarios.ts';
import {
  BACKEND_H2C_PORT,
  BACKEND_PORT,
  H2_MAX_STREAMS,
  LOAD_CPU,
  PROXY_CPU,
  type ProxyName,
  proxySpec,
  type RunningServer,
  checkEndpoint,
  serverOutput,
  stopServer,
} from './servers.ts';
import { countByPid } from './worker-spread.ts';
import { runWrk, runWrkRaw, wrkArgv } from './wrk.ts';

export const H2_INGRESS_SCENARIO = 'h2-ingress';
export const H2_UPSTREAM_SCENARIO = 'h2-upstream';
/** `--scenario h2` stands for both */
export const H2_GROUP = 'h2';
/** seconds per measured run of these two figures (`--h2-duration`): short, to keep `npm run bench` near 15 minutes */
export const H2_DEFAULT_DURATION_S = 5;
/** rounds of these two figures (`--h2-rounds`): more than the others, their runs being short */
export const H2_DEFAULT_ROUNDS = 5;

// h2-ingress: 10 connections × 10 streams = 100 requests in flight (H2_MAX_STREAMS allows them all)
export const H2_INGRESS_CLIENTS = 10;
export const H2_INGRESS_STREAMS = 10;
export const H2_INGRESS_PROXIES = ['muxgate', 'nginx', 'haproxy'] as const satisfies readonly ProxyName[];
export type H2IngressProxy = (typeof H2_INGRESS_PROXIES)[number];
export const H2_INGRESS_PORTS: Record<H2IngressProxy, number> = { muxgate: 18141, nginx: 18142, haproxy: 18143 };
/**
 * nginx `upstream { keepalive N; }` in h2-ingress: room for one idle upstream connection per request in
 * flight (100), so that nginx does not close and reopen some at every dip (muxgate's pool holds 100,
 * HAProxy's has no cap).
 */
export const H2_NGINX_KEEPALIVE = 128;

// h2-upstream
export const H2_UPSTREAM_WRK_ARGS = GET_12B.wrkArgs;
export interface UpstreamVariant {
  id: string;
  proxy: 'muxgate' | 'haproxy';
  protocol: 'http1' | 'http2';
  port: number;
  backendPort: number;
}
/**
 * muxgate's HTTP/1.1 pool and its HTTP/2 upstream, and HAProxy with `server … proto h2` on the same h2c
 * backend port: muxgate's HTTP/2 client against a production one.
 */
export const H2_UPSTREAM_VARIANTS: readonly UpstreamVariant[] = [
  { id: 'muxgate-up-http1', proxy: 'muxgate', protocol: 'http1', port: 18161, backendPort: BACKEND_PORT },
  { id: 'muxgate-up-http2', proxy: 'muxgate', protocol: 'http2', port: 18162, backendPort: BACKEND_H2C_PORT },
  { id: 'haproxy-up-http2', proxy: 'haproxy', protocol: 'http2', port: 18163, backendPort: BACKEND_H2C_PORT },
];

/** The variants of this run: HAProxy's only when HAProxy is among the proxies. */
function upstreamVariants(proxies: readonly ProxyName[]): UpstreamVariant[] {
  return H2_UPSTREAM_VARIANTS.filter((v) => v.proxy === 'muxgate' || proxies.includes(v.proxy));
}

export function h2IngressProxies(proxies: readonly ProxyName[]): H2IngressProxy[] {
  return H2_INGRESS_PROXIES.filter((p) => proxies.includes(p));
}

/** Every port the h2 figures listen on (besides BACKEND_PORT). */
export function h2Ports(figures: readonly string[], proxies: readonly ProxyName[]): [number, string][] {
  const ports: [number, string][] = [];
  if (figures.includes(H2_INGRESS_SCENARIO)) {
    for (const p of h2IngressProxies(proxies)) ports.push([H2_INGRESS_PORTS[p], `${p} (${H2_INGRESS_SCENARIO})`]);
  }
  if (figures.includes(H2_UPSTREAM_SCENARIO) && proxies.includes('muxgate')) {
    ports.push([BACKEND_H2C_PORT, 'backend h2c']);
    for (const v of upstreamVariants(proxies)) ports.push([v.port, v.id]);
  }
  return ports;
}

// ---------------------------------------------------------------------------
// helpers

/** One GET over h2c with prior knowledge on a fresh connection; an error message, or undefined when it is as expected. */
export function checkH2Endpoint(port: number, path: string, check: ScenarioCheck): Promise<string | undefined> {
  return new Promise((resolve) => {
    const what = `h2c ${check.method} ${path}`;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    let done = false;
    const finish = (msg: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(msg);
    };
    const timer = setTimeout(() => finish(`${what}: timeout after 5 s`), 5000);
    session.on('error', (e) => finish(`${what}: ${e.message}`));
    const req = session.request({ ':method': check.method, ':path': path });
    let status = 0;
    let n = 0;
    req.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    req.on('data', (chunk: Buffer) => {
      n += chunk.length;
    });
    req.on('end', () => {
      if (status !== 200) finish(`${what}: status ${status}`);
      else if (n !== check.responseBytes) finish(`${what}: ${n} body bytes, expected ${check.responseBytes}`);
      else finish(undefined);
    });
    req.on('error', (e) => finish(`${what}: ${e.message}`));
    req.end();
  });
}

/** Established TCP connections from process `pid` to 127.0.0.1:`port` (`ss -Htnp state established '( dport = :PORT )'`). */
export function upstreamConnections(pid: number, port: number): number | undefined {
  const r = spawnSync('ss', ['-Htnp', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return countByPid(r.stdout).get(pid) ?? 0;
}

export interface H2Run {
  round: number;
  /** proxy (h2-ingress) or variant id (h2-upstream) */
  id: string;
  ok: boolean;
  failure?: string;
  rps?: number;
  requests?: number;
  p50Ms?: number | undefined;
  p99Ms?: number | undefined;
  /** failed requests (h2load) or socket errors + statuses >= 400 (wrk) */
  errorCount?: number;
  /** established connections from the proxy to its backend port halfway through the measured run */
  upstreamMid?: number | undefined;
  /** the same right after the run */
  upstreamAfter?: number | undefined;
  rssKiB?: number | undefined;
  /** the proxy's CPU time (user + kernel, every thread) per request over the measured run, in µs */
  cpuUsPerReq?: number | undefined;
}

/** Runs `run()` and calls `sample()` once, `delayMs` after the start (while `run()` is still going). */
async function sampleDuring<T, S>(
  run: () => Promise<T>,
  delayMs: number,
  sample: () => S,
): Promise<[T, S | undefined]> {
  let sampled: S | undefined;
  const timer = setTimeout(() => {
    sampled = sample();
  }, delayMs);
  try {
    return [await run(), sampled];
  } finally {
    clearTimeout(timer);
  }
}

export interface H2State {
  ingress: H2Run[];
  upstream: H2Run[];
}

function downMessage(id: string, server: RunningServer): string | undefined {
  const e = server.tracked.exit;
  return e ? `${id} is not running (exit ${e.signal ?? e.code}); ${serverOutput(server).slice(-500)}` : undefined;
}

export function h2ConsoleLine(r: H2Run): string {
  const head = `${String(r.round).padEnd(6)}${r.id.padEnd(18)}`;
  if (!r.ok) return `${head}FAILED: ${r.failure ?? 'unknown'}`;
  const err = r.errorCount ? `  ⚠ ${r.errorCount} errors` : '';
  return (
    `${head}${fmtRps(r.rps).padStart(10)} req/s  p50 ${fmtMs(r.p50Ms)}  p99 ${fmtMs(r.p99Ms)}  ` +
    `upstream conns ${r.upstreamMid ?? '–'} mid-run, ${r.upstreamAfter ?? '–'} after${err}`
  );
}

/** Median over rounds of (a rps ÷ b rps in the same round). */
function pairedRatio(
  runs: readonly H2Run[],
  a: string,
  b: string,
  field: 'rps' | 'cpuUsPerReq' = 'rps',
): number | undefined {
  const ratios: number[] = [];
  for (const r of runs) {
    const mine = r[field];
    if (r.id !== a || !r.ok || mine === undefined) continue;
    const theirs = runs.find((o) => o.id === b && o.round === r.round && o.ok)?.[field];
    if (theirs) ratios.push(mine / theirs);
  }
  return median(ratios);
}

const range = (values: readonly number[], fmt: (v: number) => string): string => {
  if (values.length === 0) return '–';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? fmt(lo) : `${fmt(lo)} – ${fmt(hi)}`;
};

const defined = (values: readonly (number | undefined)[]): number[] =>
  values.filter((v): v is number => v !== undefined);

/** "median (min – max)" of a connection count over runs, or just the value when it never changed */
function connsCell(values: readonly (number | undefined)[]): string {
  const v = defined(values);
  if (v.length === 0) return '–';
  const m = String(Math.round(median(v)!));
  return Math.min(...v) === Math.max(...v) ? m : `${m} (${range(v, String)})`;
}

function notes(all: readonly H2Run[]): string {
  const ok = all.filter((r) => r.ok);
  const errors = ok.reduce((n, r) => n + (r.errorCount ?? 0), 0);
  const out: string[] = [];
  if (errors) out.push(`⚠ ${errors} errors in ${ok.filter((r) => r.errorCount).length}/${all.length} runs`);
  if (all.length > ok.length) out.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
  return out.join('; ') || 'none';
}

function rawTable(runs: readonly H2Run[], title: string): string[] {
  if (runs.length === 0) return [];
  return [
    '<details>',
    `<summary>Raw per-round numbers (${title})</summary>`,
    '',
    mdTable(
      ['round', 'server', 'req/s', 'requests', 'p50', 'p99', 'upstream conns mid-run', 'after', 'RSS', 'errors'],
      runs.map((r) => [
        String(r.round),
        r.id,
        fmtRps(r.rps),
        r.requests === undefined ? '–' : String(r.requests),
        fmtMs(r.p50Ms),
        fmtMs(r.p99Ms),
        r.upstreamMid === undefined ? '–' : String(r.upstreamMid),
        r.upstreamAfter === undefined ? '–' : String(r.upstreamAfter),
        fmtMiB(r.rssKiB),
        r.ok ? String(r.errorCount ?? 0) : `FAILED: ${(r.failure ?? 'unknown').replaceAll('\n', ' ')}`,
      ]),
      ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    '</details>',
    '',
  ];
}

// ---------------------------------------------------------------------------
// h2-ingress

export function h2IngressCommand(durationS: number, warmupS: number): string {
  const argv = h2loadLoadArgv({
    url: 'http://127.0.0.1:<port>/',
    clients: H2_INGRESS_CLIENTS,
    streams: H2_INGRESS_STREAMS,
    durationS,
    warmupS,
    logFile: '<file>',
  });
  return `taskset -c ${LOAD_CPU} h2load ${argv.join(' ')}`;
}

export function h2IngressMethod(durationS: number, warmupS: number, rounds: number): string {
  return (
    `HTTP/2 in cleartext with prior knowledge (h2c) from the client, HTTP/1.1 to the backend: \`${h2IngressCommand(durationS, warmupS)}\` ` +
    `(${H2_INGRESS_CLIENTS} connections × ${H2_INGRESS_STREAMS} streams = ${H2_INGRESS_CLIENTS * H2_INGRESS_STREAMS} requests in flight, ` +
    `req/s and p50/p99 over the ${durationS} s after the ${warmupS} s warm-up) against muxgate \`protocol: http2\`, ` +
    'nginx `listen … http2` (no ssl) and HAProxy `bind … proto h2`, each pinned to the proxy core; its own proxies and ports, ' +
    `${rounds} interleaved rounds.`
  );
}

/** Interleaved rounds over what started (the order rotates each round); every run is kept and printed. */
async function interleave<T>(
  ctx: FigureContext,
  ready: readonly T[],
  runs: H2Run[],
  measure: (round: number, item: T) => Promise<H2Run>,
): Promise<void> {
  for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
    for (const item of rotate(ready, round - 1)) {
      if (ctx.stopped()) return;
      const r = await measure(round, item);
      if (ctx.stopped()) return;
      runs.push(r);
      console.log(h2ConsoleLine(r));
      ctx.recorded();
    }
  }
}

async function measureIngress(
  round: number,
  proxy: H2IngressProxy,
  server: RunningServer,
  ctx: FigureContext,
): Promise<H2Run> {
  const base = { round, id: proxy };
  const logFile = join(ctx.runDir, `h2load-${H2_INGRESS_SCENARIO}-${proxy}-round${round}.log`);
  const argv = h2loadLoadArgv({
    url: `http://127.0.0.1:${server.spec.port}/`,
    clients: H2_INGRESS_CLIENTS,
    streams: H2_INGRESS_STREAMS,
    durationS: ctx.durationS,
    warmupS: ctx.warmupS,
    logFile,
  });
  try {
    const gone = downMessage(proxy, server);
    if (gone) return { ...base, ok: false, failure: gone };
    const [raw, upstreamMid] = await sampleDuring(
      () => runH2loadArgv(argv, LOAD_CPU, ((ctx.durationS + ctx.warmupS) * 2 + 10) * 1000),
      (ctx.warmupS + ctx.durationS / 2) * 1000,
      () => upstreamConnections(server.tracked.pid, BACKEND_PORT),
    );
    const down = downMessage(proxy, server);
    if (down) return { ...base, ok: false, failure: down };
    if (raw.killed || raw.code !== 0) {
      const how = raw.killed ? 'overran its time limit' : `exited with ${raw.code ?? raw.signal}`;
      return { ...base, ok: false, failure: `h2load ${how}: ${(raw.stderr || raw.stdout).trim().slice(-500)}` };
    }
    const summary = parseH2loadSummary(raw.stdout);
    if (summary.succeeded === 0) {
      return { ...base, ok: false, failure: `${proxy} answered no request in ${ctx.durationS} s (stalled)` };
    }
    const latenciesUs = parseH2loadLogFile(logFile)
      .filter((r) => r.status >= 0 && r.status < 400)
      .map((r) => r.latencyUs)
      .sort((a, b) => a - b);
    const ms = (us: number | undefined): number | undefined => (us === undefined ? undefined : us / 1000);
    return {
      ...base,
      ok: true,
      rps: summary.rps,
      requests: summary.total,
      p50Ms: ms(percentile(latenciesUs, 50)),
      p99Ms: ms(percentile(latenciesUs, 99)),
      errorCount: summary.errorCount,
      upstreamMid,
      upstreamAfter: upstreamConnections(server.tracked.pid, BACKEND_PORT),
      rssKiB: readRssKiB(server.tracked.pid),
    };
  } catch (err) {
    return { ...base, ok: false, failure: downMessage(proxy, server) ?? (err as Error).message.slice(0, 500) };
  } finally {
    rmSync(logFile, { force: true });
  }
}

/** The figure: its own h2c proxies (pinned), interleaved h2load rounds. `ctx.durationS` is the h2 duration. */
export async function runH2IngressFigure(ctx: FigureContext, runs: H2Run[]): Promise<void> {
  const proxies = h2IngressProxies(ctx.proxies);
  if (proxies.length === 0) {
    console.error(`✗ ${H2_INGRESS_SCENARIO}: needs muxgate, nginx or HAProxy among the proxies`);
    return;
  }
  console.log(
    `\n[${H2_INGRESS_SCENARIO}] h2c; proxies on core ${PROXY_CPU}; ${h2IngressCommand(ctx.durationS, ctx.warmupS)}`,
  );
  const running = new Map<H2IngressProxy, RunningServer>();
  try {
    for (const proxy of proxies) {
      if (ctx.stopped()) return;
      const spec = proxySpec(proxy, ctx.runDir, {
        tag: 'h2',
        port: H2_INGRESS_PORTS[proxy],
        cpu: PROXY_CPU,
        h2cListener: true,
        upstreamKeepalive: proxy === 'nginx' ? H2_NGINX_KEEPALIVE : undefined,
      });
      const server = await startChecked(ctx, H2_INGRESS_SCENARIO, proxy, spec, (port) =>
        checkH2Endpoint(port, GET_12B.path, GET_12B.check),
      );
      if (server) running.set(proxy, server);
    }
    const ready = proxies.filter((p) => running.has(p));
    await interleave(ctx, ready, runs, (round, proxy) => measureIngress(round, proxy, running.get(proxy)!, ctx));
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

export function renderH2Ingress(
  runs: readonly H2Run[],
  proxies: readonly ProxyName[],
  durationS: number,
  warmupS: number,
): string {
  const out: string[] = [`### ${H2_INGRESS_SCENARIO}`, ''];
  out.push(
    `HTTP/2 clients (h2c, prior knowledge) → proxy → HTTP/1.1 backend, GET / (12-byte body), ` +
      `${H2_INGRESS_CLIENTS} connections × ${H2_INGRESS_STREAMS} concurrent streams. ` +
      `Command: \`${h2IngressCommand(durationS, warmupS)}\`.`,
    '',
    `- muxgate: listener \`protocol: http2\`, \`http2: { max_concurrent_streams: ${H2_MAX_STREAMS} }\`, otherwise as in get-12b (pool of 100 HTTP/1.1 connections).`,
    `- nginx: \`listen 127.0.0.1:<port> http2;\` without ssl (h2c with prior knowledge; nginx 1.22 syntax), \`http2_max_concurrent_streams ${H2_MAX_STREAMS}\`, ` +
      `\`upstream { keepalive ${H2_NGINX_KEEPALIVE}; }\` (room for one idle upstream connection per request in flight), otherwise as in get-12b.`,
    `- HAProxy: \`bind 127.0.0.1:<port> proto h2\`, \`tune.h2.max-concurrent-streams ${H2_MAX_STREAMS}\`, otherwise as in get-12b.`,
    `- "upstream conns": established connections from the proxy to the backend (\`ss -Htnp state established '( dport = :${BACKEND_PORT} )'\`, ` +
      'counted by pid) halfway through each measured run and right after it; median (min – max) over the rounds. ' +
      'After the run, nginx has closed the upstream connections of the requests that were in flight when h2load disconnected, so its count then varies.',
    '',
  );
  const shown = H2_INGRESS_PROXIES.filter((p) => proxies.includes(p) && runs.some((r) => r.id === p));
  if (shown.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  const rows = shown.map((p) => {
    const all = runs.filter((r) => r.id === p);
    const ok = all.filter((r) => r.ok && r.rps !== undefined);
    const rps = ok.map((r) => r.rps!);
    const rss = defined(ok.map((r) => r.rssKiB));
    return [
      p,
      fmtRps(median(rps)),
      range(rps, fmtRps),
      fmtMs(median(defined(ok.map((r) => r.p50Ms)))),
      fmtMs(median(defined(ok.map((r) => r.p99Ms)))),
      connsCell(ok.map((r) => r.upstreamMid)),
      connsCell(ok.map((r) => r.upstreamAfter)),
      fmtMiB(rss.length ? Math.max(...rss) : undefined),
      fmtRatio(pairedRatio(runs, p, 'nginx')),
      fmtRatio(pairedRatio(runs, p, 'haproxy')),
      notes(all),
    ];
  });
  out.push(
    mdTable(
      [
        'proxy',
        'median req/s',
        'min – max req/s',
        'median p50',
        'median p99',
        'upstream conns mid-run',
        'after',
        'RSS',
        '÷ nginx',
        '÷ HAProxy',
        'errors',
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const toNginx = pairedRatio(runs, 'muxgate', 'nginx');
  const toHaproxy = pairedRatio(runs, 'muxgate', 'haproxy');
  if (toNginx !== undefined || toHaproxy !== undefined) {
    out.push(
      `muxgate over HTTP/2 (median of per-round ratios): **${fmtRatio(toNginx)}× nginx**, **${fmtRatio(toHaproxy)}× HAProxy**.`,
      '',
    );
  }
  out.push(...rawTable(runs, H2_INGRESS_SCENARIO));
  return out.join('\n');
}

// ---------------------------------------------------------------------------
// h2-upstream

export function h2UpstreamCommand(durationS: number): string {
  return `taskset -c ${LOAD_CPU} wrk ${wrkArgv({ url: 'http://127.0.0.1:<port>/', args: H2_UPSTREAM_WRK_ARGS, durationS, cpu: LOAD_CPU }).join(' ')}`;
}

export function h2UpstreamMethod(durationS: number, warmupS: number, rounds: number): string {
  return (
    `HTTP/1.1 clients, muxgate's upstream over HTTP/1.1 (pooled keep-alive) vs HTTP/2 (h2c, prior knowledge) to the same nginx backend ` +
    `(one server block listening on ${BACKEND_PORT} for HTTP/1.1 and on ${BACKEND_H2C_PORT} for h2c): \`${h2UpstreamCommand(durationS)}\` ` +
    `after a ${warmupS} s warm-up run, against two muxgate instances pinned to the proxy core (cluster \`protocol: http1\` / \`protocol: http2\`) ` +
    `and HAProxy with \`server … proto h2\` to the same h2c port, ` +
    `${rounds} interleaved rounds; upstream TCP connections counted with \`ss\` halfway through each run and after it; ` +
    "the proxy's CPU time per request (utime + stime from `/proc/<pid>/stat` before and after the measured run, ÷ requests)."
  );
}

async function measureUpstream(
  round: number,
  v: UpstreamVariant,
  server: RunningServer,
  ctx: FigureContext,
): Promise<H2Run> {
  const base = { round, id: v.id };
  const opts = { url: `http://127.0.0.1:${v.port}/`, args: H2_UPSTREAM_WRK_ARGS, cpu: LOAD_CPU };
  try {
    const gone = downMessage(v.id, server);
    if (gone) return { ...base, ok: false, failure: gone };
    await runWrkRaw({ ...opts, durationS: ctx.warmupS });
    // CPU per request as well as req/s: on this machine a round's req/s moves ±20 % with the load
    // core's neighbours, the proxy's own CPU time per request much less.
    const ticksBefore = cpuTicks(server.tracked.pid);
    const [wrk, upstreamMid] = await sampleDuring(
      () => runWrk({ ...opts, durationS: ctx.durationS }),
      (ctx.durationS / 2) * 1000,
      () => upstreamConnections(server.tracked.pid, v.backendPort),
    );
    const ticksAfter = cpuTicks(server.tracked.pid);
    const down = downMessage(v.id, server);
    if (down) return { ...base, ok: false, failure: down };
    if (wrk.requests === 0) {
      return { ...base, ok: false, failure: `${v.id} answered no request in ${ctx.durationS} s (stalled)` };
    }
    return {
      ...base,
      ok: true,
      rps: wrk.rps,
      requests: wrk.requests,
      p50Ms: wrk.p50Ms,
      p99Ms: wrk.p99Ms,
      errorCount: wrk.errorCount,
      upstreamMid,
      upstreamAfter: upstreamConnections(server.tracked.pid, v.backendPort),
      rssKiB: readRssKiB(server.tracked.pid),
      cpuUsPerReq:
        ticksBefore === undefined || ticksAfter === undefined
          ? undefined
          : ((ticksAfter - ticksBefore) / ticksPerSecond() / wrk.requests) * 1e6,
    };
  } catch (err) {
    return { ...base, ok: false, failure: downMessage(v.id, server) ?? (err as Error).message.slice(0, 500) };
  }
}

/**
 * The figure: two muxgate instances (pinned) differing only in the cluster protocol, interleaved wrk
 * rounds. The backend must already listen on BACKEND_H2C_PORT too (servers.ts backendSpec).
 * `ctx.durationS` is the h2 duration.
 */
export async function runH2UpstreamFigure(ctx: FigureContext, runs: H2Run[]): Promise<void> {
  if (!ctx.proxies.includes('muxgate')) {
    console.error(`✗ ${H2_UPSTREAM_SCENARIO}: measures muxgate only, which is not among the proxies`);
    return;
  }
  console.log(
    `\n[${H2_UPSTREAM_SCENARIO}] muxgate on core ${PROXY_CPU}, cluster http1 -> :${BACKEND_PORT} vs http2 (h2c) -> :${BACKEND_H2C_PORT}; ${h2UpstreamCommand(ctx.durationS)}`,
  );
  const backendErr = await checkH2Endpoint(BACKEND_H2C_PORT, GET_12B.path, GET_12B.check);
  if (backendErr) {
    ctx.checkFailures.set(`${H2_UPSTREAM_SCENARIO}/backend-h2c`, backendErr);
    console.error(`✗ backend h2c port ${BACKEND_H2C_PORT}: ${backendErr}`);
    return;
  }
  const running = new Map<string, RunningServer>();
  try {
    const variants = upstreamVariants(ctx.proxies);
    for (const v of variants) {
      if (ctx.stopped()) return;
      const spec = proxySpec(v.proxy, ctx.runDir, {
        tag: `up-${v.protocol}`,
        port: v.port,
        cpu: PROXY_CPU,
        upstreamProtocol: v.protocol,
        backendPort: v.backendPort,
      });
      const server = await startChecked(ctx, H2_UPSTREAM_SCENARIO, v.id, spec, (port) =>
        checkEndpoint(port, GET_12B.path, GET_12B.check),
      );
      if (server) running.set(v.id, server);
    }
    const ready = variants.filter((v) => running.has(v.id));
    await interleave(ctx, ready, runs, (round, v) => measureUpstream(round, v, running.get(v.id)!, ctx));
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

export function renderH2Upstream(runs: readonly H2Run[], durationS: number, warmupS: number): string {
  const out: string[] = [`### ${H2_UPSTREAM_SCENARIO}`, ''];
  const [h1, h2, hap] = H2_UPSTREAM_VARIANTS as [UpstreamVariant, UpstreamVariant, UpstreamVariant];
  out.push(
    `HTTP/1.1 clients → muxgate → nginx backend, GET / (12-byte body), the upstream over HTTP/1.1 (pooled keep-alive, ` +
      `\`pool: { max_connections: 100 }\`) or over HTTP/2 (h2c, prior knowledge; \`http2.max_concurrent_streams\` default ${H2_MAX_STREAMS}); ` +
      `and HAProxy over HTTP/2 to the same h2c port (\`server s1 127.0.0.1:${BACKEND_H2C_PORT} proto h2\`, otherwise as in get-12b). ` +
      `Same nginx process and server block for both: \`listen ${BACKEND_PORT};\` and \`listen ${BACKEND_H2C_PORT} http2;\`. ` +
      `Command: \`${h2UpstreamCommand(durationS)}\`, after a ${warmupS} s warm-up run.`,
    '',
    `- "upstream conns": established TCP connections from that muxgate to its backend port ` +
      `(\`ss -Htnp state established '( dport = :PORT )'\`, counted by pid) halfway through each measured run and right after it; ` +
      'median (min – max) over the rounds.',
    '',
  );
  const shown = H2_UPSTREAM_VARIANTS.filter((v) => runs.some((r) => r.id === v.id));
  if (shown.length === 0) {
    out.push('No results.', '');
    return out.join('\n');
  }
  const rows = shown.map((v) => {
    const all = runs.filter((r) => r.id === v.id);
    const ok = all.filter((r) => r.ok && r.rps !== undefined);
    const rps = ok.map((r) => r.rps!);
    const rss = defined(ok.map((r) => r.rssKiB));
    return [
      v.id,
      `\`protocol: ${v.protocol}\` → :${v.backendPort}`,
      fmtRps(median(rps)),
      range(rps, fmtRps),
      fmtMs(median(defined(ok.map((r) => r.p50Ms)))),
      fmtMs(median(defined(ok.map((r) => r.p99Ms)))),
      connsCell(ok.map((r) => r.upstreamMid)),
      connsCell(ok.map((r) => r.upstreamAfter)),
      fmtMiB(rss.length ? Math.max(...rss) : undefined),
      fmtCpuUs(median(defined(ok.map((r) => r.cpuUsPerReq)))),
      v.id === h1.id ? '1.00' : v.proxy === 'muxgate' ? fmtRatio(pairedRatio(runs, v.id, h1.id)) : '–',
      v.id === hap.id ? '1.00' : v.id === h2.id ? fmtRatio(pairedRatio(runs, v.id, hap.id)) : '–',
      notes(all),
    ];
  });
  out.push(
    mdTable(
      [
        'variant',
        'upstream',
        'median req/s',
        'min – max req/s',
        'median p50',
        'median p99',
        'upstream conns mid-run',
        'after',
        'RSS',
        'proxy CPU / request',
        '÷ muxgate http1',
        '÷ HAProxy h2',
        'errors',
      ],
      rows,
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
  );
  const ratio = pairedRatio(runs, h2.id, h1.id);
  if (ratio !== undefined) {
    const conns = (id: string): string =>
      connsCell(runs.filter((r) => r.id === id && r.ok).map((r) => r.upstreamAfter));
    out.push(
      `Upstream HTTP/2 ÷ HTTP/1.1 (median of per-round ratios): **${fmtRatio(ratio)}×** req/s, ` +
        `with ${conns(h2.id)} upstream TCP connection(s) at the end of a run instead of ${conns(h1.id)}.`,
      '',
    );
  }
  const toHap = pairedRatio(runs, h2.id, hap.id);
  if (toHap !== undefined) {
    out.push(
      `muxgate's HTTP/2 upstream ÷ HAProxy \`server … proto h2\` on the same h2c backend (median of per-round ratios): ` +
        `**${fmtRatio(toHap)}×** req/s.`,
      '',
    );
  }
  const cpuToHap = pairedRatio(runs, h2.id, hap.id, 'cpuUsPerReq');
  const cpuToH1 = pairedRatio(runs, h2.id, h1.id, 'cpuUsPerReq');
  if (cpuToHap !== undefined || cpuToH1 !== undefined) {
    out.push(
      `Proxy CPU time (user + kernel, \`/proc/<pid>/stat\` over the measured run) per request, muxgate's HTTP/2 upstream ` +
        `÷ HAProxy \`proto h2\`: **${fmtRatio(cpuToHap)}×**; ÷ muxgate's HTTP/1.1 pool: **${fmtRatio(cpuToH1)}×** ` +
        '(lower is better; median of per-round ratios. When the proxy core is not the only limit, req/s hides ' +
        'what each request costs; this does not).',
      '',
    );
  }
  out.push(...rawTable(runs, H2_UPSTREAM_SCENARIO));
  return out.join('\n');
}
