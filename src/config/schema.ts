/**
 * The configuration schema. Input is what people write in muxgate.yaml; output is what the rest of
 * muxgate consumes: durations in ms, sizes in bytes, addresses and endpoints as objects, defaults
 * filled, host patterns/methods/header names normalised. Every error message says what was expected
 * and what was got, because the loader prints them verbatim.
 */
import { z } from 'zod';
import { hostPort, type HostPort, NAME, parseHostPort, TOKEN, trustedProxies } from './addresses.ts';
import { describeValue } from './config-error.ts';
import { endpoint, sourceAddress, sourcePortRange } from './endpoints.ts';
import { clusterHttp2, clusterTls, listenerHttp2, listenerTls, upstreamProtocol } from './protocols.ts';
import { bool, exactlyOne, expected, int, isRecord, list, map, oneOf, text, whenMap } from './schema-builders.ts';
import { clusterWebsocket, listenerConnect, routesOrConnect, tcpTunnelKeys, tunnelGoesWithTarget } from './tunnels.ts';
import { durationMs, sizeBytes } from './units.ts';
import { route } from './routes.ts';
import { cacheZones } from './cache.ts';
import { connectionLimitKeys, proxyProtocolIn, sendProxyProtocol, sniKeys, sniRoute } from './edge.ts';

function clusterOrSniRoutes(
  l: { cluster?: unknown; sni_routes?: unknown; tunnel?: unknown; proxy_protocol?: unknown },
  ctx: z.RefinementCtx,
): void {
  if (l.cluster === undefined && l.sni_routes === undefined) {
    ctx.addIssue({ code: 'custom', path: ['cluster'], message: 'expected a cluster name (or sni_routes)' });
  }
  if (l.sni_routes !== undefined && l.tunnel !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['sni_routes'], message: 'sni_routes cannot be combined with tunnel h2' });
  }
  if (l.proxy_protocol !== undefined && l.tunnel !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['proxy_protocol'],
      message: 'proxy_protocol on a tunnel h2 listener is not supported yet',
    });
  }
}

export { type HostPort, parseHostPort };

// ---------------------------------------------------------------------------------------------
// Listeners

export const HTTP_LISTENER_PROTOCOLS = ['http1', 'http2', 'auto'] as const;

const httpListener = map('a listener map', {
  name: text('a name made of a-z, 0-9, _ and -', NAME).describe('Unique; [a-z0-9_-]+.'),
  address: hostPort(true).describe('"host:port" or "[v6]:port" to listen on; port 0 picks a free port.'),
  protocol: z
    .enum(HTTP_LISTENER_PROTOCOLS)
    .describe(
      'http1 (the default): HTTP/1.1; http2: HTTP/2 only (ALPN h2 over TLS, prior-knowledge h2c in cleartext); ' +
        'auto: both on one port (ALPN over TLS, the connection preface in cleartext).',
    ),
  tls: listenerTls.optional().describe('Terminate TLS: certificates by SNI, minimum version, reload.'),
  http2: listenerHttp2
    .optional()
    .describe('HTTP/2 limits (protocol http2 or auto): streams, windows, memory, rapid-reset guard.'),
  trusted_proxies: trustedProxies.optional().describe('Overrides the top-level trusted_proxies for this listener.'),
  proxy_protocol: proxyProtocolIn
    .optional()
    .describe(
      'Accept a PROXY header (v1 or v2) from these peers first (before TLS); its client address is the one logged, forwarded and keyed on.',
    ),
  passthrough: list(sniRoute, 'a list of sni routes', 1)
    .optional()
    .describe(
      'With tls: connections whose ClientHello matches one of these (server_names, alpn) are not terminated but piped untouched to its cluster; other names are terminated here.',
    ),
  max_header_bytes: sizeBytes({ min: 1 })
    .prefault('64KiB')
    .describe('Limit for the request line plus headers; larger requests get 431.'),
  max_headers: int(1).default(100).describe('Limit on the number of request header fields; more get 431.'),
  header_timeout: durationMs({ min: 1 })
    .prefault('10s')
    .describe('The whole request head must arrive within this (slowloris protection).'),
  idle_timeout: durationMs({ min: 1 }).prefault('60s').describe('How long a keep-alive connection may idle.'),
  max_requests_per_connection: int(0)
    .default(0)
    .describe('Close the connection after this many requests; 0 = no limit.'),
  ...connectionLimitKeys,
  routes: list(route, 'a list of routes').describe('Tried in order; the first match wins.'),
  connect: listenerConnect,
})
  .superRefine(routesOrConnect, whenMap)
  .superRefine((l: { tls?: unknown; passthrough?: unknown }, ctx) => {
    if (l.tls === undefined && l.passthrough !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['passthrough'],
        message: 'passthrough needs tls (names not terminated here)',
      });
    }
  }, whenMap);

