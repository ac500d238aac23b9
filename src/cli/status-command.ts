import type { StatsSnapshot } from '../admin/stats-snapshot.ts';
import type { Config } from '../config/schema.ts';
import { adminRequest, adminTarget } from './admin-client.ts';

/** `muxgate status -c FILE`: GET /stats from the muxgate running FILE, printed on one screen. */
export async function statusCommand(
  config: Config,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const target = adminTarget(config);
  if (typeof target === 'string') {
    err.write(`muxgate status: ${target}\n`);
    return 1;
  }
  try {
    const r = await adminRequest(target, 'GET', '/stats');
    if (r.status !== 200) {
      err.write(`muxgate status: ${target.base}/stats answered ${r.status}: ${JSON.stringify(r.body)}\n`);
      return 1;
    }
    out.write(formatStatus(r.body as StatsSnapshot));
    return 0;
  } catch (e) {
    err.write(`muxgate status: cannot reach the admin API at ${target.base}: ${(e as Error).message}\n`);
    return 1;
  }
}

const pct = (part: number, whole: number) => (whole === 0 ? '0%' : `${Math.round((100 * part) / whole)}%`);

/** The summary: one line per listener, endpoint and port budget. */
export function formatStatus(s: StatsSnapshot & { workers?: number[] }): string {
  const lines: string[] = [];
  const workers = s.workers === undefined ? '' : `, ${s.workers.length} workers`;
  lines.push(`muxgate pid ${s.pid}, up ${s.uptime_s} s${workers}, rss ${(s.memory.rss / 2 ** 20).toFixed(1)} MiB`);
  lines.push('', 'listeners');
  for (const l of s.listeners) {
    const t = l.tunnels_by_kind;
    const tunnels = Object.entries(t)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    lines.push(
      `  ${l.name.padEnd(14)} ${l.protocol.padEnd(5)} ${l.address.padEnd(22)} conns ${String(l.connections_open).padStart(6)}  ` +
        `requests ${l.requests}  errors ${l.errors}${tunnels === '' ? '' : `  tunnels: ${tunnels}`}`,
    );
  }
  lines.push('', 'clusters');
  for (const c of s.clusters) {
    lines.push(`  ${c.name} (${c.lb}, max ${c.max_connections} connections per endpoint)`);
    for (const e of c.endpoints) {
      const open = e.pool.open + (e.h2?.sessions ?? 0);
      const state = e.drained ? 'drained' : e.healthy ? 'healthy' : e.ejected ? 'EJECTED' : 'FAILING';
      const h2 = e.h2 === null ? '' : `  h2 sessions ${e.h2.sessions} streams ${e.h2.streams_active}`;
      lines.push(
        `    ${e.key.padEnd(22)} ${state.padEnd(8)} w${String(e.weight).padEnd(4)} conns ${open}/${c.max_connections} (${pct(open, c.max_connections)})` +
          `  pending ${e.pool.pending + (e.h2?.pending ?? 0)}${h2}  requests ${e.requests}  errors ${e.errors}` +
          (e.health_check?.last_error ? `  (check: ${e.health_check.last_error})` : ''),
      );
    }
  }
  lines.push('', 'port budgets (source -> destination)');
  if (s.ports.budgets.length === 0) lines.push('  none yet');
  for (const b of s.ports.budgets) {
    const warn = b.used_ratio >= 0.95 ? '  EXHAUSTED SOON' : b.used_ratio >= 0.8 ? '  LOW' : '';
    lines.push(
      `  ${`${b.source} -> ${b.destination}`.padEnd(40)} used ${String(b.in_use).padStart(6)} cooling ${String(b.cooling).padStart(6)} ` +
        `free ${String(b.free).padStart(6)} of ${b.size} (${pct(b.in_use + b.cooling, b.size)})${warn}`,
    );
  }
  if (s.ports.exhausted > 0) lines.push(`  exhausted ${s.ports.exhausted} times since start`);
  return `${lines.join('\n')}\n`;
}
