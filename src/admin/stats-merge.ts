import {
  type AccessLogSnapshot,
  type CacheZoneSnapshot,
  type ClusterSnapshot,
  type EndpointSnapshot,
  type ListenerSnapshot,
  type PortBudgetSnapshot,
  type StatsSnapshot,
  usedRatio,
} from './stats-snapshot.ts';
import { addHistogram } from '../core/duration-histogram.ts';

export interface WorkerShare {
  pid: number;
  connections_open: number;
  connections_total: number;
  requests: number;
}

/** Sums per-worker snapshots into one (counters add; names and addresses are shared). */
export function mergeSnapshots(
  parts: readonly StatsSnapshot[],
): StatsSnapshot & { workers: number[]; per_worker: WorkerShare[] } {
  const listeners = new Map<string, ListenerSnapshot>();
  const clusters = new Map<string, ClusterSnapshot>();
  const budgets = new Map<string, PortBudgetSnapshot>();
  let exhausted = 0;
  for (const p of parts) {
    exhausted += p.ports.exhausted;
    for (const b of p.ports.budgets) {
      const key = `${b.source}>${b.destination}`;
      const m = budgets.get(key);
      if (m === undefined) {
        budgets.set(key, { ...b });
        continue;
      }
      m.in_use += b.in_use;
      m.cooling += b.cooling;
      m.warn_ratio = Math.min(m.warn_ratio, b.warn_ratio);
      if (b.source === 'kernel') {
        // One kernel range shared by every worker.
        m.free = Math.max(0, m.size - m.in_use);
      } else {
        // Each worker manages its own slice of the range: the slices add up to the whole.
        m.size += b.size;
        m.free += b.free;
        m.range = spanOf(m.range, b.range);
      }
      m.used_ratio = usedRatio(m);
    }
    for (const l of p.listeners) {
      const m = listeners.get(l.name);
      if (m === undefined) listeners.set(l.name, structuredClone(l));
      else {
        addInto(m, l);
        addHistogram(m.request_duration, l.request_duration);
      }
    }
    for (const c of p.clusters) {
      const m = clusters.get(c.name);
      if (m === undefined) {
        clusters.set(c.name, structuredClone(c));
        continue;
      }
      addInto(m, c);
      for (const e of c.endpoints) {
        const me = m.endpoints.find((x) => x.key === e.key);
        if (me === undefined) m.endpoints.push(structuredClone(e));
        else mergeEndpoint(me, e);
      }
    }
  }
  return {
    pid: process.pid,
    uptime_s: parts[0]?.uptime_s ?? 0,
    memory: {
      rss: sumMemory(parts, 'rss'),
      heap_total: sumMemory(parts, 'heap_total'),
      heap_used: sumMemory(parts, 'heap_used'),
      external: sumMemory(parts, 'external'),
      trims: sumMemory(parts, 'trims'),
      trim_last_pause_ms: Math.max(0, ...parts.map((p) => p.memory.trim_last_pause_ms)),
    },
    workers: parts.map((p) => p.pid),
    // How evenly the kernel spreads connections over SO_REUSEPORT workers.
    per_worker: parts.map((p) => ({
      pid: p.pid,
      connections_open: sum(p.listeners, 'connections_open'),
      connections_total: sum(p.listeners, 'connections_total'),
      requests: sum(p.listeners, 'requests'),
    })),
    listeners: [...listeners.values()],
    clusters: [...clusters.values()],
    ports: { exhausted, budgets: [...budgets.values()] },
    access_log: sumAccessLogs(parts),
    cache: { zones: sumZones(parts) },
  };
}

/** Each worker has its own zones of the same names: counts add up (max_bytes too: each may fill its own). */
function sumZones(parts: readonly StatsSnapshot[]): CacheZoneSnapshot[] {
  const zones = new Map<string, CacheZoneSnapshot>();
  for (const p of parts) {
    for (const z of p.cache.zones) {
      const m = zones.get(z.name);
      if (m === undefined) zones.set(z.name, { ...z });
      else addInto(m, z);
    }
  }
  return [...zones.values()];
}

function sumAccessLogs(parts: readonly StatsSnapshot[]): AccessLogSnapshot | null {
  let total: AccessLogSnapshot | null = null;
  for (const p of parts) {
    const a = p.access_log;
    if (a === null) continue;
    if (total === null) total = { ...a };
    else {
      total.lines_written += a.lines_written;
      total.lines_lost += a.lines_lost;
      total.lines_skipped += a.lines_skipped;
      total.write_errors += a.write_errors;
    }
  }
  return total;
}

/** "100-199" and "200-299" -> "100-299". */
function spanOf(a: string, b: string): string {
  const [a1 = 0, a2 = 0] = a.split('-').map(Number);
  const [b1 = 0, b2 = 0] = b.split('-').map(Number);
  return `${Math.min(a1, b1)}-${Math.max(a2, b2)}`;
}

function mergeEndpoint(into: EndpointSnapshot, e: EndpointSnapshot): void {
  into.healthy &&= e.healthy;
  into.drained ||= e.drained;
  into.ejected ||= e.ejected;
  if (into.health_check !== null && e.health_check !== null) {
    // Each worker checks on its own: unhealthy if any worker says so, its reason kept.
    if (!e.health_check.healthy) {
      into.health_check.healthy = false;
      into.health_check.last_error ??= e.health_check.last_error;
    }
    into.health_check.checks += e.health_check.checks;
    into.health_check.failures_in_a_row = Math.max(
      into.health_check.failures_in_a_row,
      e.health_check.failures_in_a_row,
    );
  }
  into.active += e.active;
  into.requests += e.requests;
  into.errors += e.errors;
  addInto(into.pool, e.pool);
  addHistogram(into.pool_wait, e.pool_wait);
  if (into.h2 !== null && e.h2 !== null) {
    addInto(into.h2, e.h2);
    into.h2.fell_back ||= e.h2.fell_back;
  }
}

/** A map of names to numbers (not a histogram, whose bounds are an array, nor a nested record). */
function isCounts(v: unknown): v is Record<string, number> {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'number')
  );
}

/** Adds every numeric field (and every map of counts) of `b` into `a`. */
function addInto(a: object, b: object): void {
  const ar = a as Record<string, unknown>;
  for (const [k, v] of Object.entries(b)) {
    if (typeof v === 'number' && typeof ar[k] === 'number') ar[k] = (ar[k] as number) + v;
    else if (isCounts(v) && isCounts(ar[k])) {
      // Counts by name (error codes, tunnel kinds, breakers): summed name by name.
      const codes = ar[k] as Record<string, number>;
      for (const [code, n] of Object.entries(v)) codes[code] = (codes[code] ?? 0) + n;
    }
  }
}

function sum(ls: readonly ListenerSnapshot[], k: 'connections_open' | 'connections_total' | 'requests'): number {
  let n = 0;
  for (const l of ls) n += l[k];
  return n;
}

function sumMemory(parts: readonly StatsSnapshot[], k: keyof StatsSnapshot['memory']): number {
  let n = 0;
  for (const p of parts) n += p.memory[k];
  return n;
}
