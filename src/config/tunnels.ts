/**
 * The tunnel parts of the schema: a listener's `connect` (the CONNECT / CONNECT-UDP forward proxy, deny
 * by default) and the port lists its allow rules use. Routes and clusters carry their own small
 * tunnel options (`upgrades`, `websocket`) next to their other keys in schema.ts.
 */
import { z } from 'zod';
import { coversSpecialRange } from '../core/special-addresses.ts';
import { cidr, hostPort, isHost } from './addresses.ts';
import { describeValue } from './config-error.ts';
import { bool, exactlyOne, expected, list, map, oneOf, text } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

export interface PortRange {
  first: number;
  last: number;
}

const PORTS_HINT = 'a port (1-65535) or a range "first-last"';

/** 443 or "8000-8100". */
const portOrRange = z.union([z.int(), z.string()], { error: expected(PORTS_HINT) }).transform((v, ctx): PortRange => {
  const m = typeof v === 'number' ? [String(v), String(v), String(v)] : /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(v);
  const first = m === null ? Number.NaN : Number(m[1]);
  const last = m === null ? Number.NaN : Number(m[2] ?? m[1]);
  if (!(first >= 1 && last <= 65535 && first <= last)) {
    ctx.addIssue({ code: 'custom', message: `expected ${PORTS_HINT}, got ${describeValue(v)}`, input: v });
    return z.NEVER;
  }
  return { first, last };
});

const HOST_HINT = 'a host name or "*.example.com"';
const connectHost = z
  .string({ error: expected(HOST_HINT) })
  .refine((h) => isHost(h.startsWith('*.') ? h.slice(2) : h), { error: expected(HOST_HINT) })
  .transform((h) => h.toLowerCase());

const allowRule = map('an allow rule map with host or cidr, and ports', {
  host: connectHost
    .optional()
    .describe('Target name as the client wrote it: exact, or "*.example.com" (any subdomain).'),
  cidr: cidr.optional().describe('Resolved target address range, e.g. "10.0.0.0/8" or "127.0.0.1".'),
  ports: list(portOrRange, `a list of ports (${PORTS_HINT})`, 1).describe('Target ports this rule allows.'),
}).superRefine(exactlyOne(['host', 'cidr']));

const user = map('a user map with user and password', {
  user: text('a user name without ":"', /^[^:]+$/),
  password: text('a password'),
});