const tcpListener = map('a tcp listener map', {
  name: text('a name made of a-z, 0-9, _ and -', NAME).describe('Unique; [a-z0-9_-]+.'),
  address: hostPort(true).describe('"host:port" or "[v6]:port" to listen on; port 0 picks a free port.'),
  protocol: z.literal('tcp').describe('tcp: every accepted connection is piped to an endpoint of `cluster`.'),
  cluster: text('a cluster name')
    .optional()
    .describe('The cluster whose endpoints take the connections (with sni_routes: those no route matches).'),
  ...sniKeys,
  proxy_protocol: proxyProtocolIn.optional().describe('Accept a PROXY header (v1 or v2) from these peers first.'),
  idle_timeout: durationMs({ min: 1 })
    .prefault('1h')
    .describe('Close a connection (both sides) when no byte moved either way for this long.'),
  ...connectionLimitKeys,
  connect_attempts: int(1, 10)
    .default(3)
    .describe('Endpoints tried (each once) when a connect fails or times out, before the client is closed.'),
  ...tcpTunnelKeys,
})
  .superRefine(tunnelGoesWithTarget, whenMap)
  .superRefine(clusterOrSniRoutes, whenMap);

const LISTENER_PROTOCOLS = [...HTTP_LISTENER_PROTOCOLS, 'tcp'] as const;

// `protocol` picks the shape; absent means http1. A discriminated union so a tcp listener with
// `routes` (or an http1 listener with `cluster`) is told exactly which key does not belong.
const listener = z.preprocess(
  (v) => (isRecord(v) && v.protocol === undefined ? { ...v, protocol: 'http1' } : v),
  z.discriminatedUnion('protocol', [httpListener, tcpListener], {
    error: (issue) =>
      isRecord(issue.input)
        ? `expected one of ${LISTENER_PROTOCOLS.join(', ')}, got ${describeValue(issue.input.protocol)}`
        : `expected a listener map, got ${describeValue(issue.input)}`,
  }),
);

// ---------------------------------------------------------------------------------------------
// Clusters

export const LB_POLICIES = [
  'round_robin',
  'least_request',
  'least_connections',
  'random',
  'ring_hash',
  'maglev',
] as const;
const HASHING_POLICIES: readonly unknown[] = ['ring_hash', 'maglev'];

export type HashKeyConfig = { header: string } | { cookie: string } | { source_ip: true };

const hashKey = map('a hash key map with one of header, cookie or source_ip', {
  header: text('a header name', TOKEN)
    .transform((n) => n.toLowerCase())
    .optional()
    .describe('Hash this request header.'),
  cookie: text('a cookie name', TOKEN).optional().describe('Hash this cookie.'),
  source_ip: z
    .literal(true, { error: expected('true') })
    .optional()
    .describe('Hash the client IP.'),
})
  .superRefine(exactlyOne(['header', 'cookie', 'source_ip']))
  .transform(
    (k): HashKeyConfig =>
      k.header !== undefined
        ? { header: k.header }
        : k.cookie !== undefined
          ? { cookie: k.cookie }
          : { source_ip: true },
  );

