import { Counter, Gauge, Registry } from 'prom-client';
import type { HistogramSnapshot } from '../core/duration-histogram.ts';
import type { StatsSnapshot } from './stats-snapshot.ts';

/**
 * `GET /metrics`: the stats snapshot (already summed over workers by the primary) in the Prometheus
 * text format. Nothing on the data path is updated twice for it: every family reads counters the
 * data path keeps anyway, at scrape time, through prom-client's `collect` hooks. A counter's
 * `collect` resets it and sets it to the snapshot's total, so a label set that is gone (an endpoint
 * removed) disappears instead of freezing.
 *
 * Labels stay low-cardinality: listener, cluster, endpoint (host:port), protocol, code, source,
 * destination, state. Never a path or a client address.
 */
type Labels = Record<string, string>;
type Sample = readonly [Labels, number];

/** One metric family: how to read its samples off a snapshot. */
interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: readonly string[];
  samples(s: StatsSnapshot): Iterable<Sample>;
}

/** Every endpoint with its labels. */
function* endpoints(s: StatsSnapshot) {
  for (const c of s.clusters) for (const e of c.endpoints) yield { l: { cluster: c.name, endpoint: e.key }, e };
}

const FAMILIES: readonly Family[] = [
  {
    name: 'muxgate_circuit_open_total',
    help: 'Requests and tunnels refused with 503 circuit_open, by cluster and the breaker that was at its limit.',
    type: 'counter',
    labelNames: ['cluster', 'breaker'],
    *samples(s) {
      for (const c of s.clusters)
        for (const [breaker, n] of Object.entries(c.circuit_open)) yield [{ cluster: c.name, breaker }, n];
    },
  },
  {
    name: 'muxgate_retries_total',
    help: "Requests sent again after a failed attempt (a route's retry:), by cluster.",
    type: 'counter',
    labelNames: ['cluster'],
    *samples(s) {
      for (const c of s.clusters) yield [{ cluster: c.name }, c.retries];
    },
  },
  {
    name: 'muxgate_retries_skipped_total',
    help: 'Retries a route allowed that did not happen, by cluster and reason (attempts, not_idempotent, body_incomplete, body_too_large, budget, circuit_open).',
    type: 'counter',
    labelNames: ['cluster', 'reason'],
    *samples(s) {
      for (const c of s.clusters)
        for (const [reason, n] of Object.entries(c.retries_skipped)) yield [{ cluster: c.name, reason }, n];
    },
  },
  {
    name: 'muxgate_endpoint_ejections_total',
    help: 'Outlier ejections of each endpoint so far (each lasts base_ejection_time times this count, capped).',
    type: 'counter',
    labelNames: ['cluster', 'endpoint'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) yield [l, e.ejections];
    },
  },
  {
    name: 'muxgate_endpoint_ejections_refused_total',
    help: 'Outlier ejections not made because max_ejection_percent of the endpoints were out, by cluster.',
    type: 'counter',
    labelNames: ['cluster'],
    *samples(s) {
      for (const c of s.clusters) yield [{ cluster: c.name }, c.ejections_refused];
    },
  },
  {
    name: 'muxgate_access_log_lines_total',
    help: 'Access log lines, by outcome: written, lost (write error or a destination that does not keep up), skipped (errors_only or sampling).',
    type: 'counter',
    labelNames: ['outcome'],
    *samples(s) {
      const a = s.access_log;
      if (a === null) return;
      yield [{ outcome: 'written' }, a.lines_written];
      yield [{ outcome: 'lost' }, a.lines_lost];
      yield [{ outcome: 'skipped' }, a.lines_skipped];
    },
  },
  {
    name: 'muxgate_requests_total',
    help: 'Requests received, by listener.',
    type: 'counter',
    labelNames: ['listener'],
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name }, l.requests];
    },
  },
  {
    name: 'muxgate_errors_total',
    help: 'Requests and connections that ended with an error, by listener and stable error code.',
    type: 'counter',
    labelNames: ['listener', 'code'],
    *samples(s) {
      for (const l of s.listeners)
        for (const [code, n] of Object.entries(l.error_codes)) yield [{ listener: l.name, code }, n];
    },
  },
  {
    name: 'muxgate_downstream_connections',
    help: 'Open client connections, by listener and the protocol the listener is configured for.',
    type: 'gauge',
    labelNames: ['listener', 'protocol'],
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name, protocol: l.protocol }, l.connections_open];
    },
  },
  {
    name: 'muxgate_downstream_connections_total',
    help: 'Client connections accepted, by listener.',
    type: 'counter',
    labelNames: ['listener'],
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name }, l.connections_total];
    },
  },
  {
    name: 'muxgate_downstream_connections_held',
    help: 'Client connections accepted but held unread at the listener max_connections (the accept queue).',
    type: 'gauge',
    labelNames: ['listener'],
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name }, l.connections_held];
    },
  },
  {
    name: 'muxgate_downstream_connections_held_total',
    help: 'Client connections that had to wait in the accept queue at max_connections.',
    type: 'counter',
    labelNames: ['listener'],
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name }, l.connections_held_total];
    },
  },
  {
    name: 'muxgate_tunnels',
    help:
      'Tunnels that are up, by listener and kind: websocket, upgrade (other Upgrade tokens), connect, ' +
      "connect_udp, tcp (an L4 listener's connections, direct or over HTTP/2).",
    type: 'gauge',
    labelNames: ['listener', 'kind'],
    *samples(s) {
      for (const l of s.listeners)
        for (const [kind, n] of Object.entries(l.tunnels_by_kind)) yield [{ listener: l.name, kind }, n];
    },
  },
  {
    name: 'muxgate_upstream_requests_total',
    help: 'Requests sent to an endpoint.',
    type: 'counter',
    labelNames: ['cluster', 'endpoint'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) yield [l, e.requests];
    },
  },
  {
    name: 'muxgate_upstream_connections',
    help:
      'Upstream connections of an endpoint, by state: idle and busy (HTTP/1.1 pool), h2 and h2_draining ' +
      '(HTTP/2 sessions), connecting (both pools).',
    type: 'gauge',
    labelNames: ['cluster', 'endpoint', 'state'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) {
        yield [{ ...l, state: 'idle' }, e.pool.idle];
        yield [{ ...l, state: 'busy' }, e.pool.busy];
        if (e.h2 !== null) {
          yield [{ ...l, state: 'h2' }, e.h2.sessions - e.h2.draining];
          yield [{ ...l, state: 'h2_draining' }, e.h2.draining];
        }
        yield [{ ...l, state: 'connecting' }, e.pool.connecting + (e.h2?.connecting ?? 0)];
      }
    },
  },
  {
    name: 'muxgate_upstream_streams',
    help: 'Open HTTP/2 streams to an endpoint (requests and tunnels multiplexed on its sessions).',
    type: 'gauge',
    labelNames: ['cluster', 'endpoint'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) if (e.h2 !== null) yield [l, e.h2.streams_active];
    },
  },
  {
    name: 'muxgate_pool_pending',
    help: "Requests waiting in an endpoint's pool queue (both pools).",
    type: 'gauge',
    labelNames: ['cluster', 'endpoint'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) yield [l, e.pool.pending + (e.h2?.pending ?? 0)];
    },
  },
  {
    name: 'muxgate_endpoint_healthy',
    help: '1 when the endpoint is taking traffic, 0 when its health checks failed.',
    type: 'gauge',
    labelNames: ['cluster', 'endpoint'],
    *samples(s) {
      for (const { l, e } of endpoints(s)) yield [l, e.healthy ? 1 : 0];
    },
  },
  {
    name: 'muxgate_port_budget_used_ratio',
    help: 'Share of a (source address, destination) port budget in use or cooling down (TIME_WAIT).',
    type: 'gauge',
    labelNames: ['source', 'destination'],
    *samples(s) {
      for (const b of s.ports.budgets) yield [{ source: b.source, destination: b.destination }, b.used_ratio];
    },
  },
  {
    name: 'muxgate_port_budget_ports',
    help: 'Source ports of a (source address, destination) budget, by state: in_use, cooling, free.',
    type: 'gauge',
    labelNames: ['source', 'destination', 'state'],
    *samples(s) {
      for (const b of s.ports.budgets) {
        const l = { source: b.source, destination: b.destination };
        yield [{ ...l, state: 'in_use' }, b.in_use];
        yield [{ ...l, state: 'cooling' }, b.cooling];
        yield [{ ...l, state: 'free' }, b.free];
      }
    },
  },
  {
    name: 'muxgate_port_budget_exhausted_total',
    help: 'Connections refused because a port budget had no free port.',
    type: 'counter',
    labelNames: [],
    *samples(s) {
      yield [{}, s.ports.exhausted];
    },
  },
  {
    name: 'muxgate_process_resident_memory_bytes',
    help: 'Resident memory of muxgate (with workers: N, the sum over the workers).',
    type: 'gauge',
    labelNames: [],
    *samples(s) {
      yield [{}, s.memory.rss];
    },
  },
  {
    name: 'muxgate_memory_trims_total',
    help: 'Footprint-reducing GCs run once the process was idle after a burst (memory_trim).',
    type: 'counter',
    labelNames: [],
    *samples(s) {
      yield [{}, s.memory.trims];
    },
  },
  {
    name: 'muxgate_cache_requests_total',
    help:
      "Requests on routes with a cache, by zone and outcome: hit, miss, coalesced (served from another request's " +
      'upstream answer), stale (stale-if-error), revalidated (a conditional request sent for a stale object), bypass.',
    type: 'counter',
    labelNames: ['zone', 'outcome'],
    *samples(s) {
      for (const z of s.cache.zones) {
        yield [{ zone: z.name, outcome: 'hit' }, z.hits];
        yield [{ zone: z.name, outcome: 'miss' }, z.misses];
        yield [{ zone: z.name, outcome: 'coalesced' }, z.coalesced];
        yield [{ zone: z.name, outcome: 'stale' }, z.stale_served];
        yield [{ zone: z.name, outcome: 'revalidated' }, z.revalidations];
        yield [{ zone: z.name, outcome: 'bypass' }, z.bypassed];
      }
    },
  },
  {
    name: 'muxgate_cache_objects',
    help: 'Objects stored in a cache zone.',
    type: 'gauge',
    labelNames: ['zone'],
    *samples(s) {
      for (const z of s.cache.zones) yield [{ zone: z.name }, z.objects];
    },
  },
  {
    name: 'muxgate_cache_bytes',
    help: 'Bytes stored in a cache zone (bodies, fields and a fixed share per object), against max_bytes.',
    type: 'gauge',
    labelNames: ['zone', 'state'],
    *samples(s) {
      for (const z of s.cache.zones) {
        yield [{ zone: z.name, state: 'stored' }, z.bytes];
        yield [{ zone: z.name, state: 'max' }, z.max_bytes];
      }
    },
  },
  {
    name: 'muxgate_cache_removals_total',
    help: 'Objects a cache zone let go, by reason: evicted (to stay within max_bytes), purged (admin API, unsafe methods).',
    type: 'counter',
    labelNames: ['zone', 'reason'],
    *samples(s) {
      for (const z of s.cache.zones) {
        yield [{ zone: z.name, reason: 'evicted' }, z.evictions];
        yield [{ zone: z.name, reason: 'purged' }, z.purged];
      }
    },
  },
  {
    name: 'muxgate_cache_stores_total',
    help: 'Responses stored in a cache zone.',
    type: 'counter',
    labelNames: ['zone'],
    *samples(s) {
      for (const z of s.cache.zones) yield [{ zone: z.name }, z.stores];
    },
  },
];

