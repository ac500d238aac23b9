import type { CidrSet } from '../core/cidr.ts';
import type { Logger } from '../core/log.ts';
import type { Router } from '../router/router.ts';
import type { ConnectPolicy } from '../tunnel/connect-policy.ts';

export interface ListenerLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
}

/** Counters of one listener, written by the data path and only read by stats/admin. */
export class ListenerStats {
  connectionsOpen = 0;
  connectionsTotal = 0;
  requests = 0;
  errors = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Upgraded connections, CONNECT and CONNECT-UDP tunnels that are up. */
  tunnelsOpen = 0;
  tunnelsTotal = 0;
  readonly errorCodes = new Map<string, number>();

  recordError(code: string): void {
    this.errors++;
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
  }
}

/** Everything a downstream connection needs from its listener, resolved once at start. */
export interface ListenerContext {
  name: string;
  router: Router;
  limits: ListenerLimits;
  trusted: CidrSet;
  /** "muxgate" (the Via pseudonym) or null when Via is off. */
  via: string | null;
  proto: 'http' | 'https';
  accessLog: Logger | null;
  log: Logger;
  stats: ListenerStats;
  /** The forward proxy (CONNECT, CONNECT-UDP), or null: CONNECT gets 405. */
  connect: ConnectPolicy | null;
  /** Set while draining: every response closes its connection. */
  draining: boolean;
  /** Plain TCP sessions use core/direct-io.ts (config `direct_io`). */
  directIo: boolean;
}