const outlier = map('an outlier map', {
  consecutive_connect_failures: int(0)
    .default(5)
    .describe('Connect failures in a row that eject an endpoint (0: off).'),
  consecutive_5xx: int(0).default(5).describe('5xx answers in a row that eject an endpoint (0: off).'),
  consecutive_gateway_errors: int(0)
    .default(5)
    .describe('502/503/504 answers, resets, timeouts and malformed answers in a row that eject an endpoint (0: off).'),
  base_ejection_time: durationMs({ min: 1 })
    .prefault('10s')
    .describe('An ejection lasts this, times the number of times the endpoint was ejected.'),
  max_ejection_time: durationMs({ min: 1 }).prefault('5m').describe('The longest an ejection lasts.'),
  max_ejection_percent: int(0, 100)
    .default(50)
    .describe('No more ejections while this share of the endpoints is out (one may always be).'),
  panic: bool()
    .default(true)
    .describe('When no endpoint is healthy, spread requests over all of them instead of answering 503.'),
});

const circuitBreakers = map('a circuit_breakers map', {
  max_requests: int(0)
    .default(0)
    .describe('Requests and tunnels in flight on the cluster (all endpoints); more get 503 circuit_open. 0: no limit.'),
  max_pending: int(0)
    .default(0)
    .describe(
      'Requests waiting for a connection or a stream slot across the cluster; more get 503 circuit_open. 0: no limit.',
    ),
  max_connections: int(0)
    .default(0)
    .describe(
      'Pooled upstream connections across the cluster (all endpoints, HTTP/1.1 and HTTP/2); at the cap a request ' +
        "waits for one of its endpoint's connections, or gets 503 circuit_open when that endpoint has none. 0: no limit.",
    ),
  max_retries: int(0)
    .default(0)
    .describe(
      "Requests retrying at once across the cluster (see a route's retry:); beyond it a failed attempt is final " +
        '(the access log says retry_skipped=circuit_open). 0: no limit.',
    ),
});

