import { applyPurge, type PurgeCommand, type PurgeResult } from '../cache/cache-purge.ts';
import { applyEndpointCommand, type CommandResult, type EndpointCommand } from '../cluster/endpoint-command.ts';
import type { MuxgateServer } from './server.ts';

/** A runtime change from the admin API, applied by the process that serves traffic (each worker). */
export type AdminCommand = EndpointCommand | PurgeCommand;
export type AdminResult = CommandResult | PurgeResult;

export function applyAdminCommand(server: MuxgateServer, cmd: AdminCommand): AdminResult {
  return cmd.op === 'purge' ? applyPurge(server.cacheZones, cmd) : applyEndpointCommand(server.clusters, cmd);
}

/** Several workers' answers to one command: purges add up; otherwise the first refusal, else success. */
export function combineResults(cmd: AdminCommand, results: AdminResult[]): AdminResult {
  if (cmd.op === 'purge') {
    let purged = 0;
    for (const r of results) {
      if (!r.ok) return r;
      purged += 'purged' in r ? r.purged : 0;
    }
    return { ok: true, purged };
  }
  return results.find((r) => !r.ok) ?? results[0] ?? { ok: false, error: 'unknown_cluster' };
}
