/**
 * Where a cluster connects and where from: endpoints ("host:port", "host:first-last", or a map with one
 * port or several), and the source addresses and port range muxgate allocates from.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { isHost, parseHostPort, unbracket } from './addresses.ts';
import { describeValue } from './config-error.ts';
import { exactlyOne, expected, int, list, map } from './schema-builders.ts';

const endpointHost = z
  .string({ error: expected('a host name or IP address') })
  .transform(unbracket)
  .refine(isHost, { error: expected('a host name or IP address') });

const PORT_RANGE = /^(\d{1,5})-(\d{1,5})$/;

/** "9000-9003" -> [9000, 9001, 9002, 9003]; undefined when the text is not a valid range. */
function portRange(text: string, min = 1): number[] | undefined {
  const m = PORT_RANGE.exec(text);
  if (m === null) return undefined;
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo < min || hi > 65535 || lo > hi) return undefined;
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

interface EndpointOut {
  host: string;
  port: number;
  weight: number;
}

const ENDPOINT_TEXT_HINT = '"host:port" or "host:first-last" (a port range)';
const endpointText = z.string({ error: expected(ENDPOINT_TEXT_HINT) }).transform((input, ctx): EndpointOut[] => {
  const colon = input.lastIndexOf(':');
  const portText = colon > 0 ? input.slice(colon + 1) : '';
  try {
    if (!PORT_RANGE.test(portText)) return [{ ...parseHostPort(input, { allowPortZero: false }), weight: 1 }];
    const ports = portRange(portText);
    if (ports === undefined) {
      throw new RangeError(
        `expected a port range "first-last" within 1-65535 after the host, got ${describeValue(input)}`,
      );
    }
    let host = input.slice(0, colon);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    else if (host.includes(':')) {
      throw new RangeError(`expected an IPv6 address in brackets like "[::1]:9000-9003", got ${describeValue(input)}`);
    }
    if (!isHost(host)) {
      throw new RangeError(`expected a host name or IP address before ":first-last", got ${describeValue(input)}`);
    }
    return ports.map((port) => ({ host, port, weight: 1 }));
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, input });
    return z.NEVER;
  }
});

const portList = z
  .union(
    [
      list(int(1, 65535), 'a list of ports', 1),
      z.string({ error: expected('"first-last"') }).transform((t, ctx) => {
        const r = portRange(t);
        if (r !== undefined) return r;
        ctx.addIssue({
          code: 'custom',
          message: `expected a port range "first-last" within 1-65535, got ${describeValue(t)}`,
          input: t,
        });
        return z.NEVER;
      }),
    ],
    { error: expected('a list of ports or a range "first-last"') },
  )
  .describe('Several ports of the same host, as a list or "first-last": one endpoint per port.');

const endpointMap = map('an endpoint map', {
  host: endpointHost.describe('DNS name (re-resolved every dns_refresh) or IP address.'),
  port: int(1, 65535).optional(),
  ports: portList.optional(),
  weight: int(1, 1000).default(1).describe('Relative share of traffic, 1-1000.'),
})
  .superRefine(exactlyOne(['port', 'ports']))
  .transform((e): EndpointOut[] =>
    (e.ports ?? [e.port ?? 0]).map((port) => ({ host: e.host, port, weight: e.weight })),
  );

export const endpoint = z
  .union([endpointText, endpointMap], {
    error: expected('"host:port", "host:first-last" or a map with host, port (or ports) and weight'),
  })
  .describe(
    '"host:port", "host:first-last", or { host, port | ports, weight }. A port range is one endpoint per port.',
  );

export const sourceAddress = z
  .string({ error: expected('an IPv4 or IPv6 address') })
  .transform(unbracket)
  .refine((a) => isIP(a) !== 0, { error: expected('an IPv4 or IPv6 address') });

export const sourcePortRange = z
  .string({ error: expected('a port range "first-last" within 1024-65535') })
  .transform((t, ctx) => {
    const r = portRange(t, 1024);
    if (r !== undefined) return { first: r[0] ?? 0, last: r[r.length - 1] ?? 0 };
    ctx.addIssue({
      code: 'custom',
      message: `expected a port range "first-last" within 1024-65535, got ${describeValue(t)}`,
      input: t,
    });
    return z.NEVER;
  });