const STATUS_RANGE = /^([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?$/;
const healthCheck = map('a health_check map', {
  type: oneOf(['http', 'tcp']).default('http').describe('http: a GET whose status must be expected; tcp: a connect.'),
  path: text('a path starting with /', /^\/[^\s]*$/)
    .default('/')
    .describe('The path the HTTP check requests.'),
  host: text('a host name').optional().describe('Host of the HTTP check (default: the endpoint as configured).'),
  protocol: oneOf(['http1', 'http2'])
    .optional()
    .describe(
      "What the HTTP check speaks (default: the cluster's protocol; with TLS and protocol auto, ALPN chooses).",
    ),
  expected_statuses: list(
    z.union(
      [
        int(100, 599).transform((n) => String(n)),
        text('a status or a range such as 200-399', STATUS_RANGE).refine(
          (s) => {
            // A string the pattern refused was reported above; only a reversed range is new here.
            const m = STATUS_RANGE.exec(s);
            return m === null || m[2] === undefined || Number(m[2]) >= Number(m[1]);
          },
          { error: 'expected a range whose end is not below its start' },
        ),
      ],
      { error: expected('a status or a range such as 200-399') },
    ),
    'a list of statuses',
    1,
  )
    .default(['200-399'])
    .describe('Statuses that pass the HTTP check: codes or ranges.'),
  interval: durationMs({ min: 1 }).prefault('5s').describe('Time between checks of an endpoint.'),
  jitter: durationMs().prefault('500ms').describe('Up to this much is added to each interval, at random.'),
  timeout: durationMs({ min: 1 }).prefault('2s').describe('A check not answered within this fails.'),
  healthy_threshold: int(1).default(2).describe('Passing checks in a row that make an unhealthy endpoint healthy.'),
  unhealthy_threshold: int(1).default(3).describe('Failing checks in a row that make an endpoint unhealthy.'),
});

const pool = map('a pool map', {
  max_connections: int(1).default(100).describe('Upstream connections per endpoint (the pool cap).'),
  max_pending: int(0).default(1000).describe('Requests allowed to wait for a connection.'),
  pending_timeout: durationMs({ min: 1 }).prefault('5s').describe('Longest wait for a connection; then 503.'),
  max_requests_per_connection: int(0)
    .default(0)
    .describe('Retire a connection after this many requests; 0 = no limit.'),
  idle_timeout: durationMs({ min: 1 }).prefault('60s').describe('Close upstream connections idle this long.'),
  connect_timeout: durationMs({ min: 1 }).prefault('5s').describe('Give up on a TCP connect after this long.'),
});

const cluster = map('a cluster map', {
  protocol: upstreamProtocol
    .default('http1')
    .describe(
      'What muxgate speaks to the endpoints: http1, http2 (many requests share one connection as streams) or ' +
        'auto (ALPN over TLS; in cleartext http1 unless h2c: true).',
    ),
  h2c: bool().default(false).describe('With protocol auto in cleartext: speak HTTP/2 with prior knowledge.'),
  tls: clusterTls.optional().describe('Originate TLS to the endpoints (true = verify with the system CAs).'),
  http2: clusterHttp2.optional().describe('Upstream HTTP/2 sessions: streams per connection, windows, PING.'),
  websocket: clusterWebsocket,
  endpoints: list(endpoint, 'a list of endpoints (at least one)', 1)
    .transform((lists) => lists.flat())
    .describe('The upstream servers.'),
  lb: oneOf(LB_POLICIES).default('round_robin').describe('Load-balancing policy.'),
  hash_key: hashKey
    .optional()
    .describe('What ring_hash and maglev hash: exactly one of header, cookie or source_ip: true.'),
  dns_refresh: durationMs({ min: 1 }).prefault('30s').describe('How often DNS names are re-resolved.'),
  response_timeout: durationMs({ min: 1 })
    .prefault('30s')
    .describe('Wait this long for the response head once the request is sent; then 504.'),
  outlier: outlier.prefault({}).describe('Eject endpoints that keep failing (passive outlier detection).'),
  circuit_breakers: circuitBreakers
    .prefault({})
    .describe('Cluster-wide limits that answer 503 circuit_open instead of piling work on a struggling cluster.'),
  health_check: healthCheck
    .optional()
    .describe(
      'Active checks of every endpoint (HTTP/1.1 GET, over TLS when the cluster uses TLS, or a TCP connect), sent through the same source addresses and port budget as traffic.',
    ),
  pool: pool.prefault({}).describe('Upstream connection pool limits.'),
  source_addresses: list(sourceAddress, 'a list of IP addresses', 1)
    .optional()
    .describe(
      'Local IPs upstream connections leave from. muxgate then picks every source port itself, per (source IP, ' +
        'destination IP, destination port), so each destination gets the whole port range per source IP.',
    ),
  source_port_range: sourcePortRange
    .optional()
    .describe("Ports muxgate hands out per source IP and destination; default: the kernel's ip_local_port_range."),
  port_cooling: durationMs({ min: 1 })
    .optional()
    .describe(
      "How long a port that failed to bind or connect (EADDRINUSE / EADDRNOTAVAIL, e.g. TIME_WAIT) is left alone; default: the kernel's tcp_fin_timeout.",
    ),
  send_proxy_protocol: sendProxyProtocol,
  budget_warn_ratio: z
    .number({ error: expected('a number > 0 and <= 1') })
    .gt(0, { error: expected('a number > 0 and <= 1') })
    .max(1, { error: expected('a number > 0 and <= 1') })
    .default(0.8)
    .describe('Warn when the ports in use or cooling reach this share of a port budget.'),
}).superRefine((c, ctx) => {
  if (c.protocol === 'http1' && c.h2c === true) {
    ctx.addIssue({ code: 'custom', path: ['h2c'], message: 'h2c needs protocol auto or http2, got protocol http1' });
  }
  if (c.send_proxy_protocol !== undefined && c.protocol !== 'http1') {
    // An HTTP/2 connection carries many clients' streams; a PROXY header names one client.
    ctx.addIssue({
      code: 'custom',
      path: ['send_proxy_protocol'],
      message: `send_proxy_protocol needs protocol http1 (an HTTP/2 connection is shared by many clients, a PROXY header names one), got protocol ${c.protocol}`,
    });
  }
  if (c.protocol === 'http1' && c.websocket === 'h2') {
    ctx.addIssue({
      code: 'custom',
      path: ['websocket'],
      message: 'websocket h2 needs protocol http2 or auto, got http1',
    });
  }
  if (c.protocol === 'http1' && c.http2 !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['http2'],
      message: 'http2 settings need protocol http2 or auto, got protocol http1',
    });
  }
  if (Array.isArray(c.source_addresses)) {
    const seen = new Set<string>();
    c.source_addresses.forEach((a, i) => {
      if (typeof a !== 'string') return;
      if (seen.has(a)) {
        ctx.addIssue({
          code: 'custom',
          path: ['source_addresses', i],
          message: `expected unique addresses, got ${describeValue(a)} twice`,
          input: a,
        });
      }
      seen.add(a);
    });
  }
  const hashing = HASHING_POLICIES.includes(c.lb);
  if (hashing && c.hash_key === undefined) {
    ctx.addIssue({ code: 'custom', message: `missing required key "hash_key" (lb ${c.lb} needs one)`, input: c });
  } else if (!hashing && c.hash_key !== undefined && typeof c.lb === 'string') {
    ctx.addIssue({
      code: 'custom',
      path: ['hash_key'],
      message: `hash_key is only used by lb ring_hash or maglev, got lb ${c.lb}`,
      input: c.hash_key,
    });
  }
}, whenMap);

