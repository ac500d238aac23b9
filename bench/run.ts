// Benchmark harness: muxgate vs nginx vs HAProxy vs node-http-proxy, all in
// front of the same nginx backend. See `--help`, bench/scenarios.ts (what is
// measured) and bench/servers.ts (how the servers are configured).
//
//   npm run bench -- [--scenario get-12b,post-16k] [--rounds 3] [--duration 10]
//                    [--only muxgate,nginx] [--out bench/RESULTS.md]

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAllSync, readRssKiB, stopAll } from './procs.ts';
import {
  CONSOLE_HEADER,
  consoleLine,
  type MachineInfo,
  type Method,
  type ReportInput,
  type RunResult,
  renderResults,
} from './report.ts';
import { type Scenario, scenarios as allScenarios } from './scenarios.ts';
import {
  assertPortFree,
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
} from './servers.ts';
import { runWrk, runWrkRaw, wrkArgv } from './wrk.ts';

const WARMUP_S = 1;
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const USAGE = `usage: npm run bench -- [options]

  --scenario NAMES   comma-separated scenarios (default: all: ${allScenarios.map((s) => s.name).join(', ')})
  --only NAMES       comma-separated proxies (default: all: ${PROXY_NAMES.join(', ')})
  --rounds N         interleaved rounds (default 3)
  --duration S       seconds per wrk run (default 10; plus a ${WARMUP_S} s warm-up run)
  --out FILE         markdown report (default bench/RESULTS.md)
`;

interface Options {
  scenarios: Scenario[];
  proxies: ProxyName[];
  rounds: number;
  durationS: number;
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

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      only: { type: 'string' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  const names = parseList(
    values.scenario,
    allScenarios.map((s) => s.name),
    'scenario',
  );
  return {
    scenarios: allScenarios.filter((s) => names.includes(s.name)),
    proxies: parseList(values.only, PROXY_NAMES, 'proxy'),
    rounds: positiveInt(values.rounds, 3, 'rounds'),
    durationS: positiveInt(values.duration, 10, 'duration'),
    out: values.out ?? join(repoRoot, 'bench', 'RESULTS.md'),
  };
}

// ---------------------------------------------------------------------------
// machine description

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return `not found (${r.error.message})`;
  return (
    `${r.stdout ?? ''}\n${r.stderr ?? ''}`
      .split('\n')
      .map((l) => l.trim())
      .find(Boolean) ?? 'unknown'
  );
}

function machineInfo(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel;
  } catch {
    // not Linux?
  }
  const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  const muxgateRevision =
    rev.status === 0
      ? `${rev.stdout.trim()}${dirty.stdout.trim() ? ' (with uncommitted changes)' : ''}`
      : 'no git commit yet (working tree)';
  return {
    date: new Date().toISOString(),
    cpuModel,
    cores: os.availableParallelism(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: firstLine('nginx', ['-v']).replace(/^nginx version:\s*/, ''),
    haproxy: firstLine('haproxy', ['-v']),
    wrk: firstLine('wrk', ['-v']),
    muxgateRevision,
  };
}

// ---------------------------------------------------------------------------

let interrupted = false;

function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length === 0) return [];
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (!opts) return 0;

  const major = Number(process.versions.node.split('.')[0]);
  if (major < 26) throw new Error(`run the harness with node >= 26 (npm run bench / npx node), not ${process.version}`);
  for (const tool of ['taskset', 'wrk', 'nginx']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`]);
    if (r.status !== 0) throw new Error(`${tool} is required but not found in PATH`);
  }

  const runDir = join(repoRoot, 'bench', 'out', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(runDir, { recursive: true });

  await assertPortFree(BACKEND_PORT, 'backend');
  for (const p of opts.proxies) await assertPortFree(PROXY_PORTS[p], p);

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
    proxyCpu: PROXY_CPU,
    loadCpu: LOAD_CPU,
  };
  const results: RunResult[] = [];
  const startFailures = new Map<string, string>();
  const checkFailures = new Map<string, string>();
  const report = (): ReportInput => ({ machine, method, results, startFailures, checkFailures, interrupted });
  let wrote = false;
  const writeReport = (): void => {
    // never replace a previous report with an empty one (e.g. the backend did not start)
    if (results.length === 0 && startFailures.size === 0) return;
    writeFileSync(opts.out, renderResults(report()));
    wrote = true;
  };

  console.log(
    `muxgate bench: ${opts.rounds} round(s) × ${opts.durationS} s, scenarios ${opts.scenarios.map((s) => s.name).join(', ')}`,
  );
  console.log(`proxies on core ${PROXY_CPU}: ${opts.proxies.join(', ')}; wrk + backend on core ${LOAD_CPU}`);
  console.log(`configs and logs: ${relative(repoRoot, runDir)}`);

  try {
    // backend
    const backend = await startServer(backendSpec(runDir), runDir);
    for (const s of opts.scenarios) {
      const err = await checkEndpoint(BACKEND_PORT, s.path, s.check);
      if (err) throw new Error(`backend sanity check failed: ${err}\n${serverOutput(backend)}`);
    }

    // proxies
    const running = new Map<ProxyName, RunningServer>();
    for (const name of opts.proxies) {
      if (interrupted) break;
      try {
        const server = await startServer(proxySpec(name, runDir), runDir);
        running.set(name, server);
        console.log(`started ${name} (pid ${server.tracked.pid}, port ${server.spec.port})`);
      } catch (err) {
        if (!(err instanceof StartError)) throw err;
        startFailures.set(name, `${err.message}\n${err.details}`);
        console.error(`✗ ${name} failed to start: ${err.message}\n${err.details}\n`);
      }
    }
    for (const [name, server] of running) {
      for (const s of opts.scenarios) {
        const err = await checkEndpoint(server.spec.port, s.path, s.check);
        if (err) {
          checkFailures.set(`${s.name}/${name}`, err);
          console.error(`✗ ${name}: sanity check for ${s.name} failed: ${err}`);
        }
      }
    }

    // interleaved rounds
    console.log(`\n${CONSOLE_HEADER}`);
    const proxies = opts.proxies.filter((p) => running.has(p));
    for (let round = 1; round <= opts.rounds && !interrupted; round++) {
      for (const scenario of opts.scenarios) {
        if (interrupted) break;
        for (const name of rotate(proxies, round - 1)) {
          if (interrupted) break;
          if (checkFailures.has(`${scenario.name}/${name}`)) continue;
          const server = running.get(name)!;
          const result = await measure(round, scenario, name, server, opts.durationS);
          if (interrupted) break;
          results.push(result);
          console.log(consoleLine(result));
          writeReport();
        }
      }
    }
  } finally {
    await stopAll();
    writeReport();
  }
  if (wrote) console.log(`\nwrote ${opts.out.startsWith(repoRoot) ? relative(repoRoot, opts.out) : opts.out}`);
  if (interrupted) return 130;
  return startFailures.size || checkFailures.size || results.some((r) => !r.ok) ? 1 : 0;
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
