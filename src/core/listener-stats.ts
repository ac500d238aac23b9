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
