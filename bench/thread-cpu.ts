// Where a proxy's CPU time goes, thread by thread (main thread, libuv pool, V8 helpers), under get-12b:
//   node bench/thread-cpu.ts [--proxy muxgate] [--access-log] [--duration 5] [--cpu-quota 0.5]
// Same pinning as `npm run bench`; utime + stime of each /proc/<pid>/task/<tid> before and after the run.
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuTimes, limitCpu, removeCgroup, stopAll, ticksPerSecond } from './procs.ts';
import { GET_12B } from './scenarios.ts';
import { backendSpec, LOAD_CPU, PROXY_PORTS, type ProxyName, proxySpec, startServer } from './servers.ts';
import { runWrk } from './wrk.ts';

/** utime and stime of each thread of `pid`, by "tid (name)". */
function threadTicks(pid: number): Map<string, { user: number; kernel: number }> {
  const out = new Map<string, { user: number; kernel: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const t = cpuTimes(`/proc/${pid}/task/${tid}/stat`); // undefined: the thread ended
    if (t !== undefined) out.set(`${tid} (${t.name})`, { user: t.user, kernel: t.kernel });
  }
  return out;
}

/** The cgroup --cpu-quota made: removed once its process is gone. */
let cgroupDir: string | null = null;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      proxy: { type: 'string', default: 'muxgate' },
      'access-log': { type: 'boolean', default: false },
      duration: { type: 'string', default: '5' },
      'cpu-quota': { type: 'string' },
    },
  });
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = join(root, 'bench', 'out', `threads-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  await startServer(backendSpec(dir), dir);
  const proxy = values.proxy as ProxyName;
  const spec = proxySpec(proxy, dir, values['access-log'] ? { accessLog: join(dir, 'access.log') } : {});
  const server = await startServer(spec, dir);
  // --cpu-quota F: the proxy (every thread of it) gets at most F of a core, as in a container with a CPU limit
  if (values['cpu-quota'] !== undefined) cgroupDir = limitCpu(server.tracked.pid, Number(values['cpu-quota']));
  const load = { url: `http://127.0.0.1:${PROXY_PORTS[proxy]}${GET_12B.path}`, args: GET_12B.wrkArgs, cpu: LOAD_CPU };
  await runWrk({ ...load, durationS: 1 });
  const before = threadTicks(server.tracked.pid);
  const r = await runWrk({ ...load, durationS: Number(values.duration) });
  const after = threadTicks(server.tracked.pid);
  const us = (ticks: number): string => ((ticks / ticksPerSecond() / r.requests) * 1e6).toFixed(2);
  process.stdout.write(`${proxy}${values['access-log'] ? ' with access log' : ''}: ${Math.round(r.rps)} req/s\n`);
  for (const [k, a] of after) {
    const b = before.get(k) ?? { user: 0, kernel: 0 };
    const du = a.user - b.user;
    const dk = a.kernel - b.kernel;
    if (du + dk > 0) process.stdout.write(`  ${k.padEnd(28)} user ${us(du)} µs/req, kernel ${us(dk)} µs/req\n`);
  }
}

try {
  await main();
} finally {
  await stopAll();
  if (cgroupDir !== null) removeCgroup(cgroupDir);
}
