// How the kernel spreads connections over a proxy's worker processes (part of
// the `workers` figure, bench/workers.ts): SPREAD_CONNECTIONS short connections
// (bench/idle-clients.ts: each serves one GET, then all close) counted per
// worker, from muxgate's admin `GET /stats` (`per_worker[].connections_total`
// before and after) or, for nginx, which has no per-worker counters, from `ss`
// while they are open. Goal: each worker within 10 % of an even split.

import { spawnSync } from 'node:child_process';
import { openIdleClients } from './idle-clients-process.ts';
import { mdTable } from './report.ts';
import { LOAD_CPU } from './servers.ts';

/** connections opened (one GET each, then closed) per round to see how they spread */
export const SPREAD_CONNECTIONS = 1000;
/** max deviation of a worker's share from an even split */
const SPREAD_GOAL = 0.1;

/** A multi-worker server to measure: muxgate with its admin port, or nginx (counted with `ss`). */
export interface SpreadTarget {
  id: string;
  port: number;
  workers: number;
  adminPort?: number;
}

interface WorkerShare {
  pid: number;
  connections_total: number;
}

/** `per_worker` of a multi-worker muxgate's admin `GET /stats`. */
export async function fetchWorkerStats(adminPort: number): Promise<WorkerShare[]> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/stats`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`GET /stats: ${res.status}`);
  const body = (await res.json()) as { per_worker?: WorkerShare[] };
  if (!Array.isArray(body.per_worker)) throw new Error('GET /stats has no per_worker');
  return body.per_worker;
}

/** Connections per owning pid in the output of `ss -Htnp` (one socket per line, `users:(("nginx",pid=N,fd=M))`). */
export function countByPid(ssOutput: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of ssOutput.split('\n')) {
    const pid = /pid=(\d+)/.exec(line)?.[1];
    if (pid !== undefined) counts.set(Number(pid), (counts.get(Number(pid)) ?? 0) + 1);
  }
  return counts;
}

function ssEstablished(port: number): string {
  const r = spawnSync('ss', ['-Htnp', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ss failed: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout;
}

export interface SpreadRun {
  round: number;
  variant: string;
  ok: boolean;
  failure?: string;
  /** connections per worker pid */
  perWorker?: Record<string, number>;
  /** how they were counted */
  source?: string;
}

/** Opens SPREAD_CONNECTIONS short connections and counts them per worker; never throws. */
export async function measureSpread(round: number, v: SpreadTarget): Promise<SpreadRun> {
  const base = { round, variant: v.id };
  try {
    const before = v.adminPort === undefined ? undefined : await fetchWorkerStats(v.adminPort);
    const clients = await openIdleClients({ port: v.port, count: SPREAD_CONNECTIONS, cpu: LOAD_CPU });
    let perWorker: Map<number, number>;
    let source: string;
    try {
      if (before === undefined) {
        perWorker = countByPid(ssEstablished(v.port));
        source = '`ss -tnp` while open';
      } else {
        perWorker = new Map();
        for (const w of await fetchWorkerStats(v.adminPort!)) {
          const was = before.find((b) => b.pid === w.pid)?.connections_total ?? 0;
          perWorker.set(w.pid, w.connections_total - was);
        }
        source = 'admin /stats per_worker connections_total';
      }
    } finally {
      await clients.close();
    }
    if (clients.ready.failed) {
      return {
        ...base,
        ok: false,
        failure: `${clients.ready.failed} connections failed: ${clients.ready.errors.join('; ')}`,
      };
    }
    return { ...base, ok: true, perWorker: Object.fromEntries(perWorker), source };
  } catch (err) {
    return { ...base, ok: false, failure: (err as Error).message.slice(0, 500) };
  }
}

/** Each count's share of the total, and the largest relative deviation from total / workers. */
export function spreadOf(counts: readonly number[]): { shares: number[]; maxDeviation: number } | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (counts.length === 0 || total === 0) return undefined;
  const even = total / counts.length;
  return {
    shares: counts.map((c) => c / total),
    maxDeviation: Math.max(...counts.map((c) => Math.abs(c - even) / even)),
  };
}

export function spreadConsoleLine(r: SpreadRun): string {
  const head = `${String(r.round).padEnd(6)}${r.variant.padEnd(12)}`;
  if (!r.ok || !r.perWorker) return `${head}spread FAILED: ${r.failure ?? 'unknown'}`;
  const counts = Object.values(r.perWorker);
  const s = spreadOf(counts);
  return `${head}spread of ${SPREAD_CONNECTIONS} connections: ${counts.join(' / ')}${s ? ` (max deviation ${(s.maxDeviation * 100).toFixed(1)} %)` : ''}`;
}

/** The spread table of the `workers` section (rounds summed per worker pid). */
export function renderSpread(spread: readonly SpreadRun[], targets: readonly SpreadTarget[]): string[] {
  const out: string[] = [];
  const spreadRows: string[][] = [];
  for (const v of targets) {
    const all = spread.filter((r) => r.variant === v.id);
    if (all.length === 0) continue;
    const ok = all.filter((r) => r.ok && r.perWorker);
    // sum over rounds per worker pid (a restarted worker would show up as one more pid)
    const total = new Map<string, number>();
    for (const r of ok) for (const [pid, n] of Object.entries(r.perWorker!)) total.set(pid, (total.get(pid) ?? 0) + n);
    const counts = [...total.values()];
    const s = spreadOf(counts);
    const notes: string[] = [];
    if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} rounds failed`);
    if (total.size !== v.workers) notes.push(`⚠ ${total.size} worker pids seen, ${v.workers} expected`);
    spreadRows.push([
      v.id,
      String(counts.reduce((a, b) => a + b, 0)),
      s
        ? [...total]
            .map(([pid, n]) => `pid ${pid}: ${n} (${((n / counts.reduce((a, b) => a + b, 0)) * 100).toFixed(1)} %)`)
            .join(', ')
        : '–',
      s ? `${(s.maxDeviation * 100).toFixed(1)} %` : '–',
      s ? (s.maxDeviation <= SPREAD_GOAL ? 'yes' : 'no') : '–',
      ok[0]?.source ?? '–',
      notes.join('; ') || 'none',
    ]);
  }
  if (spreadRows.length) {
    out.push(
      `Connection spread over the workers (${SPREAD_CONNECTIONS.toLocaleString('en-US')} connections per round; max deviation = largest |worker's count − even share| ÷ even share):`,
      '',
      mdTable(
        [
          'variant',
          'connections',
          'per worker',
          'max deviation',
          `within ${SPREAD_GOAL * 100} %`,
          'counted from',
          'notes',
        ],
        spreadRows,
        ['l', 'r', 'l', 'r', 'l', 'l', 'l'],
      ),
      '',
    );
  }
  return out;
}
