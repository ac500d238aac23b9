import { performance } from 'node:perf_hooks';
import { type HistogramSnapshot, histogramSnapshot } from '../core/duration-histogram.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { AccessLog } from '../core/access-log.ts';
import type { HttpListener } from '../listener/http-listener.ts';
import type { TcpListener } from '../listener/tcp-listener.ts';
import type { H2Pool } from '../pool/h2-pool.ts';
import { type PoolCounters, poolCounters } from '../pool/upstream-pool.ts';
import type { BudgetFigures, PortAllocator } from '../ports/port-allocator.ts';
import type { MemoryTrimCounters } from '../core/memory-trim.ts';
import type { CacheZone, ZoneCounters } from '../cache/cache-zone.ts';

/**
 * The stats snapshot: a plain JSON view of counters the data path keeps on its own objects. Building
 * it only reads; admin and metrics code get the snapshot, never the live objects.
 */
export interface StatsSnapshot {
  pid: number;
  uptime_s: number;
  /** process.memoryUsage() in bytes: rss, heap_total, heap_used, external; and the memory trims (runtime/memory-trim.ts). */
  memory: MemorySnapshot;
  listeners: ListenerSnapshot[];
  clusters: ClusterSnapshot[];
  /**
   * The source port budget: per (source IP, destination), ports in use / cooling / free. `source`
   * "kernel" counts connections whose port the kernel picks (clusters without source_addresses).
   */
  ports: { exhausted: number; budgets: PortBudgetSnapshot[] };
  /** The access log's lines: written, lost (write errors, a destination that does not keep up), skipped (sampling). Null when off. */
  access_log: AccessLogSnapshot | null;
  /** The cache zones: what they hold and how requests fared (summed over workers, each with its own zones). */
  cache: { zones: CacheZoneSnapshot[] };
}

export interface CacheZoneSnapshot extends ZoneCounters {
  name: string;
  objects: number;
  bytes: number;
  max_bytes: number;
  /** Misses being fetched now (each with the requests coalesced onto it). */
  inflight: number;
}

export interface MemorySnapshot {
  rss: number;
  heap_total: number;
  heap_used: number;
  external: number;
  /** Footprint-reducing GCs run after bursts (summed over workers). */
  trims: number;
  /** The last trim's pause, ms (the largest over workers). */
  trim_last_pause_ms: number;
}

export interface AccessLogSnapshot {
  lines_written: number;
  lines_lost: number;
  lines_skipped: number;
  write_errors: number;
}

export interface PortBudgetSnapshot extends BudgetFigures {
  /** (in_use + cooling) / size. */
  used_ratio: number;
}

export interface ListenerSnapshot {
  name: string;
  protocol: 'http1' | 'http2' | 'auto' | 'tcp';
  tls: boolean;
  address: string;
  connections_open: number;
  connections_total: number;
  /** Connections held (accepted, unread) at max_connections now, and since start. */
  connections_held: number;
  connections_held_total: number;
  requests: number;
  errors: number;
  error_codes: Record<string, number>;
  bytes_in: number;
  bytes_out: number;
  /** WebSockets and other upgrades, CONNECT and CONNECT-UDP tunnels that are up. */
  tunnels_open: number;
  tunnels_total: number;
  /** Tunnels that are up, by kind (`upgrade`: Upgrade tokens other than websocket; `tcp`: an L4 listener's). */
  tunnels_by_kind: TunnelKinds;
  /** Request durations (head read to response relayed or error answered). */
  request_duration: HistogramSnapshot;
}

export interface TunnelKinds {
  websocket: number;
  upgrade: number;
  connect: number;
  connect_udp: number;
  tcp: number;
}

/** The HTTP/1.1 pool of an endpoint: the counters every pool keeps, then its own. */
export interface PoolSnapshot extends PoolCounters {
  key: string;
  open: number;
  idle: number;
  busy: number;
  reused: number;
}

/** The HTTP/2 session pool of an endpoint (clusters with protocol http2, or auto where ALPN may pick h2). */
export interface H2PoolSnapshot extends PoolCounters {
  /** Connected sessions (draining ones included). */
  sessions: number;
  draining: number;
  streams_active: number;
  streams_total: number;
  /** GOAWAY frames received. */
  goaways: number;
  /** Streams the upstream never processed (REFUSED_STREAM or above a GOAWAY), retried elsewhere. */
  refused_streams: number;
  ping_timeouts: number;
  /** ALPN chose http/1.1 (protocol auto): the endpoint is served by the HTTP/1.1 pool. */
  fell_back: boolean;
}

export interface EndpointSnapshot {
  key: string;
  host: string;
  weight: number;
  healthy: boolean;
  /** Drained through the admin API: no new work. */
  drained: boolean;
  /** Active health checks (null without `health_check`): the verdict, checks run, and the last failure. */
  health_check: { healthy: boolean; checks: number; failures_in_a_row: number; last_error: string | null } | null;
  /** Ejected by passive health (outlier detection). */
  ejected: boolean;
  /** Times ejected so far (each ejection lasts base_ejection_time × this, up to max_ejection_time). */
  ejections: number;
  active: number;
  requests: number;
  errors: number;
  pool: PoolSnapshot;
  h2: H2PoolSnapshot | null;
  /** Time requests waited for a connection or a stream slot (both pools). */
  pool_wait: HistogramSnapshot;
}

