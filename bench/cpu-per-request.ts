// User and kernel CPU time per request of one proxy under wrk (bench/analysis.md's "CPU per request" table):
//   npx node bench/cpu-per-request.ts [--proxy muxgate|nginx|haproxy|raw|raw-handle] [--scenario get-12b]
//                                     [--duration 5] [--strace] [--perf] [--upstream http1|http2]
//                                     [--cpu-quota 0.5] [--callgrind [--cache-sim]]
// Same pinning as `npm run bench`; utime/stime come from /proc/<pid>/stat before and after the run.
// `--upstream http2`: muxgate's or HAProxy's upstream over h2c to the backend's h2c port (the h2-upstream figure).
// `--cpu-quota F`: the proxy gets at most F of a core (a cgroup's CFS quota; root, cgroup v1 `cpu` or v2), so
// that the proxy, not the load core, is what bounds req/s: req/s then compares the proxies' efficiency.
// `raw` and `raw-handle` are the reference forwarders (bench/raw-forwarder.ts, bench/raw-handle-forwarder.ts;
// `--callgrind`: the proxy runs under valgrind's callgrind, and the figure is the user-space instructions it
// executes per request (counters zeroed after a long warm-up, dumped after the run): a count that this VM's
// speed swings do not move, to tell changes of a few per cent apart (no hardware counters here). valgrind
// runs the proxy ~50× slower and on one thread, so batches are larger than in the real run: compare
// versions of one proxy, or proxies with each other, under it, not with the timed figures.
// `--cache-sim` (with --callgrind): valgrind also simulates the caches (its I1 is 32 KiB, 8-way, like the
// host's) and the main thread's first-level instruction and data misses per request are reported too.
// RAW_OWN_BUFFERS=1 / RAW_SOCKET_WRITES=1 switch the latter's reads and writes back to Node's).
// MUXGATE_NODE_ARGS="…" adds Node options to muxgate's command line (e.g. --trace-gc, --import a profiler).
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { newestDump } from './callgrind-dumps.ts';
import { cpuTimes, limitCpu, removeCgroup, stopAll, ticksPerSecond } from './procs.ts';
import { scenarios } from './scenarios.ts';
import {
  BACKEND_H2C_PORT,
  BACKEND_PORT,
  backendSpec,
  LOAD_CPU,
  PROXY_CPU,
  PROXY_PORTS,
  type ProxyName,
  proxySpec,
  type ServerSpec,
  startServer,
} from './servers.ts';
import { runWrk } from './wrk.ts';

const RAW_PORT = 18109;

/** utime and stime of the proxy process (every thread), in clock ticks. */
function cpuTicks(pid: number): { user: number; kernel: number } {
  const t = cpuTimes(`/proc/${pid}/stat`);
  if (t === undefined) throw new Error(`the proxy (pid ${pid}) is gone`);
  return t;
}

