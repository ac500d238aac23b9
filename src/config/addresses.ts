/**
 * Addresses in the config: host names, "host:port", CIDRs.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { describeValue } from './config-error.ts';
import { expected, list } from './schema-builders.ts';
// ---------------------------------------------------------------------------------------------
// Names, hosts, addresses

export const NAME = /^[a-z0-9_-]+$/;
// RFC 9110 token characters: header names, methods, the Via pseudonym.
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOST_LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOSTNAME = new RegExp(`^${HOST_LABEL}(?:\\.${HOST_LABEL})*$`);

/** A DNS name or an IPv4/IPv6 literal (without brackets). */
export function isHost(host: string): boolean {
  if (isIPv4(host) || isIPv6(host)) return true;
  // "10.0.0.300" looks like a name to the regex but is a typo'd address, not something to resolve.
  return host.length <= 253 && HOSTNAME.test(host) && !/^[\d.]+$/.test(host);
}

/** "[::1]" -> "::1": IPv6 literals are bracketed in URLs and Host headers, bare for sockets. */
export function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

export interface HostPort {
  host: string;
  port: number;
}

export const HOST_PORT_HINT = '"host:port" or "[ipv6]:port"';

/**
 * "host:port" or "[v6]:port" -> { host, port } (IPv6 hosts come back without brackets, as
 * net.connect/listen want them). Port 0 ("any free port") is allowed unless `allowPortZero` is false.
 * Throws a RangeError whose message says what was expected and what was got.
 */
export function parseHostPort(input: string, options: { allowPortZero?: boolean } = {}): HostPort {
  const minPort = options.allowPortZero === false ? 1 : 0;
  const got = describeValue(input);
  const colon = input.lastIndexOf(':');
  if (colon <= 0) throw new RangeError(`expected ${HOST_PORT_HINT}, got ${got}`);
  let host = input.slice(0, colon);
  const portText = input.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    if (!isIPv6(host)) throw new RangeError(`expected an IPv6 address inside [brackets], got ${got}`);
  } else if (host.includes(':')) {
    throw new RangeError(`expected an IPv6 address in brackets like "[::1]:8080", got ${got}`);
  } else if (!isHost(host)) {
    throw new RangeError(`expected a host name or IP address before ":port", got ${got}`);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= minPort && port <= 65535)) {
    throw new RangeError(`expected a port ${minPort}-65535 after the host, got ${got}`);
  }
  return { host, port };
}

export function hostPort(allowPortZero: boolean) {
  return z.string({ error: expected(HOST_PORT_HINT) }).transform((input, ctx): HostPort => {
    try {
      return parseHostPort(input, { allowPortZero });
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input });
      return z.NEVER;
    }
  });
}

export const CIDR_HINT = 'an IP address or CIDR like "10.0.0.0/8" or "::1/128"';

/** "10.0.0.0/8" stays as is, a bare IP gets its full-length prefix: the output always has "/bits". */
export const cidr = z.string({ error: expected(CIDR_HINT) }).transform((input, ctx) => {
  const [address = '', bits, extra] = input.split('/');
  const max = isIPv4(address) ? 32 : isIPv6(address) ? 128 : 0;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
  if (max === 0 || extra !== undefined || prefix < 0 || prefix > max) {
    ctx.addIssue({ code: 'custom', message: `expected ${CIDR_HINT}, got ${describeValue(input)}`, input });
    return z.NEVER;
  }
  return `${address}/${prefix}`;
});

export const trustedProxies = list(cidr, `a list of CIDRs (${CIDR_HINT})`).describe(
  'Peers whose X-Forwarded-For / Forwarded headers are believed. A bare IP means /32 (IPv4) or /128 (IPv6).',
);
