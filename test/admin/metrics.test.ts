/**
 * `GET /metrics`: the Prometheus text format of the stats snapshot. A crafted snapshot checks each
 * family's name, type, labels and value, and that a label set gone from the snapshot (an endpoint
 * removed) leaves the exposition instead of freezing. Then a real muxgate: requests through an
 * HTTP/1.1 listener and an error, scraped with curl, agree with `/stats` read right after.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MetricsExporter } from '../../src/admin/metrics.ts';
import { DurationHistogram, histogramSnapshot } from '../../src/core/duration-histogram.ts';
import type { StatsSnapshot } from '../../src/admin/stats-snapshot.ts';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';

const run = promisify(execFile);

/** `name{labels} value` lines into a map; TYPE lines into another. */
function parse(text: string): { values: Map<string, number>; types: Map<string, string> } {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${line}`);
    values.set(m[1]!, Number(m[2]));
  }
  return { values, types };
}

function histogram(...ms: number[]) {
  const h = new DurationHistogram();
  for (const m of ms) h.observe(m);
  return histogramSnapshot(h);
}

function snapshot(endpoints: string[]): StatsSnapshot {
  return {
    pid: 1,
    uptime_s: 5,
    memory: { rss: 50_000_000, heap_total: 1, heap_used: 1, external: 1, trims: 2, trim_last_pause_ms: 3 },
    listeners: [
      {
        name: 'web',
        protocol: 'auto',
        tls: false,
        address: '127.0.0.1:8080',
        connections_open: 3,
        connections_total: 40,
        connections_held: 2,
        connections_held_total: 9,
        requests: 120,
        errors: 5,
        error_codes: { upstream_connect_failed: 2, bad_request: 3 },
        bytes_in: 0,
        bytes_out: 0,
        tunnels_open: 7,
        tunnels_total: 9,
        tunnels_by_kind: { websocket: 4, upgrade: 0, connect: 2, connect_udp: 1, tcp: 0 },
        // 0.3 ms, twice 3 ms (a bound is inclusive: 5 ms goes in le=0.005), 5 ms, and 70 s (above every bound)
        request_duration: histogram(0.3, 3, 3, 5, 70_000),
      },
    ],
    clusters: [
      {
        name: 'api',
        lb: 'round_robin',
        max_connections: 100,
        panics: 0,
        ejections_refused: 0,
        circuit_open: { max_requests: 0, max_pending: 0, max_retries: 0, max_connections: 0 },
        retries: 3,
        retries_skipped: { budget: 1 },
        requests: 100,
        errors: 2,
        error_codes: {},
        endpoints: endpoints.map((key, i) => ({
          key,
          host: key,
          weight: 1,
          healthy: i === 0,
          drained: false,
          ejected: false,
          ejections: i,
          health_check: null,
          active: 0,
          requests: 50 + i,
          errors: 0,
          pool: {
            key,
            open: 4,
            idle: 3,
            busy: 1,
            reused: 10,
            pending: 2,
            connecting: 1,
            connects_total: 4,
            connect_failures: 0,
            queue_full: 0,
            queue_timeouts: 0,
          },
          h2:
            i === 0
              ? {
                  sessions: 2,
                  draining: 1,
                  streams_active: 150,
                  streams_total: 900,
                  pending: 6,
                  connecting: 1,
                  connects_total: 3,
                  connect_failures: 0,
                  queue_full: 0,
                  queue_timeouts: 0,
                  goaways: 1,
                  refused_streams: 0,
                  ping_timeouts: 0,
                  fell_back: false,
                }
              : null,
          pool_wait: histogram(2),
        })),
      },
    ],
    ports: {
      exhausted: 4,
      budgets: [
        {
          source: '127.0.0.2',
          destination: '127.0.0.1:9000',
          range: '20000-20999',
          size: 1000,
          in_use: 600,
          cooling: 150,
          free: 250,
          used_ratio: 0.75,
          warn_ratio: 0.8,
        },
      ],
    },
    access_log: { lines_written: 900, lines_lost: 7, lines_skipped: 30, write_errors: 2 },
    cache: {
      zones: [
        {
          name: 'pages',
          objects: 12,
          bytes: 40_000,
          max_bytes: 1_000_000,
          inflight: 1,
          hits: 90,
          misses: 10,
          coalesced: 4,
          stale_served: 2,
          revalidations: 3,
          bypassed: 5,
          stores: 14,
          evictions: 1,
          purged: 6,
        },
      ],
    },
  };
}

describe('MetricsExporter', () => {
  it('renders every family from the snapshot, with its type and labels', async () => {
    const { values: v, types } = parse(await new MetricsExporter().render(snapshot(['10.0.0.1:80', '10.0.0.2:80'])));
    const expect: [string, number][] = [
      ['muxgate_requests_total{listener="web"}', 120],
      ['muxgate_errors_total{listener="web",code="bad_request"}', 3],
      ['muxgate_errors_total{listener="web",code="upstream_connect_failed"}', 2],
      ['muxgate_downstream_connections{listener="web",protocol="auto"}', 3],
      ['muxgate_downstream_connections_total{listener="web"}', 40],
      ['muxgate_downstream_connections_held{listener="web"}', 2],
      ['muxgate_downstream_connections_held_total{listener="web"}', 9],
      ['muxgate_tunnels{listener="web",kind="websocket"}', 4],
      ['muxgate_tunnels{listener="web",kind="connect"}', 2],
      ['muxgate_tunnels{listener="web",kind="connect_udp"}', 1],
      ['muxgate_tunnels{listener="web",kind="tcp"}', 0],
      ['muxgate_upstream_requests_total{cluster="api",endpoint="10.0.0.2:80"}', 51],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.1:80",state="idle"}', 3],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.1:80",state="busy"}', 1],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.1:80",state="h2"}', 1],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.1:80",state="h2_draining"}', 1],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.1:80",state="connecting"}', 2],
      ['muxgate_upstream_connections{cluster="api",endpoint="10.0.0.2:80",state="connecting"}', 1],
      ['muxgate_upstream_streams{cluster="api",endpoint="10.0.0.1:80"}', 150],
      ['muxgate_pool_pending{cluster="api",endpoint="10.0.0.1:80"}', 8],
      ['muxgate_pool_pending{cluster="api",endpoint="10.0.0.2:80"}', 2],
      ['muxgate_endpoint_healthy{cluster="api",endpoint="10.0.0.1:80"}', 1],
      ['muxgate_endpoint_healthy{cluster="api",endpoint="10.0.0.2:80"}', 0],
      ['muxgate_port_budget_used_ratio{source="127.0.0.2",destination="127.0.0.1:9000"}', 0.75],
      ['muxgate_port_budget_ports{source="127.0.0.2",destination="127.0.0.1:9000",state="in_use"}', 600],
      ['muxgate_port_budget_ports{source="127.0.0.2",destination="127.0.0.1:9000",state="cooling"}', 150],
      ['muxgate_port_budget_ports{source="127.0.0.2",destination="127.0.0.1:9000",state="free"}', 250],
      ['muxgate_port_budget_exhausted_total', 4],
      ['muxgate_access_log_lines_total{outcome="written"}', 900],
      ['muxgate_access_log_lines_total{outcome="lost"}', 7],
      ['muxgate_access_log_lines_total{outcome="skipped"}', 30],
      ['muxgate_process_resident_memory_bytes', 50_000_000],
      ['muxgate_memory_trims_total', 2],
      ['muxgate_cache_requests_total{zone="pages",outcome="hit"}', 90],
      ['muxgate_cache_requests_total{zone="pages",outcome="miss"}', 10],
      ['muxgate_cache_requests_total{zone="pages",outcome="coalesced"}', 4],
      ['muxgate_cache_requests_total{zone="pages",outcome="stale"}', 2],
      ['muxgate_cache_requests_total{zone="pages",outcome="revalidated"}', 3],
      ['muxgate_cache_requests_total{zone="pages",outcome="bypass"}', 5],
      ['muxgate_cache_objects{zone="pages"}', 12],
      ['muxgate_cache_bytes{zone="pages",state="stored"}', 40_000],
      ['muxgate_cache_bytes{zone="pages",state="max"}', 1_000_000],
      ['muxgate_cache_removals_total{zone="pages",reason="evicted"}', 1],
      ['muxgate_cache_removals_total{zone="pages",reason="purged"}', 6],
      ['muxgate_cache_stores_total{zone="pages"}', 14],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="0.0005"}', 1],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="0.001"}', 1],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="0.0025"}', 1],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="0.005"}', 4],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="60"}', 4],
      ['muxgate_request_duration_seconds_bucket{listener="web",le="+Inf"}', 5],
      ['muxgate_request_duration_seconds_count{listener="web"}', 5],
      ['muxgate_pool_wait_seconds_bucket{cluster="api",endpoint="10.0.0.2:80",le="0.001"}', 0],
      ['muxgate_pool_wait_seconds_bucket{cluster="api",endpoint="10.0.0.2:80",le="0.0025"}', 1],
      ['muxgate_pool_wait_seconds_count{cluster="api",endpoint="10.0.0.2:80"}', 1],
    ];
    for (const [k, n] of expect) assert.equal(v.get(k), n, k);
    assert.equal(v.has('muxgate_upstream_streams{cluster="api",endpoint="10.0.0.2:80"}'), false, 'HTTP/1.1 only');
    for (const name of ['muxgate_requests_total', 'muxgate_errors_total', 'muxgate_port_budget_exhausted_total'])
      assert.equal(types.get(name), 'counter', name);
    for (const name of ['muxgate_downstream_connections', 'muxgate_upstream_connections', 'muxgate_pool_pending'])
      assert.equal(types.get(name), 'gauge', name);
    for (const name of ['muxgate_request_duration_seconds', 'muxgate_pool_wait_seconds'])
      assert.equal(types.get(name), 'histogram', name);
    const sum = v.get('muxgate_request_duration_seconds_sum{listener="web"}') ?? 0;
    assert.ok(Math.abs(sum - 70.0113) < 1e-9, `sum ${sum}`);
  });

  it('drops the series of an endpoint that left the snapshot', async () => {
    const m = new MetricsExporter();
    await m.render(snapshot(['10.0.0.1:80', '10.0.0.2:80']));
    const { values } = parse(await m.render(snapshot(['10.0.0.1:80'])));
    for (const k of values.keys()) assert.ok(!k.includes('10.0.0.2:80'), `stale series ${k}`);
    assert.equal(values.get('muxgate_upstream_requests_total{cluster="api",endpoint="10.0.0.1:80"}'), 50);
  });

  it('renders concurrent scrapes each from its own snapshot', async () => {
    const m = new MetricsExporter();
    const a = snapshot(['10.0.0.1:80']);
    const b = snapshot(['10.0.0.9:80']);
    const [ta, tb] = await Promise.all([m.render(a), m.render(b)]);
    assert.ok(ta.includes('10.0.0.1:80') && !ta.includes('10.0.0.9:80'));
    assert.ok(tb.includes('10.0.0.9:80') && !tb.includes('10.0.0.1:80'));
  });
});

describe('GET /metrics on the admin listener', () => {
  let backend: Backend<import('node:http').Server>;
  before(async () => {
    backend = await httpBackend((_req, res) => res.end('ok\n'));
  });
  after(async () => {
    await backend.close();
  });

  it('agrees with /stats after real requests, and is served as the Prometheus text format', async () => {
    const m = startMuxgate([
      'proxy',
      '--listen',
      '127.0.0.1:0',
      '--to',
      backend.addr,
      '--admin',
      '127.0.0.1:0',
      '--no-access-log',
    ]);
    try {
      const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
      const admin = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
      for (let i = 0; i < 5; i++) await run('curl', ['-sS', `http://127.0.0.1:${port}/r${i}`]);
      // A request line muxgate refuses: an error with a stable code.
      await run('curl', ['-sS', '-o', '/dev/null', '-X', 'G@T', `http://127.0.0.1:${port}/`]);
      const head = await run('curl', ['-sS', '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${admin}/metrics`]);
      assert.match(head.stdout, /content-type: text\/plain; version=0\.0\.4/i);
      const text = (await run('curl', ['-sS', `http://127.0.0.1:${admin}/metrics`])).stdout;
      const stats = JSON.parse((await run('curl', ['-sS', `http://127.0.0.1:${admin}/stats`])).stdout) as StatsSnapshot;
      const { values } = parse(text);
      const l = stats.listeners[0]!;
      assert.equal(values.get(`muxgate_requests_total{listener="${l.name}"}`), l.requests);
      assert.ok(l.requests >= 5);
      const codes = Object.entries(l.error_codes);
      assert.ok(codes.length > 0, 'the bad method was counted');
      for (const [code, n] of codes)
        assert.equal(values.get(`muxgate_errors_total{listener="${l.name}",code="${code}"}`), n);
      const c = stats.clusters[0]!;
      const e = c.endpoints[0]!;
      assert.equal(values.get(`muxgate_upstream_requests_total{cluster="${c.name}",endpoint="${e.key}"}`), e.requests);
      assert.equal(
        values.get(`muxgate_upstream_connections{cluster="${c.name}",endpoint="${e.key}",state="idle"}`),
        e.pool.idle,
      );
      assert.equal(values.get(`muxgate_endpoint_healthy{cluster="${c.name}",endpoint="${e.key}"}`), 1);
      const count = values.get(`muxgate_request_duration_seconds_count{listener="${l.name}"}`) ?? 0;
      assert.ok(count >= 5 && count <= l.requests, `request durations counted: ${count} of ${l.requests}`);
      assert.equal(values.get(`muxgate_request_duration_seconds_bucket{listener="${l.name}",le="+Inf"}`), count);
      const waits = values.get(`muxgate_pool_wait_seconds_count{cluster="${c.name}",endpoint="${e.key}"}`) ?? 0;
      assert.ok(waits >= 5, `pool waits counted: ${waits}`);
      // No path or client address ever becomes a label.
      assert.ok(!text.includes('/r1') && !text.includes(`127.0.0.1:${String(port)}`), 'no paths or client addresses');
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });
});