/** Busy and total ticks of each CPU (/proc/stat: busy = all but idle and iowait). */
function coreTicks(): { busy: number; total: number }[] {
  const cores: { busy: number; total: number }[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (m === null) continue;
    const f = (m[2] ?? '').trim().split(/\s+/).map(Number);
    const total = f.slice(0, 8).reduce((x, y) => x + y, 0);
    cores[Number(m[1])] = { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
  }
  return cores;
}

/** Instructions per request on the main thread, and in all threads, from the dump taken after the zeroing. */
function instructionsPerRequest(out: string, requests: number): string {
  let main = 0;
  let all = 0;
  for (const d of newestDump(out)) {
    const m = /^summary: (\d+)/m.exec(readFileSync(d.path, 'utf8'));
    if (m === null) throw new Error(`no summary line in ${d.path}`);
    all += Number(m[1]);
    if (d.thread === 1) main += Number(m[1]);
  }
  const per = (n: number) => Math.round(n / requests);
  return `${requests} requests, ${per(main)} instructions/request on the main thread (${per(all)} in all threads)${cacheMisses(out, requests)}`;
}

/** With --cache-sim: the main thread's I1 and D1 misses per request (events named on the dump's `events:` line). */
function cacheMisses(out: string, requests: number): string {
  const main = newestDump(out).find((d) => d.thread === 1);
  if (main === undefined) return '';
  const text = readFileSync(main.path, 'utf8');
  const names = /^events: (.+)$/m.exec(text)?.[1]?.split(' ') ?? [];
  const counts = /^summary: (.+)$/m.exec(text)?.[1]?.split(' ').map(Number) ?? [];
  const of = (e: string) => Math.round((counts[names.indexOf(e)] ?? Number.NaN) / requests);
  if (!names.includes('I1mr')) return '';
  return `; I1 misses ${of('I1mr')}/request, D1 misses ${of('D1mr') + of('D1mw')}/request (simulated)`;
}

/** The cgroup --cpu-quota made: removed once its process is gone. */
let cgroupDir: string | null = null;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      proxy: { type: 'string', default: 'muxgate' },
      scenario: { type: 'string', default: 'get-12b' },
      duration: { type: 'string', default: '5' },
      strace: { type: 'boolean', default: false },
      perf: { type: 'boolean', default: false },
      upstream: { type: 'string', default: 'http1' },
      'cpu-quota': { type: 'string' },
      callgrind: { type: 'boolean', default: false },
      'cache-sim': { type: 'boolean', default: false },
    },
  });
  const scenario = scenarios.find((s) => s.name === values.scenario);
  if (scenario === undefined) throw new Error(`unknown scenario ${values.scenario}`);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = join(root, 'bench', 'out', `cpu-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  await startServer(backendSpec(dir, values.upstream === 'http2' ? BACKEND_H2C_PORT : undefined), dir);
  let spec: ServerSpec;
  if (values.proxy === 'raw' || values.proxy === 'raw-handle') {
    spec = {
      name: 'raw',
      port: RAW_PORT,
      cpu: PROXY_CPU,
      command: process.execPath,
      args: [
        join(root, 'bench', values.proxy === 'raw-handle' ? 'raw-handle-forwarder.ts' : 'raw-forwarder.ts'),
        String(RAW_PORT),
        String(BACKEND_PORT),
      ],
      logFiles: [],
    };
  } else {
    const upstream = values.upstream === 'http2' ? 'http2' : 'http1';
    spec = proxySpec(
      values.proxy as ProxyName,
      dir,
      upstream === 'http2' ? { upstreamProtocol: 'http2', backendPort: BACKEND_H2C_PORT } : {},
    );
    // --perf, --callgrind: name JIT-compiled JavaScript functions (/tmp/perf-<pid>.map)
    if ((values.perf || values.callgrind) && values.proxy === 'muxgate')
      spec.args = ['--perf-basic-prof', ...spec.args];
  }
  const callgrindOut = join(dir, 'callgrind.out');
  if (values.callgrind) {
    // one file per thread: the main thread's count is the figure (helper threads, V8's background
    // compiler and GC, moved it by ±1.5k instructions per request from run to run)
    spec.args = [
      '--tool=callgrind',
      '--separate-threads=yes',
      `--callgrind-out-file=${callgrindOut}`,
      ...(values['cache-sim'] ? ['--cache-sim=yes'] : []),
      spec.command,
      ...spec.args,
    ];
    spec.command = 'valgrind';
  }
  // under valgrind, Node takes many seconds to start
  const server = await startServer(spec, dir, values.callgrind ? 120_000 : undefined);
  if (values['cpu-quota'] !== undefined) cgroupDir = limitCpu(server.tracked.pid, Number(values['cpu-quota']));
  const port = values.proxy.startsWith('raw') ? RAW_PORT : PROXY_PORTS[values.proxy as ProxyName];
  const load = {
    url: `http://127.0.0.1:${port}${scenario.path}`,
    args: scenario.wrkArgs,
    script: scenario.script,
    cpu: LOAD_CPU,
  };
  // under valgrind: long enough a warm-up for V8 to optimise the hot path, then count from zero
  await runWrk({ ...load, durationS: values.callgrind ? 40 : 1 });
  if (values.callgrind) execFileSync('callgrind_control', ['--zero', String(server.tracked.pid)]);
  // --strace: count the proxy's system calls during the run (slows it down; the counts per request still hold)
  const strace = values.strace
    ? spawn('strace', ['-c', '-f', '-p', String(server.tracked.pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
    : undefined;
  let straceOut = '';
  strace?.stderr?.on('data', (c: Buffer) => {
    straceOut += c.toString();
  });
  // --perf: sample the proxy (user and kernel) during the run; `perf report -i <dir>/perf.data` afterwards
  const perf = values.perf
    ? spawn('perf', ['record', '-F', '2000', '-g', '-o', join(dir, 'perf.data'), '-p', String(server.tracked.pid)], {
        stdio: 'ignore',
      })
    : undefined;
  if (strace || perf) await new Promise((r) => setTimeout(r, 500));
  const before = cpuTicks(server.tracked.pid);
  const coresBefore = coreTicks();
  const r = await runWrk({ ...load, durationS: Number(values.duration) });
  const coresAfter = coreTicks();
  const after = cpuTicks(server.tracked.pid);
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((r) => perf.on('close', r));
    process.stdout.write(`perf data: ${join(dir, 'perf.data')}\n`);
  }
  if (strace) {
    strace.kill('SIGINT');
    await new Promise((r) => strace.on('close', r));
    process.stdout.write(`${straceOut}\n(${r.requests} requests)\n`);
  }
  const n = r.requests;
  if (values.callgrind) {
    execFileSync('callgrind_control', ['--dump', String(server.tracked.pid)]);
    process.stdout.write(`${values.proxy} ${scenario.name}: ${instructionsPerRequest(callgrindOut, n)} (callgrind)\n`);
    process.stdout.write(`per function: node bench/callgrind-top.ts ${callgrindOut} ${server.tracked.pid} ${n}\n`);
    return;
  }
  const us = (ticks: number): string => ((ticks / ticksPerSecond() / n) * 1e6).toFixed(2);
  // a proxy answering errors is fast and cheap: say so rather than report its CPU as the cost of a request
  const errors =
    r.errorCount > 0 ? ` (${r.errorCount} ERRORS: socket errors or statuses >= 400; not a valid figure)` : '';
  // each core's busy time per request: the load core (wrk and the backend) can be what bounds req/s, and a
  // proxy's way of writing (how many requests per backend read, say) changes what the load core spends
  const core = (cpu: number): string => {
    const b = coresBefore[cpu];
    const a = coresAfter[cpu];
    if (a === undefined || b === undefined) return '?';
    return `${us(a.busy - b.busy)} µs/req (${Math.round((100 * (a.busy - b.busy)) / (a.total - b.total))} % busy)`;
  };
  process.stdout.write(
    `${values.proxy} ${scenario.name}: ${Math.round(r.rps)} req/s, user ${us(after.user - before.user)} µs/req, kernel ${us(after.kernel - before.kernel)} µs/req; proxy core ${core(Number(PROXY_CPU))}, load core ${core(Number(LOAD_CPU))}${errors}\n`,
  );
}

try {
  await main();
} finally {
  await stopAll();
  if (cgroupDir !== null) removeCgroup(cgroupDir); // empty now: its process has exited
}
