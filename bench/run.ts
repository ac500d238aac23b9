// Benchmark harness: muxgate vs nginx vs HAProxy vs node-http-proxy, all in
// front of the same nginx backend. See `--help`, bench/scenarios.ts (the wrk
// scenarios), bench/servers.ts (how the servers are configured) and the other
// figures: bench/fixed-rate.ts (latency at a fixed rate), bench/idle-memory.ts
// (RSS per idle connection), bench/workers.ts (workers: 2 vs 1), bench/h2.ts
// (h2-ingress: HTTP/2 clients; h2-upstream: HTTP/2 to the backend) and bench/ws.ts
// (ws: WebSockets through muxgate vs HAProxy: round-trip latency, throughput,
// memory per idle WebSocket; its own WebSocket echo backend, bench/ws-backend.ts) and bench/ws-h2.ts
// (ws-h2-idle: muxgate's memory per idle WebSocket carried as an RFC 8441 stream upstream, arriving as
// an HTTP/1.1 Upgrade or as an RFC 8441 stream, and per idle HTTP/2 client connection; its own
// RFC 8441 backend, bench/ws-h2-backend.ts).
//
//   npm run bench -- [--scenario get-12b,get-64k,post-16k,latency-fixed-rate,idle-rss,workers,cache,h2-ingress,h2-upstream,ws,ws-h2-idle]
//                    [--rounds 3] [--duration 10] [--h2-duration 5] [--h2-rounds 5] [--ws-duration 4] [--only muxgate,nginx]
//                    [--idle-connections 9000] [--ws-idle-sockets 5000] [--ws-backend frames|ws]
//                    [--ws-h2-sockets 10000] [--h2-idle-connections 5000]
//                    [--out bench/RESULTS.md]
//   npm run bench -- --scenario h2       # only h2-ingress and h2-upstream
//   npm run bench -- --scenario ws --out /tmp/ws.md   # only the WebSocket figure, report elsewhere
//   npm run bench -- --scenario ws-h2-idle --rounds 1 --out /tmp/wsh2.md
//
// Order of a run: the wrk scenarios (interleaved rounds), then latency-fixed-rate
// against the same running proxies (its rate comes from nginx's get-12b result),
// then idle-rss (a fresh proxy per measurement), then workers (its own proxies,
// unpinned), then access-log (its own proxies, pinned), then resilience (two muxgates, pinned), then passthrough (muxgate and HAProxy, pinned, TLS to the backend), then cache (muxgate, Varnish, nginx proxy_cache, pinned), then h2-ingress and h2-upstream (their own proxies, pinned), then ws
// (its own backend and proxies, pinned; idle memory on a fresh proxy per measurement), then
// ws-h2-idle (its own backend; a fresh muxgate per measurement).

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ACCESS_LOG_SCENARIO,
  type AccessLogState,
  accessLogMethod,
  accessLogVariants,
  renderAccessLog,
  runAccessLogFigure,
} from './access-log.ts';
import {
  RESILIENCE_SCENARIO,
  RESILIENCE_VARIANTS,
  type ResilienceState,
  renderResilience,
  resilienceMethod,
  runResilienceFigure,
} from './resilience.ts';
import {
  BACKEND_TLS_PORT,
  backendCertificate,
  PASSTHROUGH_SCENARIO,
  type PassthroughState,
  passthroughMethod,
  renderPassthrough,
  runPassthroughFigure,
} from './passthrough.ts';
import { CACHE_SCENARIO, type CacheState, cacheMethod, cachePorts, renderCache, runCacheFigure } from './cache.ts';
import { type FigureContext, rotate } from './figure.ts';
import {
  H2_DEFAULT_DURATION_S,
  H2_DEFAULT_ROUNDS,
  H2_GROUP,
  H2_INGRESS_SCENARIO,
  H2_UPSTREAM_SCENARIO,
  type H2State,
  h2IngressMethod,
  h2Ports,
  h2UpstreamMethod,
  renderH2Ingress,
  renderH2Upstream,
  runH2IngressFigure,
  runH2UpstreamFigure,
} from './h2.ts';
import {
  FIXED_RATE_SCENARIO,
  type FixedRateState,
  fixedRateMethod,
  renderFixedRate,
  runFixedRateFigure,
} from './fixed-rate.ts';
import {
  IDLE_DEFAULT_CONNECTIONS,
  IDLE_ADMIN_PORT,
  IDLE_PORTS,
  IDLE_RSS_SCENARIO,
  type IdleRssRun,
  idleRssMethod,
  renderIdleRss,
  runIdleRssFigure,
} from './idle-memory.ts';
import { machineInfo } from './machine.ts';
import { killAllSync, readRssKiB, stopAll } from './procs.ts';
import { CONSOLE_HEADER, consoleLine, type Method, type ReportInput, type RunResult, renderResults } from './report.ts';
import { GET_12B, type Scenario, scenarios as allScenarios } from './scenarios.ts';
import {
  assertPortFree,
  BACKEND_H2C_PORT,
  BACKEND_PORT,
  backendSpec,
  checkEndpoint,
  LOAD_CPU,
  PROXY_CPU,
  PROXY_NAMES,
  PROXY_PORTS,
  type ProxyName,
  proxySpec,
  type RunningServer,
  StartError,
  serverOutput,
  startServer,
  stopServer,
} from './servers.ts';
import {
  renderWorkers,
  runWorkersFigure,
  WORKERS_SCENARIO,
  WORKERS_VARIANTS,
  type WorkersState,
  type WorkersVariant,
  workersMethod,
  workersPorts,
} from './workers.ts';
import { runWrk, runWrkRaw, wrkArgv } from './wrk.ts';
import {
  renderWs,
  runWsFigure,
  WS_DEFAULT_DURATION_S,
  WS_BACKENDS,
  WS_DEFAULT_BACKEND,
  WS_DEFAULT_IDLE_SOCKETS,
  WS_SCENARIO,
  type WsBackendImpl,
  type WsState,
  wsMethod,
  wsPorts,
} from './ws.ts';
import {
  renderWsH2,
  runWsH2Figure,
  WS_H2_DEFAULT_CONNECTIONS,
  WS_H2_DEFAULT_SOCKETS,
  WS_H2_IDLE_SCENARIO,
  type WsH2State,
  wsH2Method,
  wsH2Ports,
} from './ws-h2.ts';

