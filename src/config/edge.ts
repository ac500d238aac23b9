/**
 * The L4 edge parts of the schema: a tcp listener's `sni_routes` (TLS passthrough: route by the
 * ClientHello's server name and ALPN without terminating TLS), a listener's `proxy_protocol` (accept
 * HAProxy's PROXY header from trusted peers) and a cluster's `send_proxy_protocol`.
 */
import { z } from 'zod';
import { cidr } from './addresses.ts';
import { int, list, map, oneOf, text } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

/** "api.example.com" or "*.example.com": a DNS name, lower-cased; a wildcard covers one or more labels. */
const SERVER_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const serverName = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(text('a server name like "api.example.com" or "*.example.com"', SERVER_NAME));

export const sniRoute = map('an sni route map', {
  server_names: list(serverName, 'a list of server names', 1)
    .optional()
    .describe('Exact names and "*." wildcards the ClientHello SNI must match; absent: any name (or none).'),
  alpn: list(text('an ALPN protocol id', /^[\x21-\x7e]{1,255}$/), 'a list of ALPN protocol ids', 1)
    .optional()
    .describe('The route matches only when the client offers one of these (e.g. [h2]); absent: any.'),
  cluster: text('a cluster name').describe('Where matching connections go, bytes untouched.'),
});

export type SniRouteConfig = z.output<typeof sniRoute>;

/** A tcp listener's TLS passthrough keys (spread into its map). */
export const sniKeys = {
  sni_routes: list(sniRoute, 'a list of sni routes', 1)
    .optional()
    .describe(
      'TLS passthrough: the ClientHello is read (not consumed) and the first route whose server_names and alpn ' +
        'match picks the cluster; no match goes to `cluster`, or is closed (sni_no_route) when there is none.',
    ),
  sni_timeout: durationMs({ min: 1 })
    .prefault('5s')
    .describe('With sni_routes: the ClientHello must arrive within this; else the connection is closed (sni_timeout).'),
  max_client_hello_bytes: sizeBytes({ min: 512 })
    .prefault('16404B')
    .describe('With sni_routes: a larger ClientHello closes the connection (client_hello_too_large).'),
};

/** A listener's connection limits (spread into both listener maps). */
export const connectionLimitKeys = {
  max_connections: int(0)
    .default(0)
    .describe(
      'Open downstream connections allowed; more wait, accepted but unread, in the accept queue until one closes. 0 = no limit.',
    ),
  max_connections_per_client: int(0)
    .default(0)
    .describe('Open connections allowed per client address (the TCP peer); more are closed at once. 0 = no limit.'),
  accept_queue_size: int(0)
    .default(1024)
    .describe('Connections held at max_connections; beyond, closed at accept (too_many_connections).'),
  accept_queue_timeout: durationMs({ min: 1 })
    .prefault('10s')
    .describe('A connection held longer than this at max_connections is closed (too_many_connections).'),
};

export const proxyProtocolIn = map('a proxy_protocol map', {
  trusted: list(cidr, 'a list of CIDRs', 1).describe(
    'Peers allowed to send a PROXY header (v1 or v2); a connection from elsewhere is closed (proxy_protocol_untrusted).',
  ),
  timeout: durationMs({ min: 1 })
    .prefault('5s')
    .describe('The header must arrive within this; else the connection is closed (proxy_protocol_timeout).'),
});

export type ProxyProtocolInConfig = z.output<typeof proxyProtocolIn>;

export const sendProxyProtocol = oneOf(['v1', 'v2'])
  .optional()
  .describe(
    "Send a PROXY header (HAProxy's PROXY protocol, v1 text or v2 binary) with the client's address first on every upstream connection: " +
      "tcp listeners and TLS passthrough, and HTTP/1.1 pools (protocol http1), whose connections then each carry one client connection's requests only.",
  );

/** Every cluster a tcp listener sends connections to: its default and its sni routes'. */
export function tcpListenerClusters(l: {
  cluster?: string | undefined;
  sni_routes?: SniRouteConfig[] | undefined;
}): string[] {
  const names = l.sni_routes?.map((r) => r.cluster) ?? [];
  if (l.cluster !== undefined) names.unshift(l.cluster);
  return [...new Set(names)];
}
