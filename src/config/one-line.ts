import type { ConfigInput } from './schema.ts';

export interface OneLineOptions {
  listen: string;
  to: string[];
  workers?: number | 'auto' | undefined;
  admin?: string | undefined;
  logLevel?: string | undefined;
  accessLog?: boolean | undefined;
}

/**
 * The config that `muxgate proxy --listen A --to B,C` stands for: one listener, one catch-all route,
 * one round-robin cluster. It goes through the same schema as a file, so it gets the same defaults
 * and the same validation (with "--listen"/"--to" named in errors by the caller).
 */
export function oneLineConfig(o: OneLineOptions): ConfigInput {
  return {
    log_level: (o.logLevel ?? 'info') as ConfigInput['log_level'],
    access_log: { enabled: o.accessLog ?? true },
    workers: o.workers ?? 1,
    admin: o.admin === undefined ? false : { address: o.admin },
    listeners: [{ name: 'proxy', address: o.listen, routes: [{ cluster: 'upstream' }] }],
    clusters: { upstream: { endpoints: o.to } },
  };
}
