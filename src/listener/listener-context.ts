import type { CidrSet } from '../core/cidr.ts';
import type { AccessLog } from '../core/access-log.ts';
import type { Logger } from '../core/log.ts';
import type { Router } from '../router/router.ts';
import type { ConnectPolicy } from '../tunnel/connect-policy.ts';
import type { TunnelContext } from '../tunnel/tunnel-downstream.ts';
import type { ListenerStats } from '../core/listener-stats.ts';

export interface ListenerLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /**
   * When the listener drains (shutdown, reload, upgrade), how long an idle keep-alive connection
   * stays open for a request already on its way (answered with `connection: close`): closing it at
   * once would fail a request the client sent at that instant.
   */
  drainIdleGraceMs: number;
}

/**
 * Everything a downstream connection needs from its listener, resolved once at start. The exchange
 * and the tunnels see it through narrower views of their own (DownstreamContext, TunnelContext).
 */
export interface ListenerContext extends TunnelContext {
  name: string;
  router: Router;
  limits: ListenerLimits;
  trusted: CidrSet;
  /** "muxgate" (the Via pseudonym) or null when Via is off. */
  via: string | null;
  proto: 'http' | 'https';
  accessLog: AccessLog | null;
  log: Logger;
  stats: ListenerStats;
  /** The forward proxy (CONNECT, CONNECT-UDP), or null: CONNECT gets 405. */
  connect: ConnectPolicy | null;
  /** Set while draining: every response closes its connection. */
  draining: boolean;
  /** Plain TCP sessions use core/direct-io.ts (config `direct_io`). */
  directIo: boolean;
  /** Read a PROXY header first (from these peers only); its client address is the connection's peer. Null: none. */
  proxyProtocol: { trusted: CidrSet; timeoutMs: number } | null;
}
