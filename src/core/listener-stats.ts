import { DurationHistogram } from './duration-histogram.ts';

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
  /**
   * Tunnels that are up, by kind: WebSockets (and any other Upgrade token a route allows), CONNECT,
   * CONNECT-UDP, and TCP (an L4 listener's connections, direct or carried over HTTP/2).
   */
  websocketsOpen = 0;
  otherUpgradesOpen = 0;
  connectsOpen = 0;
  connectUdpOpen = 0;
  tcpTunnelsOpen = 0;
  readonly errorCodes = new Map<string, number>();
  /** Request durations, from the head read to the last byte relayed (or the error answered). */
  readonly requestDuration = new DurationHistogram();

  recordError(code: string): void {
    this.errors++;
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
  }
}