// ---------------------------------------------------------------------------------------------
// The whole file

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const accessLog = map('an access_log map', {
  enabled: bool().default(true),
  path: text('stdout, stderr or a file path').default('stdout').describe('stdout, stderr or a file path.'),
  errors_only: bool()
    .default(false)
    .describe('Log only requests and tunnels that ended with an error code or a status of 400 or more.'),
  sample: int(1)
    .default(1)
    .describe('Log one in this many of the other lines (1 = every line); error lines are always logged.'),
  buffer: sizeBytes({ min: 1 })
    .prefault('64KiB')
    .describe('Lines are written in batches of about this size (as nginx `access_log ... buffer=`).'),
  flush_interval: durationMs({ min: 1 }).prefault('1s').describe('...or when the oldest buffered line is this old.'),
  max_buffer: sizeBytes({ min: 1 })
    .prefault('16MiB')
    .describe(
      'Lines arriving while this much waits for a slow destination are dropped and counted (access_log.lines_lost in /stats).',
    ),
});

const idleRatio = expected('a number > 0 and < 1');
const memoryTrim = map('a memory_trim map', {
  enabled: bool()
    .default(true)
    .describe(
      'After a burst (thousands of connections opening at once), give the memory V8 grew for it back once the process is idle: one footprint-reducing GC.',
    ),
  idle_below: z
    .number({ error: idleRatio })
    .gt(0, { error: idleRatio })
    .lt(1, { error: idleRatio })
    .default(0.05)
    .describe("The process counts as idle while its event loop's utilisation over the last second is below this."),
  young_above: sizeBytes({ min: 1 })
    .prefault('4MiB')
    .describe("Trim only when V8's young generation has grown beyond this (a burst grew it; steady load does not)."),
  min_interval: durationMs({ min: 1 }).prefault('5s').describe('At most one trim per this interval.'),
});

const admin = map('an admin map', {
  address: hostPort(true).prefault('127.0.0.1:9901').describe('Where the admin API listens.'),
  token: text('a bearer token')
    .min(16, { error: 'expected a token of at least 16 characters' })
    .optional()
    .describe('When set, every admin request needs `Authorization: Bearer <token>`.'),
  token_file: text('a file path').optional().describe('Read the token from this file (trailing newline ignored).'),
  token_env: text('an environment variable name').optional().describe('Read the token from this environment variable.'),
});

const workersError = expected('an integer >= 1 or "auto"');
const workers = z.union(
  [z.int({ error: workersError }).min(1, { error: workersError }), z.literal('auto', { error: workersError })],
  { error: workersError },
);