const WARMUP_S = 1;

/** The hand-written analysis appended to RESULTS.md (see bench/analysis.md), if present. */
function readAnalysis(): string | undefined {
  try {
    return readFileSync(join(repoRoot, 'bench', 'analysis.md'), 'utf8');
  } catch {
    return undefined;
  }
}
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const FIGURES = [
  FIXED_RATE_SCENARIO,
  IDLE_RSS_SCENARIO,
  WORKERS_SCENARIO,
  ACCESS_LOG_SCENARIO,
  RESILIENCE_SCENARIO,
  PASSTHROUGH_SCENARIO,
  CACHE_SCENARIO,
  H2_INGRESS_SCENARIO,
  H2_UPSTREAM_SCENARIO,
  WS_SCENARIO,
  WS_H2_IDLE_SCENARIO,
] as const;
type Figure = (typeof FIGURES)[number];
const SCENARIO_NAMES = [...allScenarios.map((s) => s.name), ...FIGURES];

const USAGE = `usage: npm run bench -- [options]

  --scenario NAMES        comma-separated scenarios (default: all: ${SCENARIO_NAMES.join(', ')});
                          ${H2_GROUP} = ${H2_INGRESS_SCENARIO},${H2_UPSTREAM_SCENARIO}
  --only NAMES            comma-separated proxies (default: all: ${PROXY_NAMES.join(', ')});
                          ${FIXED_RATE_SCENARIO} and ${IDLE_RSS_SCENARIO} add nginx (their reference);
                          ${WORKERS_SCENARIO} runs the muxgate and nginx among them, ${H2_INGRESS_SCENARIO} the muxgate,
                          nginx and haproxy among them, ${H2_UPSTREAM_SCENARIO} muxgate (two configurations),
                          ${WS_SCENARIO} the muxgate and haproxy among them, ${WS_H2_IDLE_SCENARIO} muxgate only,
                          ${ACCESS_LOG_SCENARIO} the muxgate and nginx among them (each with and without a log),
                          ${RESILIENCE_SCENARIO} muxgate only (with and without retries, health checks, breakers),
                          ${PASSTHROUGH_SCENARIO} muxgate and haproxy (TLS passthrough by SNI),
                          ${CACHE_SCENARIO} muxgate, varnish and nginx (cached hits, thundering herd)
  --rounds N              interleaved rounds (default 3)
  --duration S            seconds per wrk or h2load run, except in the h2 and ws figures (default 10; plus a ${WARMUP_S} s warm-up)
  --h2-duration S         seconds per run of ${H2_INGRESS_SCENARIO} and ${H2_UPSTREAM_SCENARIO} (default ${H2_DEFAULT_DURATION_S}; plus the warm-up)
  --h2-rounds N           interleaved rounds of those two figures (default ${H2_DEFAULT_ROUNDS}: their runs are short and their ratios near 1)
  --ws-duration S         seconds per WebSocket latency and throughput run of ${WS_SCENARIO} (default ${WS_DEFAULT_DURATION_S}; plus the warm-up)
  --idle-connections N    idle connections for ${IDLE_RSS_SCENARIO} (default ${IDLE_DEFAULT_CONNECTIONS})
  --ws-idle-sockets N     idle WebSockets for the memory part of ${WS_SCENARIO} (default ${WS_DEFAULT_IDLE_SOCKETS})
  --ws-backend IMPL       echo backend of ${WS_SCENARIO}: ${WS_BACKENDS.join(' or ')} (default ${WS_DEFAULT_BACKEND}; see bench/ws-backend.ts)
  --ws-h2-sockets N       idle WebSockets per case of ${WS_H2_IDLE_SCENARIO} (default ${WS_H2_DEFAULT_SOCKETS}; rounded up to a multiple of 100)
  --h2-idle-connections N idle HTTP/2 client connections in ${WS_H2_IDLE_SCENARIO} (default ${WS_H2_DEFAULT_CONNECTIONS})
  --out FILE              markdown report (default bench/RESULTS.md)
`;

