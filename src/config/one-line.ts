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
}

/**
 * The config that `muxgate proxy --listen A --to B,C [--mode tcp] [--source IP,IP]` stands for: one
 * listener (with one catch-all route, or tcp), one round-robin cluster. It goes through the same schema as a file, so it gets the same defaults
 * and the same validation (with "--listen"/"--to" named in errors by the caller).
 */
export function oneLineConfig(o: OneLineOptions): ConfigInput {
  return {
    log_level: (o.logLevel ?? 'info') as ConfigInput['log_level'],
    access_log: { enabled: o.accessLog ?? true },
    workers: o.workers ?? 1,
    admin: o.admin === undefined ? false : { address: o.admin },
    listeners: [
      o.mode === 'tcp'
        ? { name: 'proxy', address: o.listen, protocol: 'tcp', cluster: 'upstream' }
        : { name: 'proxy', address: o.listen, routes: [{ cluster: 'upstream' }] },
    ],
    clusters: {
      upstream: { endpoints: o.to, ...(o.sources === undefined ? {} : { source_addresses: o.sources }) },
    },
  };
}
