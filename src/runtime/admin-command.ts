import { applyPurge, type PurgeCommand, type PurgeResult } from '../cache/cache-purge.ts';
import { applyEndpointCommand, type CommandResult, type EndpointCommand } from '../cluster/endpoint-command.ts';
import type { MuxgateServer } from './server.ts';

/** A memory trim now (`POST /memory/trim`): what `memory_trim` does by itself once idle after a burst. */
export type TrimCommand = { op: 'trim' };
export type TrimResult = { ok: true; trimmed: number } | { ok: false; error: 'trim_unavailable' };

/** A runtime change from the admin API, applied by the process that serves traffic (each worker). */
export type AdminCommand = EndpointCommand | PurgeCommand | TrimCommand;
export type AdminResult = CommandResult | PurgeResult | TrimResult;

export function applyAdminCommand(server: MuxgateServer, cmd: AdminCommand): AdminResult {
  if (cmd.op === 'trim')
    return server.memoryTrim.trim() ? { ok: true, trimmed: 1 } : { ok: false, error: 'trim_unavailable' };
  return cmd.op === 'purge' ? applyPurge(server.cacheZones, cmd) : applyEndpointCommand(server.clusters, cmd);
}

/** Several workers' answers to one command: purges and trims add up; otherwise the first refusal, else success. */
export function combineResults(cmd: AdminCommand, results: AdminResult[]): AdminResult {
  if (cmd.op === 'purge' || cmd.op === 'trim') {
    const refused = results.find((r) => !r.ok);
    if (refused !== undefined) return refused;
    let n = 0;
    for (const r of results) n += 'purged' in r ? r.purged : 'trimmed' in r ? r.trimmed : 0;
    return cmd.op === 'purge' ? { ok: true, purged: n } : { ok: true, trimmed: n };
  }
  return results.find((r) => !r.ok) ?? results[0] ?? { ok: false, error: 'unknown_cluster' };
}