export interface ClusterSnapshot {
  name: string;
  lb: string;
  /** The pool cap per endpoint (pool.max_connections), summed over workers: each has its own pools. */
  max_connections: number;
  /** Picks made with no healthy endpoint (outlier.panic). */
  panics: number;
  /** Ejections not made because max_ejection_percent of the endpoints were out. */
  ejections_refused: number;
  /** Requests and tunnels refused with 503 circuit_open, by breaker. */
  circuit_open: { max_requests: number; max_pending: number; max_retries: number; max_connections: number };
  /** Requests sent again after a failed attempt (a route's retry:). */
  retries: number;
  /** Retries a route allowed that did not happen, by reason (attempts, not_idempotent, body_too_large, budget...). */
  retries_skipped: Record<string, number>;
  requests: number;
  errors: number;
  error_codes: Record<string, number>;
  endpoints: EndpointSnapshot[];
}

const startedAt = Date.now();

export function snapshotStats(
  listeners: readonly (HttpListener | TcpListener)[],
  clusters: readonly Cluster[],
  ports: PortAllocator,
  accessLog: AccessLog | null,
  trims: MemoryTrimCounters,
  zones: readonly CacheZone[] = [],
): StatsSnapshot {
  return {
    pid: process.pid,
    uptime_s: Math.round((Date.now() - startedAt) / 1000),
    memory: memory(trims),
    listeners: listeners.map((l) => {
      const s = l.ctx.stats;
      const a = l.address();
      return {
        name: l.ctx.name,
        protocol: l.protocol,
        tls: l.protocol !== 'tcp' && l.tls,
        address: a === null ? '' : a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
        connections_open: s.connectionsOpen,
        connections_total: s.connectionsTotal,
        connections_held: l.gate.heldCount,
        connections_held_total: l.gate.queuedTotal,
        requests: s.requests,
        errors: s.errors,
        error_codes: Object.fromEntries(s.errorCodes),
        bytes_in: s.bytesIn,
        bytes_out: s.bytesOut,
        tunnels_open: s.tunnelsOpen,
        tunnels_total: s.tunnelsTotal,
        tunnels_by_kind: {
          websocket: s.websocketsOpen,
          upgrade: s.otherUpgradesOpen,
          connect: s.connectsOpen,
          connect_udp: s.connectUdpOpen,
          tcp: s.tcpTunnelsOpen,
        },
        request_duration: histogramSnapshot(s.requestDuration),
      };
    }),
    clusters: clusters.map((c) => ({
      name: c.name,
      lb: c.opts.lb,
      max_connections: c.opts.pool.maxConnections,
      panics: c.panics,
      ejections_refused: c.outlier.refused,
      circuit_open: { ...c.breakerTrips },
      retries: c.retries,
      retries_skipped: Object.fromEntries(c.retriesSkipped),
      requests: c.requests,
      errors: c.errors,
      error_codes: Object.fromEntries(c.errorCodes),
      endpoints: c.endpoints.map((e) => {
        const p = e.pool;
        return {
          key: e.key,
          host: e.host,
          weight: e.weight,
          healthy: e.healthy,
          drained: e.drained,
          ejected: e.ejected,
          ejections: e.ejections,
          health_check:
            c.opts.healthCheck === undefined
              ? null
              : {
                  healthy: e.checkedHealthy,
                  checks: e.checksTotal,
                  failures_in_a_row: e.checkFailures,
                  last_error: e.lastCheckError,
                },
          active: e.active,
          requests: e.requests,
          errors: e.errors,
          pool: {
            key: p.key,
            open: p.open,
            idle: p.idleCount,
            busy: p.busy,
            reused: p.reused,
            ...poolCounters(p),
          },
          h2: e.h2 === null ? null : h2Snapshot(e.h2),
          pool_wait: histogramSnapshot(e.poolWait),
        };
      }),
    })),
    ports: {
      exhausted: ports.exhausted,
      budgets: ports.budgets(performance.now()).map((b) => ({ ...b, used_ratio: usedRatio(b) })),
    },
    access_log:
      accessLog === null
        ? null
        : {
            lines_written: accessLog.stats.linesWritten,
            lines_lost: accessLog.stats.linesLost,
            lines_skipped: accessLog.skipped,
            write_errors: accessLog.stats.writeErrors,
          },
    cache: {
      zones: zones.map((z) => ({
        name: z.name,
        objects: z.objects,
        bytes: z.bytes,
        max_bytes: z.maxBytes,
        inflight: z.inflight.size,
        ...z.counters,
      })),
    },
  };
}

function h2Snapshot(p: H2Pool): H2PoolSnapshot {
  return {
    sessions: p.sessions,
    draining: p.drainingCount,
    streams_active: p.streamsActive,
    streams_total: p.streamsTotal,
    ...poolCounters(p),
    goaways: p.goaways,
    refused_streams: p.refusedStreams,
    ping_timeouts: p.pingTimeouts,
    fell_back: p.fellBack,
  };
}

export function usedRatio(b: BudgetFigures): number {
  return b.size === 0 ? 0 : Math.round(((b.in_use + b.cooling) / b.size) * 1000) / 1000;
}

function memory(trims: MemoryTrimCounters): MemorySnapshot {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heap_total: m.heapTotal,
    heap_used: m.heapUsed,
    external: m.external,
    trims: trims.trims,
    trim_last_pause_ms: trims.last_pause_ms,
  };
}