const viaToken = text("a token (letters, digits, !#$%&'*+.^_`|~-) or false", TOKEN);

export const configSchema = map('a map of settings', {
  log_level: oneOf(LOG_LEVELS).default('info'),
  access_log: accessLog.prefault({}).describe('One line per request.'),
  workers: workers.default(1).describe('Worker processes; "auto" = one per CPU.'),
  drain_timeout: durationMs().prefault('30s').describe('On shutdown, how long in-flight requests get to finish.'),
  memory_trim: memoryTrim.prefault({}).describe('Giving memory back after bursts (src/core/memory-trim.ts).'),
  pid_file: text('a file path')
    .optional()
    .describe(
      'Written with the process id at start and removed at exit; `muxgate reload` signals it when the admin API is off.',
    ),
  drain_idle_grace: durationMs()
    .prefault('1s')
    .describe(
      'When a listener drains, idle keep-alive connections stay open this long for a request already on its way (answered with connection: close).',
    ),
  reuse_port: bool()
    .default(true)
    .describe(
      'Bind listeners with SO_REUSEPORT, so that a reload can bind a changed listener before the old one stops, and a new muxgate process can take over the ports (zero-downtime upgrade).',
    ),
  direct_io: z
    .boolean({ error: expected('true or false') })
    .default(true)
    .describe(
      "Plain TCP HTTP/1.1 connections read into one shared buffer and write through Node's libuv handles (internal Node API, checked at start); false uses net.Socket streams.",
    ),
  trusted_proxies: trustedProxies.default([]),
  via: z
    .union([z.literal(false, { error: expected('false') }), viaToken], { error: expected('a token or false') })
    .default('muxgate')
    .describe('Pseudonym in Via headers; false leaves Via alone.'),
  admin: z
    .union([z.literal(false, { error: expected('false') }), admin], { error: expected('false or a map with address') })
    .prefault({})
    .describe('The admin API; false disables it.'),
  listeners: list(listener, 'a list of listeners (at least one)', 1).describe('Addresses muxgate accepts traffic on.'),
  cache_zones: cacheZones,
  clusters: z
    .record(text('a cluster name'), cluster, { error: expected('a map of cluster name to cluster') })
    .default({})
    .describe(
      'Cluster name -> cluster. Routes and tcp listeners refer to clusters by name (a CONNECT-only config needs none).',
    ),
}).superRefine(crossCheck, whenMap);

// ---------------------------------------------------------------------------------------------
// Checks across sections

function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function isHostPort(value: unknown): value is HostPort {
  return isRecord(value) && typeof value.host === 'string' && typeof value.port === 'number';
}

