import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterConfig, Config, ListenerConfig } from '../config/schema.ts';
import type { Listener, MuxgateServer } from './server.ts';
import { gateLimits, tcpEdge } from './build-routes.ts';

/** What a reload changed, by name; also what the admin API and `muxgate reload` print. */
export interface ReloadSummary {
  listeners: { added: string[]; removed: string[]; replaced: string[]; kept: string[] };
  clusters: { added: string[]; removed: string[]; replaced: string[]; endpoints_updated: string[]; kept: string[] };
  /** Settings a reload does not apply (a restart does). */
  not_applied: string[];
}

/** Settings read once at start; a reload that changes them says so instead of half-applying them. */
const RESTART_ONLY = ['workers', 'admin', 'access_log', 'reuse_port'] as const;

/** How often a retired cluster is checked for requests still waiting in its queues. */
const RETIRE_CHECK_MS = 500;

/**
 * Applies `next` to a running server, all or nothing:
 * 1. build: new and changed clusters are built and started (DNS), new and changed listeners built and
 *    bound (with SO_REUSEPORT a changed listener binds its address while the old one still accepts).
 *    Any failure closes what was built and rejects: the old config keeps running untouched.
 * 2. swap, synchronously: new requests route through the new clusters; listeners whose own settings
 *    are unchanged stay (their sockets, connections and tunnels untouched) and only get new routes.
 * 3. retire: replaced and removed listeners stop accepting and drain (keep-alive connections close
 *    after their response; tunnels carry on until they end); replaced and removed clusters close
 *    once no request waits in their queues (open connections finish their work, HTTP/2 gets GOAWAY).
 * Clusters whose only change is the endpoint list keep their pools: endpoints that stay keep their
 * connections. Port budgets (one allocator per process) and listener counters (per name) carry over.
 */
export async function applyReload(server: MuxgateServer, next: Config): Promise<ReloadSummary> {
  const prev = server.config;
  const summary: ReloadSummary = {
    listeners: { added: [], removed: [], replaced: [], kept: [] },
    clusters: { added: [], removed: [], replaced: [], endpoints_updated: [], kept: [] },
    not_applied: RESTART_ONLY.filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(next[k])),
  };

  // 1. build (cache zones first: routes are built against them; unchanged zones keep their objects)
  server.cacheZones.configure(next.cache_zones);
  const clusters = new Map<string, Cluster>();
  const built: Cluster[] = [];
  const endpointUpdates: [Cluster, ClusterConfig][] = [];
  const bound: Listener[] = [];
  const abandon = () => {
    for (const l of bound) l.destroyAll();
    for (const c of built) c.close();
  };
  try {
    for (const [name, c] of Object.entries(next.clusters)) {
      const old = server.clusters.get(name);
      const before = prev.clusters[name];
      const change = old === undefined || before === undefined ? 'added' : clusterChange(before, c, prev, next);
      if (old !== undefined && (change === 'kept' || change === 'endpoints_updated')) {
        clusters.set(name, old);
        if (change === 'endpoints_updated') endpointUpdates.push([old, c]);
      } else {
        const cluster = server.buildCluster(name, c, next);
        built.push(cluster);
        clusters.set(name, cluster);
      }
      summary.clusters[change].push(name);
    }
    await Promise.all(built.map((c) => c.start()));

    const listeners: Listener[] = [];
    const reuse = server.reusesPorts(next);
    for (const l of next.listeners) {
      const old = server.listeners.find((x) => x.ctx.name === l.name);
      const before = boundConfig(
        prev.listeners.find((x) => x.name === l.name),
        old,
      );
      // Port 0 on both sides, or the port it got named now: the same address.
      const after = boundConfig(l, old)!;
      if (old !== undefined && before !== undefined && listenerKey(before, prev) === listenerKey(after, next)) {
        listeners.push(old);
        summary.listeners.kept.push(l.name);
        continue;
      }
      const listener = server.buildListener(l, next, clusters);
      // Port 0 means "any port" at start; across a reload the listener keeps the port it has.
      const port = l.address.port === 0 && old !== undefined ? (old.address()?.port ?? 0) : l.address.port;
      try {
        await listener.listen(l.address.host, port, reuse);
      } catch (err) {
        // Not bound: its certificate reload timers and the like still go.
        listener.destroyAll();
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        const hint =
          code === 'EADDRINUSE' && old !== undefined && !reuse
            ? ' (its own settings changed, and with reuse_port: false it cannot be bound again while the old one listens: restart instead)'
            : '';
        throw new Error(`listener ${l.name}: cannot bind ${l.address.host}:${port}: ${code}${hint}`);
      }
      bound.push(listener);
      listeners.push(listener);
      summary.listeners[old === undefined ? 'added' : 'replaced'].push(l.name);
    }
    for (const old of server.listeners) {
      if (!next.listeners.some((l) => l.name === old.ctx.name)) summary.listeners.removed.push(old.ctx.name);
    }
    for (const name of server.clusters.keys()) if (!(name in next.clusters)) summary.clusters.removed.push(name);

    // 2. swap (no await from here on: one turn of the event loop)
    for (const l of listeners) {
      if (bound.includes(l)) continue;
      const cfg = next.listeners.find((x) => x.name === l.ctx.name)!;
      if (l.protocol === 'tcp') {
        if (cfg.protocol === 'tcp') {
          l.ctx.cluster = cfg.cluster === undefined ? null : clusters.get(cfg.cluster)!;
          l.edge = tcpEdge(cfg, clusters);
          l.gate.update(gateLimits(cfg));
        }
      } else if (cfg.protocol !== 'tcp') {
        l.ctx.router = server.router(cfg, next, clusters);
        // Same names (the listener key covers them), the clusters of this config.
        l.passthrough = server.passthrough(cfg, clusters);
        l.gate.update(gateLimits(cfg));
      }
    }
    const oldListeners = server.listeners;
    const oldClusters = server.clusters;
    server.listeners = listeners;
    server.clusters = clusters;
    server.config = next;
    server.memoryTrim.apply(next.memory_trim);

    // 3. retire
    for (const l of oldListeners) {
      if (listeners.includes(l)) continue;
      l.drain();
      server.retiredListeners.push(l);
    }
    for (const [name, c] of oldClusters) if (clusters.get(name) !== c) retireCluster(server, c);
  } catch (err) {
    abandon();
    throw err;
  }
  for (const [cluster, c] of endpointUpdates) {
    // Endpoints that stay keep their pools; DNS names resolve in the background of this reload.
    await cluster.updateEndpoints(c.endpoints);
  }
  pruneRetiredListeners(server);
  return summary;
}

