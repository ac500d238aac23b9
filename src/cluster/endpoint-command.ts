import type { Cluster } from './cluster.ts';

/** A runtime change to one endpoint, from the admin API (`POST /clusters/C/endpoints/E/...`). */
export type EndpointCommand =
  | { op: 'weight'; cluster: string; endpoint: string; weight: number }
  | { op: 'drain'; cluster: string; endpoint: string; drained: boolean };

export type CommandResult = { ok: true } | { ok: false; error: 'unknown_cluster' | 'unknown_endpoint' };

/**
 * Applies a command to the running clusters. It lasts until a restart, or a reload that changes the
 * cluster's config (which sets weights from the file again).
 */
export function applyEndpointCommand(clusters: ReadonlyMap<string, Cluster>, cmd: EndpointCommand): CommandResult {
  const cluster = clusters.get(cmd.cluster);
  if (cluster === undefined) return { ok: false, error: 'unknown_cluster' };
  const found =
    cmd.op === 'weight' ? cluster.setWeight(cmd.endpoint, cmd.weight) : cluster.setDrained(cmd.endpoint, cmd.drained);
  return found ? { ok: true } : { ok: false, error: 'unknown_endpoint' };
}