/** A histogram family: the data path keeps the bucket counts; they are read at scrape time like the rest. */
interface HistogramFamily {
  name: string;
  help: string;
  samples(s: StatsSnapshot): Iterable<readonly [Labels, HistogramSnapshot]>;
}

const HISTOGRAMS: readonly HistogramFamily[] = [
  {
    name: 'muxgate_request_duration_seconds',
    help: 'Request durations, from the head read to the response relayed (or the error answered), by listener.',
    *samples(s) {
      for (const l of s.listeners) yield [{ listener: l.name }, l.request_duration];
    },
  },
  {
    name: 'muxgate_pool_wait_seconds',
    help: "Time requests waited for a connection or a stream slot of an endpoint's pools.",
    *samples(s) {
      for (const { l, e } of endpoints(s)) yield [l, e.pool_wait];
    },
  },
];

/** One histogram's series in prom-client's value format: cumulative `_bucket`s, `_sum`, `_count`. */
function histogramValues(name: string, labels: Labels, h: HistogramSnapshot) {
  const out: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
  let cumulative = 0;
  for (let i = 0; i < h.counts.length; i++) {
    cumulative += h.counts[i]!;
    const le = i < h.bounds_s.length ? h.bounds_s[i]! : '+Inf';
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative });
  }
  out.push({ metricName: `${name}_sum`, labels, value: h.sum_s });
  out.push({ metricName: `${name}_count`, labels, value: cumulative });
  return out;
}