/** How a cluster's config changed: only its endpoint list (pools of endpoints that stay are kept), or more. */
function clusterChange(
  before: ClusterConfig,
  after: ClusterConfig,
  prev: Config,
  next: Config,
): 'kept' | 'endpoints_updated' | 'replaced' {
  // direct_io is read when the pools are built: a change rebuilds them.
  if (prev.direct_io !== next.direct_io) return 'replaced';
  if (JSON.stringify(before) === JSON.stringify(after)) return 'kept';
  const rest = (c: ClusterConfig) => JSON.stringify({ ...c, endpoints: undefined });
  return rest(before) === rest(after) ? 'endpoints_updated' : 'replaced';
}

/**
 * Everything a listener object is built from besides its routes (and an L4 listener's cluster), which
 * a reload swaps in place: when this is unchanged the listener, its socket and its connections stay.
 */
function listenerKey(l: ListenerConfig, cfg: Config): string {
  if (l.protocol === 'tcp') {
    return JSON.stringify({
      ...l,
      cluster: undefined,
      sni_routes: undefined,
      proxy_protocol: undefined,
      // Read from the cluster when the listener is built.
      connect_timeout: cfg.clusters[l.cluster ?? '']?.pool.connect_timeout,
    });
  }
  return JSON.stringify({
    ...l,
    routes: undefined,
    // The HTTP/2 SETTINGS a listener advertises depend on whether any route takes WebSockets.
    websocket: l.routes.some((r) => r.upgrades?.includes('websocket') === true),
    via: cfg.via,
    trusted_proxies: l.trusted_proxies ?? cfg.trusted_proxies,
    direct_io: cfg.direct_io,
  });
}

/** A listener's config with port 0 replaced by the port it got: naming that port later is no change. */
function boundConfig(l: ListenerConfig | undefined, live: Listener | undefined): ListenerConfig | undefined {
  if (l === undefined || live === undefined || l.address.port !== 0) return l;
  const port = live.address()?.port;
  return port === undefined ? l : { ...l, address: { ...l.address, port } };
}

/** Closes a replaced or removed cluster once nothing waits in its queues (open work finishes). */
function retireCluster(server: MuxgateServer, c: Cluster): void {
  server.retiredClusters.push(c);
  const check = () => {
    if (c.pending > 0) {
      setTimeout(check, RETIRE_CHECK_MS).unref();
      return;
    }
    c.close();
    const i = server.retiredClusters.indexOf(c);
    if (i !== -1) server.retiredClusters.splice(i, 1);
  };
  check();
}

/** Forgets retired listeners whose last connection has ended. */
export function pruneRetiredListeners(server: MuxgateServer): void {
  const r = server.retiredListeners;
  for (let i = r.length - 1; i >= 0; i--) if (r[i]!.connections === 0) r.splice(i, 1);
}