export const connectConfig = map('a connect map', {
  allow: list(allowRule, 'a list of allow rules (at least one)', 1).describe(
    'What CONNECT may reach. Everything else is refused (403 connect_denied). Loopback, private, link-local, ' +
      'CGNAT, multicast, documentation, reserved and unspecified addresses are reachable only through a cidr rule ' +
      'that lies inside their range (127.0.0.1/32, 10.0.0.0/8), never through a name or a catch-all like 0.0.0.0/0.',
  ),
  clients: list(cidr, 'a list of CIDRs', 1)
    .optional()
    .describe(
      'When set, only clients inside these ranges may use the forward proxy (403 connect_client_denied otherwise). ' +
        "The client is the connection's peer, or the address a trusted PROXY header names.",
    ),
  users: list(user, 'a list of users', 1)
    .optional()
    .describe('When set, CONNECT needs Proxy-Authorization: Basic with one of these (407 otherwise).'),
  realm: text('a realm without quotes', /^[^"\\]*$/)
    .default('muxgate')
    .describe('Realm in Proxy-Authenticate.'),
  connect_timeout: durationMs({ min: 1 }).prefault('5s').describe('Give up on a TCP connect after this long; 502.'),
  idle_timeout: durationMs({ min: 1 })
    .prefault('1h')
    .describe('Close a tunnel (both sides) when no byte moved either way for this long.'),
  udp: bool()
    .default(false)
    .describe('Serve CONNECT-UDP (RFC 9298) at /.well-known/masque/udp/{host}/{port}/ with the same rules.'),
  udp_idle_timeout: durationMs({ min: 1 })
    .prefault('2m')
    .describe('Close a CONNECT-UDP tunnel when no datagram moved either way for this long.'),
  max_capsule_bytes: sizeBytes({ min: 64 })
    .prefault('65551B')
    .describe('Largest capsule accepted on a CONNECT-UDP stream (a 64 KiB datagram plus framing).'),
});

export type ConnectConfig = z.output<typeof connectConfig>;

/**
 * What `muxgate check` and start warn about: cidr rules broader than a special range, which an
 * operator may have meant to include it (they do not: see ConnectPolicy).
 */
export function connectWarnings(listener: string, c: ConnectConfig): string[] {
  const out: string[] = [];
  c.allow.forEach((r, i) => {
    if (r.cidr === undefined || !coversSpecialRange(r.cidr)) return;
    out.push(
      `listener ${listener}: connect.allow[${i}] cidr ${r.cidr} is a catch-all: it reaches public addresses only; ` +
        'loopback, private, link-local and other special ranges need a rule of their own inside them (e.g. 10.0.0.0/8)',
    );
  });
  return out;
}

/** An HTTP listener's `connect`. */
export const listenerConnect = connectConfig
  .optional()
  .describe('Serve CONNECT (HTTP/1.1 and HTTP/2) and optionally CONNECT-UDP as a forward proxy; deny by default.');

/** A listener with no routes is useful only as a forward proxy. */
export function routesOrConnect(l: { routes?: unknown; connect?: unknown }, ctx: z.RefinementCtx): void {
  if (Array.isArray(l.routes) && l.routes.length === 0 && l.connect === undefined) {
    ctx.addIssue({ code: 'custom', path: ['routes'], message: 'expected at least one route (or a connect map)' });
  }
}

/** Tokens a route passes through as protocol upgrades ("websocket", ...). */
const upgradeList = list(
  text('an upgrade token such as websocket', /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?$/).transform(
    (t) => t.toLowerCase(),
  ),
  'a list of upgrade tokens',
  1,
);

/** A route's upgrade keys (spread into the route map). */
export const routeUpgradeKeys = {
  upgrades: upgradeList
    .optional()
    .describe(
      'Protocol upgrades this route passes through, e.g. [websocket]: HTTP/1.1 Upgrade, and for websocket also ' +
        'RFC 8441 over HTTP/2 (the listener then advertises SETTINGS_ENABLE_CONNECT_PROTOCOL). Absent: Upgrade ' +
        'headers are dropped and the request is forwarded as a plain request.',
    ),
  upgrade_idle_timeout: durationMs({ min: 1 })
    .prefault('1h')
    .describe('Close an upgraded connection (both sides) when no byte moved either way for this long.'),
};

/** A tcp listener's keys for carrying its connections as HTTP/2 CONNECT streams (spread into its map). */
export const tcpTunnelKeys = {
  tunnel: oneOf(['h2'])
    .optional()
    .describe(
      'h2: carry each connection as an HTTP/2 CONNECT stream to the cluster (a muxgate with `connect`), so many ' +
        'connections share a few TCP connections. The cluster must use protocol http2.',
    ),
  tunnel_target: hostPort(false)
    .optional()
    .describe('With tunnel h2: the "host:port" the peer connects each stream to (sent as the CONNECT authority).'),
};

export function tunnelGoesWithTarget(l: { tunnel?: unknown; tunnel_target?: unknown }, ctx: z.RefinementCtx): void {
  if ((l.tunnel === undefined) !== (l.tunnel_target === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [l.tunnel === undefined ? 'tunnel' : 'tunnel_target'],
      message: 'tunnel and tunnel_target go together',
    });
  }
}

/** A cluster's `websocket`. */
export const clusterWebsocket = oneOf(['http1', 'h2'])
  .default('http1')
  .describe(
    'How WebSockets reach the endpoints: http1 (an Upgrade on a connection of its own) or h2 (an RFC 8441 ' +
      'stream on the HTTP/2 session pool; HTTP/1.1 Upgrade when the endpoint does not advertise it). h2 needs ' +
      'protocol http2 or auto.',
  );