export class MetricsExporter {
  readonly registry = new Registry();
  /** The snapshot being exported (set right before each scrape renders). */
  private snap: StatsSnapshot | null = null;
  private last: Promise<unknown> = Promise.resolve();

  constructor() {
    /** Empties `m` and puts the family's samples from the snapshot being rendered (a counter by `inc` from 0). */
    const fill = (m: { reset(): void }, f: Family, put: (l: Labels, v: number) => void): void => {
      m.reset();
      if (this.snap !== null) for (const [l, v] of f.samples(this.snap)) put(l, v);
    };
    for (const f of FAMILIES) {
      const base = { name: f.name, help: f.help, labelNames: f.labelNames, registers: [this.registry] };
      if (f.type === 'counter')
        new Counter({
          ...base,
          collect() {
            fill(this, f, (l, v) => this.inc(l, v));
          },
        });
      else
        new Gauge({
          ...base,
          collect() {
            fill(this, f, (l, v) => this.set(l, v));
          },
        });
    }
    // prom-client's Histogram can only be fed observations; these buckets are already counted, so the
    // registry gets a metric object of its own that answers get() in the same value format.
    for (const f of HISTOGRAMS) {
      const metric = {
        name: f.name,
        help: f.help,
        type: 'histogram',
        aggregator: 'sum',
        get: async () => {
          const values = [];
          if (this.snap !== null)
            for (const [l, h] of f.samples(this.snap)) values.push(...histogramValues(f.name, l, h));
          return { name: f.name, help: f.help, type: 'histogram', aggregator: 'sum', values };
        },
        reset() {},
      };
      this.registry.registerMetric(metric as unknown as Gauge);
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition of `snap`; scrapes one at a time (the collect hooks read `this.snap`). */
  render(snap: StatsSnapshot): Promise<string> {
    const out = this.last.then(async () => {
      this.snap = snap;
      try {
        return await this.registry.metrics();
      } finally {
        this.snap = null;
      }
    });
    this.last = out.catch(() => undefined);
    return out;
  }
}
