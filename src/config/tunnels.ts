/**
 * The tunnel parts of the schema: a listener's `connect` (the CONNECT / CONNECT-UDP forward proxy, deny
 * by default) and the port lists its allow rules use. Routes and clusters carry their own small
 * tunnel options (`upgrades`, `websocket`) next to their other keys in schema.ts.
 */
import { z } from 'zod';
import { cidr, isHost } from './addresses.ts';
import { describeValue } from './config-error.ts';
import { bool, exactlyOne, expected, list, map, text } from './schema-builders.ts';
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
    'What CONNECT may reach. Everything else is refused (403 connect_denied). Loopback, private, link-local ' +
      'and other special addresses are refused even for an allowed name unless a cidr rule lists them.',
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

/** Tokens a route passes through as protocol upgrades ("websocket", ...). */
export const upgradeList = list(
  text('an upgrade token such as websocket', /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?$/).transform(
    (t) => t.toLowerCase(),
  ),
  'a list of upgrade tokens',
  1,
);