interface Options {
  scenarios: Scenario[];
  figures: Figure[];
  proxies: ProxyName[];
  rounds: number;
  durationS: number;
  h2DurationS: number;
  h2Rounds: number;
  wsDurationS: number;
  idleConnections: number;
  wsIdleSockets: number;
  wsBackend: WsBackendImpl;
  wsH2Sockets: number;
  h2IdleConnections: number;
  out: string;
}

function parseList<T extends string>(value: string | undefined, known: readonly T[], what: string): T[] {
  if (value === undefined) return [...known];
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!known.includes(n as T)) throw new Error(`unknown ${what} ${JSON.stringify(n)} (known: ${known.join(', ')})`);
  }
  // keep the canonical order
  return known.filter((k) => names.includes(k));
}

function positiveInt(value: string | undefined, def: number, what: string): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${what} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

function parseWsBackend(value: string | undefined): WsBackendImpl {
  if (value === undefined) return WS_DEFAULT_BACKEND;
  const impl = WS_BACKENDS.find((b) => b === value);
  if (impl === undefined)
    throw new Error(`--ws-backend must be ${WS_BACKENDS.join(' or ')}, got ${JSON.stringify(value)}`);
  return impl;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      only: { type: 'string' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      'h2-duration': { type: 'string' },
      'h2-rounds': { type: 'string' },
      'ws-duration': { type: 'string' },
      'idle-connections': { type: 'string' },
      'ws-idle-sockets': { type: 'string' },
      'ws-backend': { type: 'string' },
      'ws-h2-sockets': { type: 'string' },
      'h2-idle-connections': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  // `h2` stands for both HTTP/2 figures
  const scenarioArg = values.scenario
    ?.split(',')
    .flatMap((n) => (n.trim() === H2_GROUP ? [H2_INGRESS_SCENARIO, H2_UPSTREAM_SCENARIO] : [n]))
    .join(',');
  const names = parseList(scenarioArg, SCENARIO_NAMES, 'scenario');
  const figures = FIGURES.filter((f) => names.includes(f));
  let proxies = parseList(values.only, PROXY_NAMES, 'proxy');
  const needNginx = figures.filter((f) => f === FIXED_RATE_SCENARIO || f === IDLE_RSS_SCENARIO);
  if (needNginx.length && !proxies.includes('nginx')) {
    console.log(`note: ${needNginx.join(' and ')} compare with nginx: adding nginx to --only`);
    proxies = PROXY_NAMES.filter((p) => p === 'nginx' || proxies.includes(p));
  }
  return {
    scenarios: allScenarios.filter((s) => names.includes(s.name)),
    figures,
    proxies,
    rounds: positiveInt(values.rounds, 3, 'rounds'),
    durationS: positiveInt(values.duration, 10, 'duration'),
    h2DurationS: positiveInt(values['h2-duration'], H2_DEFAULT_DURATION_S, 'h2-duration'),
    h2Rounds: positiveInt(values['h2-rounds'], H2_DEFAULT_ROUNDS, 'h2-rounds'),
    wsDurationS: positiveInt(values['ws-duration'], WS_DEFAULT_DURATION_S, 'ws-duration'),
    idleConnections: positiveInt(values['idle-connections'], IDLE_DEFAULT_CONNECTIONS, 'idle-connections'),
    wsIdleSockets: positiveInt(values['ws-idle-sockets'], WS_DEFAULT_IDLE_SOCKETS, 'ws-idle-sockets'),
    wsBackend: parseWsBackend(values['ws-backend']),
    wsH2Sockets: positiveInt(values['ws-h2-sockets'], WS_H2_DEFAULT_SOCKETS, 'ws-h2-sockets'),
    h2IdleConnections: positiveInt(values['h2-idle-connections'], WS_H2_DEFAULT_CONNECTIONS, 'h2-idle-connections'),
    out: values.out ?? join(repoRoot, 'bench', 'RESULTS.md'),
  };
}

// ---------------------------------------------------------------------------

let interrupted = false;

/** What a run collects; the report is rendered from it after every measurement. */
interface RunState {
  results: RunResult[];
  startFailures: Map<string, string>;
  checkFailures: Map<string, string>;
  fixedRate: FixedRateState;
  idle: IdleRssRun[];
  workers: WorkersState;
  accessLog: AccessLogState;
  resilience: ResilienceState;
  passthrough: PassthroughState;
  cache: CacheState;
  h2: H2State;
  ws: WsState;
  wsH2: WsH2State;
}

function workersVariantsFor(opts: Options): WorkersVariant[] {
  return WORKERS_VARIANTS.filter((v) => opts.proxies.includes(v.proxy));
}

function figureMethod(f: Figure, opts: Options): string {
  if (f === FIXED_RATE_SCENARIO) return fixedRateMethod(opts.durationS, WARMUP_S);
  if (f === IDLE_RSS_SCENARIO) return idleRssMethod(opts.idleConnections);
  if (f === H2_INGRESS_SCENARIO) return h2IngressMethod(opts.h2DurationS, WARMUP_S, opts.h2Rounds);
  if (f === H2_UPSTREAM_SCENARIO) return h2UpstreamMethod(opts.h2DurationS, WARMUP_S, opts.h2Rounds);
  if (f === WS_SCENARIO) return wsMethod(opts.wsDurationS, WARMUP_S, opts.wsIdleSockets, opts.wsBackend);
  if (f === WS_H2_IDLE_SCENARIO) return wsH2Method(wsH2Options(opts));
  if (f === ACCESS_LOG_SCENARIO) return accessLogMethod(opts.durationS, WARMUP_S);
  if (f === RESILIENCE_SCENARIO) return resilienceMethod(opts.durationS, WARMUP_S);
  if (f === PASSTHROUGH_SCENARIO) return passthroughMethod(opts.durationS, WARMUP_S);
  if (f === CACHE_SCENARIO) return cacheMethod(opts.durationS, WARMUP_S);
  return workersMethod(opts.durationS);
}

function figureSection(f: Figure, opts: Options, st: RunState): string {
  if (f === FIXED_RATE_SCENARIO) {
    const { runs, targetRps, rateSource } = st.fixedRate;
    return renderFixedRate({ runs, proxies: opts.proxies, targetRps, rateSource });
  }
  if (f === IDLE_RSS_SCENARIO) return renderIdleRss(st.idle, opts.proxies, opts.idleConnections);
  if (f === H2_INGRESS_SCENARIO) return renderH2Ingress(st.h2.ingress, opts.proxies, opts.h2DurationS, WARMUP_S);
  if (f === H2_UPSTREAM_SCENARIO) return renderH2Upstream(st.h2.upstream, opts.h2DurationS, WARMUP_S);
  if (f === WS_SCENARIO) {
    return renderWs(st.ws.runs, opts.proxies, opts.wsDurationS, WARMUP_S, opts.wsIdleSockets, opts.wsBackend);
  }
  if (f === WS_H2_IDLE_SCENARIO) return renderWsH2(st.wsH2.runs, wsH2Options(opts));
  if (f === ACCESS_LOG_SCENARIO) return renderAccessLog(st.accessLog.runs, opts.proxies);
  if (f === RESILIENCE_SCENARIO) return renderResilience(st.resilience.runs);
  if (f === PASSTHROUGH_SCENARIO) return renderPassthrough(st.passthrough.runs);
  if (f === CACHE_SCENARIO) return renderCache(st.cache.runs);
  return renderWorkers({ ...st.workers, variants: workersVariantsFor(opts) });
}

function wsH2Options(opts: Options): { sockets: number; connections: number } {
  return { sockets: opts.wsH2Sockets, connections: opts.h2IdleConnections };
}

/** Whether anything besides the WebSocket figures (which have their own backends) runs: they use the nginx backend. */
function needsNginxBackend(opts: Options): boolean {
  return opts.scenarios.length > 0 || opts.figures.some((f) => f !== WS_SCENARIO && f !== WS_H2_IDLE_SCENARIO);
}

/** Every port a run listens on, so that a busy one is reported before anything starts. */
function portsUsed(opts: Options): [number, string][] {
  const ports: [number, string][] = needsNginxBackend(opts) ? [[BACKEND_PORT, 'backend']] : [];
  if (opts.scenarios.length || opts.figures.includes(FIXED_RATE_SCENARIO)) {
    for (const p of opts.proxies) ports.push([PROXY_PORTS[p], p]);
  }
  if (opts.figures.includes(IDLE_RSS_SCENARIO)) {
    for (const p of opts.proxies) ports.push([IDLE_PORTS[p], `${p} (${IDLE_RSS_SCENARIO})`]);
    if (opts.proxies.includes('muxgate')) ports.push([IDLE_ADMIN_PORT, `muxgate admin (${IDLE_RSS_SCENARIO})`]);
  }
  if (opts.figures.includes(WORKERS_SCENARIO)) {
    for (const v of workersVariantsFor(opts)) for (const port of workersPorts(v)) ports.push([port, v.id]);
  }
  if (opts.figures.includes(ACCESS_LOG_SCENARIO)) {
    for (const v of accessLogVariants(opts.proxies)) ports.push([v.port, v.id]);
  }
  if (opts.figures.includes(RESILIENCE_SCENARIO)) {
    for (const v of RESILIENCE_VARIANTS) ports.push([v.port, v.id]);
  }
  if (opts.figures.includes(PASSTHROUGH_SCENARIO)) {
    ports.push([18191, 'muxgate-passthrough'], [18192, 'haproxy-passthrough'], [BACKEND_TLS_PORT, 'backend (TLS)']);
  }
  if (opts.figures.includes(CACHE_SCENARIO)) ports.push(...cachePorts());
  ports.push(...h2Ports(opts.figures, opts.proxies));
  ports.push(...wsPorts(opts.figures, opts.proxies));
  ports.push(...wsH2Ports(opts.figures));
  return ports;
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (!opts) return 0;

  const major = Number(process.versions.node.split('.')[0]);
  if (major < 26) throw new Error(`run the harness with node >= 26 (npm run bench / npx node), not ${process.version}`);
  const tools = ['taskset', 'wrk', 'nginx'];
  if (opts.figures.includes(FIXED_RATE_SCENARIO) || opts.figures.includes(H2_INGRESS_SCENARIO)) tools.push('h2load');
  if (
    opts.figures.some(
      (f) =>
        f === WORKERS_SCENARIO || f === H2_INGRESS_SCENARIO || f === H2_UPSTREAM_SCENARIO || f === WS_H2_IDLE_SCENARIO,
    )
  ) {
    tools.push('ss');
  }
  if (opts.figures.includes(CACHE_SCENARIO)) tools.push('varnishd');
  for (const tool of tools) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`]);
    if (r.status !== 0) throw new Error(`${tool} is required but not found in PATH`);
  }

  const runDir = join(repoRoot, 'bench', 'out', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(runDir, { recursive: true });

  for (const [port, what] of portsUsed(opts)) await assertPortFree(port, what);

  const machine = machineInfo();
  const method: Method = {
    rounds: opts.rounds,
    durationS: opts.durationS,
    warmupS: WARMUP_S,
    proxies: opts.proxies,
    scenarios: opts.scenarios.map((s) => ({
      name: s.name,
      description: s.description,
      wrk: `wrk ${wrkArgv({
        url: `http://127.0.0.1:<port>${s.path}`,
        args: s.wrkArgs,
        durationS: opts.durationS,
        script: s.script ? relative(repoRoot, s.script) : undefined,
        cpu: LOAD_CPU,
      }).join(' ')}`,
    })),
    figures: opts.figures.map((f) => ({ name: f, method: figureMethod(f, opts) })),
    proxyCpu: PROXY_CPU,
    loadCpu: LOAD_CPU,
  };
  const st: RunState = {
    results: [],
    startFailures: new Map(),
    checkFailures: new Map(),
    fixedRate: { runs: [], targetRps: undefined, rateSource: 'not measured' },
    idle: [],
    workers: { runs: [], spread: [] },
    accessLog: { runs: [] },
    resilience: { runs: [] },
    passthrough: { runs: [] },
    cache: { runs: [] },
    h2: { ingress: [], upstream: [] },
    ws: { runs: [] },
    wsH2: { runs: [] },
  };
  const report = (): ReportInput => ({
    machine,
    method,
    results: st.results,
    startFailures: st.startFailures,
    checkFailures: st.checkFailures,
    interrupted,
    figureSections: opts.figures.map((f) => figureSection(f, opts, st)),
    analysis: readAnalysis(),
  });
  let wrote = false;
  const writeReport = (): void => {
    // never replace a previous report with an empty one (e.g. the backend did not start)
    const measured =
      st.results.length +
      st.fixedRate.runs.length +
      st.idle.length +
      st.workers.runs.length +
      st.accessLog.runs.length +
      st.resilience.runs.length +
      st.passthrough.runs.length +
      st.cache.runs.length +
      st.h2.ingress.length +
      st.h2.upstream.length +
      st.ws.runs.length +
      st.wsH2.runs.length;
    if (measured === 0 && st.startFailures.size === 0) return;
    writeFileSync(opts.out, renderResults(report()));
    wrote = true;
  };
  const ctx: FigureContext = {
    runDir,
    rounds: opts.rounds,
    durationS: opts.durationS,
    warmupS: WARMUP_S,
    proxies: opts.proxies,
    stopped: () => interrupted,
    recorded: writeReport,
    startFailures: st.startFailures,
    checkFailures: st.checkFailures,
  };

  console.log(
    `muxgate bench: ${opts.rounds} round(s) × ${opts.durationS} s` +
      `${opts.figures.some((f) => f === H2_INGRESS_SCENARIO || f === H2_UPSTREAM_SCENARIO) ? ` (h2 figures: ${opts.h2Rounds} round(s) × ${opts.h2DurationS} s)` : ''}` +
      `${opts.figures.includes(WS_SCENARIO) ? ` (${WS_SCENARIO}: ${opts.wsDurationS} s)` : ''}` +
      `, scenarios ${[...opts.scenarios.map((s) => s.name), ...opts.figures].join(', ')}`,
  );
  console.log(`proxies on core ${PROXY_CPU}: ${opts.proxies.join(', ')}; wrk + backend on core ${LOAD_CPU}`);
  console.log(`configs and logs: ${relative(repoRoot, runDir)}`);

  try {
    // backend
    // (with an h2c listen port too when h2-upstream runs)
    const h2Upstream = opts.figures.includes(H2_UPSTREAM_SCENARIO) && opts.proxies.includes('muxgate');
    if (needsNginxBackend(opts)) {
      const tls = opts.figures.includes(PASSTHROUGH_SCENARIO)
        ? { port: BACKEND_TLS_PORT, ...backendCertificate(runDir) }
        : undefined;
      const backend = await startServer(backendSpec(runDir, h2Upstream ? BACKEND_H2C_PORT : undefined, tls), runDir);
      for (const s of opts.figures.length ? [...opts.scenarios, GET_12B] : opts.scenarios) {
        const err = await checkEndpoint(BACKEND_PORT, s.path, s.check);
        if (err) throw new Error(`backend sanity check failed: ${err}\n${serverOutput(backend)}`);
      }
    }

    // the wrk scenarios, then latency-fixed-rate on the same proxies
    if (opts.scenarios.length || opts.figures.includes(FIXED_RATE_SCENARIO)) {
      const running = await startProxies(opts, st, runDir);
      try {
        await runWrkScenarios(opts, st, running, writeReport);
        if (opts.figures.includes(FIXED_RATE_SCENARIO) && !interrupted) {
          const nginxRps = st.results
            .filter((r) => r.scenario === GET_12B.name && r.proxy === 'nginx' && r.ok)
            .map((r) => r.rps!);
          await runFixedRateFigure(ctx, running, nginxRps, st.fixedRate);
        }
      } finally {
        for (const server of running.values()) await stopServer(server);
      }
    }
    if (opts.figures.includes(IDLE_RSS_SCENARIO) && !interrupted) {
      await runIdleRssFigure(ctx, opts.idleConnections, st.idle);
    }
    if (opts.figures.includes(WORKERS_SCENARIO) && !interrupted) {
      await runWorkersFigure(ctx, workersVariantsFor(opts), st.workers);
    }
    if (opts.figures.includes(ACCESS_LOG_SCENARIO) && !interrupted) await runAccessLogFigure(ctx, st.accessLog);
    if (opts.figures.includes(RESILIENCE_SCENARIO) && !interrupted) await runResilienceFigure(ctx, st.resilience);
    if (opts.figures.includes(PASSTHROUGH_SCENARIO) && !interrupted) await runPassthroughFigure(ctx, st.passthrough);
    if (opts.figures.includes(CACHE_SCENARIO) && !interrupted) await runCacheFigure(ctx, st.cache);
    // the HTTP/2 figures use their own (shorter) run length, and more rounds: a 5 s run moves more from round
    // to round, and the h2-upstream ratio to HAProxy sits near 1, where 3 rounds leave the median to chance
    const h2Ctx: FigureContext = { ...ctx, durationS: opts.h2DurationS, rounds: opts.h2Rounds };
    if (opts.figures.includes(H2_INGRESS_SCENARIO) && !interrupted) await runH2IngressFigure(h2Ctx, st.h2.ingress);
    if (opts.figures.includes(H2_UPSTREAM_SCENARIO) && !interrupted) await runH2UpstreamFigure(h2Ctx, st.h2.upstream);
    // so does the WebSocket figure
    if (opts.figures.includes(WS_SCENARIO) && !interrupted) {
      await runWsFigure({ ...ctx, durationS: opts.wsDurationS }, opts.wsIdleSockets, opts.wsBackend, st.ws);
    }
    if (opts.figures.includes(WS_H2_IDLE_SCENARIO) && !interrupted) {
      await runWsH2Figure(ctx, wsH2Options(opts), st.wsH2);
    }
  } finally {
    await stopAll();
    writeReport();
  }
  if (wrote) console.log(`\nwrote ${opts.out.startsWith(repoRoot) ? relative(repoRoot, opts.out) : opts.out}`);
  if (interrupted) return 130;
  const failed =
    st.startFailures.size > 0 ||
    st.checkFailures.size > 0 ||
    [
      ...st.results,
      ...st.fixedRate.runs,
      ...st.idle,
      ...st.workers.runs,
      ...st.workers.spread,
      ...st.accessLog.runs,
      ...st.resilience.runs,
      ...st.passthrough.runs,
      ...st.cache.runs,
      ...st.h2.ingress,
      ...st.h2.upstream,
      ...st.ws.runs,
      ...st.wsH2.runs,
    ].some((r) => !r.ok);
  return failed ? 1 : 0;
}

/** Starts the proxies of the wrk scenarios and latency-fixed-rate (pinned) and checks each scenario once. */
async function startProxies(opts: Options, st: RunState, runDir: string): Promise<Map<ProxyName, RunningServer>> {
  const running = new Map<ProxyName, RunningServer>();
  for (const name of opts.proxies) {
    if (interrupted) break;
    try {
      const server = await startServer(proxySpec(name, runDir), runDir);
      running.set(name, server);
      console.log(`started ${name} (pid ${server.tracked.pid}, port ${server.spec.port})`);
    } catch (err) {
      if (!(err instanceof StartError)) throw err;
      st.startFailures.set(name, `${err.message}\n${err.details}`);
      console.error(`✗ ${name} failed to start: ${err.message}\n${err.details}\n`);
    }
  }
  const checks: [string, Scenario][] = opts.scenarios.map((s) => [s.name, s]);
  if (opts.figures.includes(FIXED_RATE_SCENARIO)) checks.push([FIXED_RATE_SCENARIO, GET_12B]);
  for (const [name, server] of running) {
    for (const [scenario, s] of checks) {
      const err = await checkEndpoint(server.spec.port, s.path, s.check);
      if (err) {
        st.checkFailures.set(`${scenario}/${name}`, err);
        console.error(`✗ ${name}: sanity check for ${scenario} failed: ${err}`);
      }
    }
  }
  return running;
}

/** The wrk scenarios, in interleaved rounds. */
async function runWrkScenarios(
  opts: Options,
  st: RunState,
  running: ReadonlyMap<ProxyName, RunningServer>,
  writeReport: () => void,
): Promise<void> {
  if (opts.scenarios.length === 0) return;
  console.log(`\n${CONSOLE_HEADER}`);
  const proxies = opts.proxies.filter((p) => running.has(p));
  for (let round = 1; round <= opts.rounds && !interrupted; round++) {
    for (const scenario of opts.scenarios) {
      if (interrupted) break;
      for (const name of rotate(proxies, round - 1)) {
        if (interrupted) break;
        if (st.checkFailures.has(`${scenario.name}/${name}`)) continue;
        const result = await measure(round, scenario, name, running.get(name)!, opts.durationS);
        if (interrupted) break;
        st.results.push(result);
        console.log(consoleLine(result));
        writeReport();
      }
    }
  }
}
async function measure(
  round: number,
  scenario: Scenario,
  proxy: ProxyName,
  server: RunningServer,
  durationS: number,
): Promise<RunResult> {
  const base = { round, scenario: scenario.name, proxy };
  const down = (): RunResult | undefined =>
    server.tracked.exit
      ? {
          ...base,
          ok: false,
          failure: `${proxy} is not running (exit ${server.tracked.exit.signal ?? server.tracked.exit.code}); ${serverOutput(server).slice(-500)}`,
        }
      : undefined;
  const wrkOpts = {
    url: `http://127.0.0.1:${server.spec.port}${scenario.path}`,
    args: scenario.wrkArgs,
    script: scenario.script,
    cpu: LOAD_CPU,
  };
  const gone = down();
  if (gone) return gone;
  await runWrkRaw({ ...wrkOpts, durationS: WARMUP_S });
  try {
    const wrk = await runWrk({ ...wrkOpts, durationS });
    const gone = down();
    if (gone) return gone;
    // A proxy that is up but answers nothing (wedged: e.g. leaked upstream sockets) is a failed run,
    // not a run with 0 req/s and "no errors" (wrk reports no error when no request ever completes).
    if (wrk.requests === 0) {
      return { ...base, ok: false, failure: `${proxy} answered no request in ${durationS} s (stalled)` };
    }
    return {
      ...base,
      ok: true,
      rps: wrk.rps,
      p50Ms: wrk.p50Ms,
      p99Ms: wrk.p99Ms,
      requests: wrk.requests,
      errors: wrk.errors,
      errorCount: wrk.errorCount,
      rssKiB: readRssKiB(server.tracked.pid),
    };
  } catch (err) {
    return down() ?? { ...base, ok: false, failure: (err as Error).message.slice(0, 500) };
  }
}

process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('exit', killAllSync);

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    // second Ctrl-C: do not wait any longer
    killAllSync();
    process.exit(130);
  }
  interrupted = true;
  console.error(`\n${signal}: stopping every process and writing the partial report…`);
  void stopAll();
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll();
    process.exitCode = 1;
  },
);
