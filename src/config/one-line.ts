import type { ConfigInput } from './schema.ts';

export interface OneLineOptions {
  listen: string;
  to: string[];
  workers?: number | 'auto' | undefined;
  admin?: string | undefined;
  logLevel?: string | undefined;
  accessLog?: boolean | undefined;
  /** http (default): an HTTP/1.1 reverse proxy; tcp: an L4 proxy. */
  mode?: 'http' | 'tcp' | undefined;
  /** source_addresses of the cluster. */
  sources?: string[] | undefined;
  /** Listener protocol (http mode): http1, http2 or auto. */
  protocol?: 'http1' | 'http2' | 'auto' | undefined;
  /** Terminate TLS on the listener with this certificate and key. */
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /**
   * Pass WebSockets (default true, as `caddy reverse-proxy` does): the catch-all route allows the
   * `websocket` upgrade; to an HTTP/2 upstream each one rides the session pool as an RFC 8441 stream
   * (an HTTP/1.1 Upgrade where the endpoint does not advertise extended CONNECT).
   */
  websocket?: boolean | undefined;
}

/** What a `--to` URL scheme says about the upstream. */
const SCHEMES: Record<string, { protocol: 'http1' | 'http2' | 'auto'; tls: boolean }> = {
  'http:': { protocol: 'http1', tls: false },
  'h2c:': { protocol: 'http2', tls: false },
  'https:': { protocol: 'auto', tls: true },
  'h2:': { protocol: 'http2', tls: true },
};

/**
 * Splits `--to` targets into endpoints and the upstream protocol: "host:port" is HTTP/1.1,
 * "h2c://host:port" HTTP/2 cleartext, "https://host:port" TLS with ALPN choosing (like
 * `caddy reverse-proxy`), "h2://host:port" HTTP/2 over TLS. All targets must agree.
 */
export function upstreamOf(targets: string[]): {
  endpoints: string[];
  protocol: 'http1' | 'http2' | 'auto';
  tls: boolean;
} {
  let kind: { protocol: 'http1' | 'http2' | 'auto'; tls: boolean } | null = null;
  let kindName = '';
  const endpoints: string[] = [];
  for (const t of targets) {
    const m = /^([a-z0-9]+):\/\/([^/]*)\/?$/i.exec(t);
    const scheme = m === null ? 'http:' : `${m[1]!.toLowerCase()}:`;
    const k = SCHEMES[scheme];
    if (k === undefined) throw new Error(`--to: unknown scheme "${scheme}//" in "${t}" (use http, h2c, https or h2)`);
    if (kind !== null && (k.protocol !== kind.protocol || k.tls !== kind.tls)) {
      throw new Error(`--to: every target must use the same scheme, got ${kindName} and ${scheme}//`);
    }
    kind = k;
    kindName = `${scheme}//`;
    let hostPort = m === null ? t : m[2]!;
    // A URL may leave the port to its scheme.
    if (!/:\d+$/.test(hostPort)) hostPort += k.tls ? ':443' : ':80';
    endpoints.push(hostPort);
  }
  return { endpoints, protocol: kind?.protocol ?? 'http1', tls: kind?.tls ?? false };
}

/**
 * The config that `muxgate proxy --listen A --to B,C [--mode tcp] [--source IP,IP] [--protocol P]
 * [--tls-cert F --tls-key F] [--no-websocket]` stands for: one listener (with one catch-all route
 * that passes WebSockets unless told not to, or tcp), one
 * round-robin cluster. It goes through the same schema as a file, so it gets the same defaults
 * and the same validation (with "--listen"/"--to" named in errors by the caller).
 */
export function oneLineConfig(o: OneLineOptions): ConfigInput {
  const up = upstreamOf(o.to);
  const ws = o.websocket ?? true;
  const tls = o.tlsCert === undefined || o.tlsKey === undefined ? {} : { tls: { cert: o.tlsCert, key: o.tlsKey } };
  return {
    log_level: (o.logLevel ?? 'info') as ConfigInput['log_level'],
    access_log: { enabled: o.accessLog ?? true },
    workers: o.workers ?? 1,
    admin: o.admin === undefined ? false : { address: o.admin },
    listeners: [
      o.mode === 'tcp'
        ? { name: 'proxy', address: o.listen, protocol: 'tcp', cluster: 'upstream' }
        : {
            name: 'proxy',
            address: o.listen,
            protocol: o.protocol ?? 'http1',
            ...tls,
            routes: [{ cluster: 'upstream', ...(ws ? { upgrades: ['websocket'] } : {}) }],
          },
    ],
    clusters: {
      upstream: {
        endpoints: up.endpoints,
        ...(up.protocol === 'http1' ? {} : { protocol: up.protocol }),
        ...(up.tls ? { tls: true } : {}),
        ...(ws && up.protocol !== 'http1' ? { websocket: 'h2' } : {}),
        ...(o.sources === undefined ? {} : { source_addresses: o.sources }),
      },
    },
  };
}