function crossCheck(config: Record<string, unknown>, ctx: z.RefinementCtx): void {
  // No "at least one cluster" rule: every reference to a missing cluster is reported where it is made.
  const clusters = isRecord(config.clusters) ? Object.keys(config.clusters) : undefined;
  const zones = isRecord(config.cache_zones) ? Object.keys(config.cache_zones) : [];

  const names = new Map<string, number>();
  // Port 0 means "any free port", so several listeners on port 0 do not clash.
  const addresses = new Map<string, string>();
  const adminAddress = isRecord(config.admin) ? config.admin.address : undefined;
  if (isHostPort(adminAddress) && adminAddress.port !== 0) addresses.set(formatHostPort(adminAddress), 'admin');

  const listeners = Array.isArray(config.listeners) ? config.listeners : [];
  listeners.forEach((l: unknown, i) => {
    if (!isRecord(l)) return;
    if (typeof l.name === 'string') {
      const first = names.get(l.name);
      if (first === undefined) names.set(l.name, i);
      else {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'name'],
          message: `expected a unique listener name, got ${describeValue(l.name)} again (first used by listeners[${first}])`,
        });
      }
    }
    if (isHostPort(l.address) && l.address.port !== 0) {
      const key = formatHostPort(l.address);
      const owner = addresses.get(key);
      if (owner === undefined) addresses.set(key, `listener ${describeValue(l.name)}`);
      else {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'address'],
          message: `expected a unique address, got ${describeValue(key)} again (already used by ${owner})`,
        });
      }
    }
    if (l.protocol === 'http1' && l.http2 !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['listeners', i, 'http2'],
        message: 'http2 settings need protocol http2 or auto, got protocol http1',
      });
    }
    if (l.protocol === 'tcp' && typeof l.cluster === 'string') {
      const target = isRecord(config.clusters) ? config.clusters[l.cluster] : undefined;
      if (clusters && !clusters.includes(l.cluster)) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'cluster'],
          message: `expected the name of a cluster (${clusters.join(', ') || 'none defined'}), got ${describeValue(l.cluster)}`,
        });
      } else if (l.tunnel === 'h2' && isRecord(target) && target.protocol !== 'http2') {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'cluster'],
          message: `expected a cluster with protocol http2 for tunnel h2, got ${describeValue(l.cluster)} (protocol ${describeValue(target.protocol ?? 'http1')})`,
        });
      } else if (isRecord(target) && isRecord(target.hash_key) && target.hash_key.source_ip === undefined) {
        // A TCP connection has no headers or cookies: only the client address can be hashed.
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'cluster'],
          message: `expected a cluster whose hash_key is source_ip (tcp listeners have no headers or cookies), got ${describeValue(l.cluster)}`,
        });
      }
    }
    const sniKey = l.protocol === 'tcp' ? 'sni_routes' : 'passthrough';
    const sniRoutes = Array.isArray(l[sniKey]) ? (l[sniKey] as unknown[]) : [];
    sniRoutes.forEach((r: unknown, j) => {
      if (!clusters || !isRecord(r) || typeof r.cluster !== 'string' || clusters.includes(r.cluster)) return;
      ctx.addIssue({
        code: 'custom',
        path: ['listeners', i, sniKey, j, 'cluster'],
        message: `expected the name of a cluster (${clusters.join(', ') || 'none defined'}), got ${describeValue(r.cluster)}`,
      });
    });
    const routes = Array.isArray(l.routes) ? l.routes : [];
    routes.forEach((r: unknown, j) => {
      const zone = isRecord(r) && isRecord(r.cache) ? r.cache.zone : undefined;
      if (typeof zone === 'string' && !zones.includes(zone)) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'routes', j, 'cache', 'zone'],
          message: `expected the name of a cache zone (${zones.join(', ') || 'none defined in cache_zones'}), got ${describeValue(zone)}`,
        });
      }
      if (!clusters || !isRecord(r) || typeof r.cluster !== 'string') return;
      if (!clusters.includes(r.cluster)) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'routes', j, 'cluster'],
          message: `expected the name of a cluster (${clusters.join(', ') || 'none defined'}), got ${describeValue(r.cluster)}`,
        });
        return;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Types for the rest of muxgate

export type Config = z.output<typeof configSchema>;
/** What people write (durations as strings, endpoints as "host:port"...), e.g. for tests building configs. */
export type ConfigInput = z.input<typeof configSchema>;
export type LogLevel = Config['log_level'];
export type AccessLogConfig = Config['access_log'];
export type AdminConfig = Exclude<Config['admin'], false>;
export type ListenerConfig = Config['listeners'][number];
export type HttpListenerConfig = Exclude<ListenerConfig, { protocol: 'tcp' }>;
export type TcpListenerConfig = Extract<ListenerConfig, { protocol: 'tcp' }>;
export type RouteConfig = HttpListenerConfig['routes'][number];
export type RouteMatchConfig = NonNullable<RouteConfig['match']>;
export type ClusterConfig = z.output<typeof cluster>;
export type LbPolicyName = ClusterConfig['lb'];
export type EndpointConfig = ClusterConfig['endpoints'][number];
export type OutlierConfig = ClusterConfig['outlier'];
export type HealthCheckConfig = NonNullable<ClusterConfig['health_check']>;
export type PoolConfig = ClusterConfig['pool'];
