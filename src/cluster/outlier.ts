import type { Logger } from '../core/log.ts';

/** Passive outlier detection of a cluster (config `outlier:`). Zero turns a counter off. */
export interface OutlierOptions {
  consecutiveConnectFailures: number;
  consecutive5xx: number;
  /** 502, 503, 504 answered by the upstream, and upstream resets, timeouts and protocol errors. */
  consecutiveGatewayErrors: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  /** Ejections stop while this share of the endpoints is out (one may always be). */
  maxEjectionPercent: number;
}

/** What the detector reads and writes on an endpoint. */
export interface OutlierTarget {
  readonly key: string;
  ejected: boolean;
  connectFailuresInRow: number;
  errors5xxInRow: number;
  gatewayErrorsInRow: number;
  /** Times ejected so far: each ejection lasts base_ejection_time × this, up to max_ejection_time. */
  ejections: number;
  ejectTimer: NodeJS.Timeout | null;
}

/**
 * Ejects endpoints that keep failing (Envoy's outlier detection, simplified): consecutive connect
 * failures, 5xx answers or gateway errors take an endpoint out of selection for a time that grows with
 * each ejection, so a flapping endpoint sits out longer each time; `max_ejection_percent` keeps the
 * rest serving. Successes reset the counters, not the ejection count.
 */
export class OutlierDetector {
  private readonly opts: OutlierOptions;
  private readonly endpoints: () => readonly OutlierTarget[];
  private readonly log: Logger;
  private readonly cluster: string;
  /** Ejections refused by max_ejection_percent (in /stats). */
  refused = 0;

  constructor(opts: OutlierOptions, endpoints: () => readonly OutlierTarget[], log: Logger, cluster: string) {
    this.opts = opts;
    this.endpoints = endpoints;
    this.log = log;
    this.cluster = cluster;
  }

  connectSucceeded(e: OutlierTarget): void {
    e.connectFailuresInRow = 0;
  }

  connectFailed(e: OutlierTarget): void {
    const max = this.opts.consecutiveConnectFailures;
    if (++e.connectFailuresInRow >= max && max > 0) this.eject(e, 'connect failures', e.connectFailuresInRow);
  }

  /** The upstream answered `status` (the hot path: one call per response, nothing to do on a run of successes). */
  responded(e: OutlierTarget, status: number): void {
    if (status < 500) {
      if (e.errors5xxInRow !== 0 || e.gatewayErrorsInRow !== 0) {
        e.errors5xxInRow = 0;
        e.gatewayErrorsInRow = 0;
      }
      return;
    }
    const o = this.opts;
    if (++e.errors5xxInRow >= o.consecutive5xx && o.consecutive5xx > 0) {
      this.eject(e, '5xx answers', e.errors5xxInRow);
      return;
    }
    if (status >= 502 && status <= 504) this.gatewayError(e);
  }

  /** A reset, timeout or malformed answer from the upstream, or a 502/503/504 it sent. */
  gatewayError(e: OutlierTarget): void {
    const max = this.opts.consecutiveGatewayErrors;
    if (++e.gatewayErrorsInRow >= max && max > 0) this.eject(e, 'gateway errors', e.gatewayErrorsInRow);
  }

  private eject(e: OutlierTarget, reason: string, inRow: number): void {
    if (e.ejected) return;
    const all = this.endpoints();
    let out = 0;
    for (const x of all) if (x.ejected) out++;
    const allowed = Math.max(1, Math.floor((all.length * this.opts.maxEjectionPercent) / 100));
    if (out + 1 > allowed) {
      this.refused++;
      return;
    }
    e.ejected = true;
    e.ejections++;
    e.connectFailuresInRow = 0;
    e.errors5xxInRow = 0;
    e.gatewayErrorsInRow = 0;
    const ms = Math.min(this.opts.baseEjectionMs * e.ejections, this.opts.maxEjectionMs);
    this.log.warn(
      { cluster: this.cluster, endpoint: e.key, reason, in_a_row: inRow, ejection_ms: ms, ejections: e.ejections },
      'endpoint ejected',
    );
    e.ejectTimer = setTimeout(() => {
      e.ejectTimer = null;
      e.ejected = false;
    }, ms);
    e.ejectTimer.unref();
  }
}
