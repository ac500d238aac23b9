// CPU profile of muxgate's hot path under load:
//   npm run bench:profile -- [--scenario get-12b] [--duration 10] [--upstream http1|http2] [--access-log]
// (`--upstream http2`: muxgate reaches the backend over h2c, as in the h2-upstream figure).
// Starts the nginx backend and muxgate (with --cpu-prof) pinned as in `npm run bench`, loads it with wrk,
// stops muxgate so V8 writes the profile, and prints the functions with the most self time.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stopAll, stopTracked } from './procs.ts';
import { scenarios } from './scenarios.ts';
import {
  BACKEND_H2C_PORT,
  BACKEND_PORT,
  backendSpec,
  LOAD_CPU,
  PROXY_PORTS,
  proxySpec,
  startServer,
} from './servers.ts';
import { runWrk } from './wrk.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  name: string;
  where: string;
  selfPct: number;
}

/** Self time per function (summed over call sites), highest first. */
export function topFunctions(profile: CpuProfile, n: number): HotFunction[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const f = byId.get(id)?.callFrame;
    if (f === undefined) return;
    const file = f.url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/').replace(/^node:/, 'node:');
    const key = `${f.functionName || '(anonymous)'}\t${file}${file ? `:${f.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => {
      const [name = '', where = ''] = k.split('\t');
      return { name, where, selfPct: (100 * v) / total };
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'get-12b' },
      duration: { type: 'string', default: '10' },
      upstream: { type: 'string', default: 'http1' },
      'access-log': { type: 'boolean', default: false },
    },
  });
  const scenario = scenarios.find((s) => s.name === values.scenario);
  if (scenario === undefined) throw new Error(`unknown scenario ${values.scenario}`);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = join(root, 'bench', 'out', `profile-${Date.now()}`);
  const profDir = join(dir, 'prof');
  mkdirSync(profDir, { recursive: true });
  const upstream = values.upstream;
  if (upstream !== 'http1' && upstream !== 'http2') throw new Error(`--upstream: http1 or http2, not ${upstream}`);
  const h2c = upstream === 'http2';
  const backend = await startServer(backendSpec(dir, h2c ? BACKEND_H2C_PORT : undefined), dir);
  const spec = proxySpec('muxgate', dir, {
    upstreamProtocol: upstream,
    backendPort: h2c ? BACKEND_H2C_PORT : BACKEND_PORT,
    // --access-log: muxgate's default access log to a file in the run directory (the access-log figure's setup)
    accessLog: values['access-log'] ? join(dir, 'access.log') : undefined,
  });
  spec.args = ['--cpu-prof', '--cpu-prof-dir', profDir, ...spec.args];
  const mux = await startServer(spec, dir);
  try {
    const url = `http://127.0.0.1:${PROXY_PORTS.muxgate}${scenario.path}`;
    const load = { url, args: scenario.wrkArgs, script: scenario.script, cpu: LOAD_CPU };
    await runWrk({ ...load, durationS: 1 });
    const r = await runWrk({ ...load, durationS: Number(values.duration) });
    await stopTracked(mux.tracked);
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error('muxgate wrote no .cpuprofile');
    const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile;
    process.stdout.write(
      `${scenario.name}: ${Math.round(r.rps)} req/s under --cpu-prof (backend :${h2c ? `${BACKEND_H2C_PORT} over h2c` : BACKEND_PORT})\n\n`,
    );
    process.stdout.write('| self % | function | where |\n|---:|:---|:---|\n');
    for (const f of topFunctions(profile, 25)) {
      process.stdout.write(`| ${f.selfPct.toFixed(1)} | \`${f.name}\` | ${f.where} |\n`);
    }
  } finally {
    await stopTracked(backend.tracked);
    await stopAll();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
