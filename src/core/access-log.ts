import type { LineSink, SinkStats } from './log-file.ts';

/** One proxied request, as the exchange reports it. Optional fields are left out of the line when absent. */
export interface RequestRecord {
  listener: string;
  client: string;
  protocol: string;
  method: string;
  host: string;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  upstream: string | undefined;
  upstreamProtocol: string | undefined;
  poolWaitMs: number;
  error: string | null;
  /** Tries made (1 unless the route retried). */
  attempts: number;
  /** Why a retry the route allowed did not happen, or null. */
  retrySkipped: string | null;
  /** On a route with a cache: what it did, as Cache-Status says it after the cache's name ("hit; ttl=60"). */
  cache?: string | undefined;
}

export interface AccessLogOptions {
  /** Log only lines with an error code or a status of 400 or more. */
  errorsOnly: boolean;
  /** Of the other lines, log one in this many (1 = all). Error lines are always logged. */
  sample: number;
}

/**
 * The access log: one JSON object per line, `time` first. Request lines, the hot path, are
 * formatted by string concatenation in a fixed field order (no intermediate object, no generic
 * serializer: pino's per-line work was most of the log's cost); rarer lines (tunnels, refusals) go
 * through JSON.stringify. Lines go to a LineSink that batches them into large writes.
 */
export class AccessLog {
  readonly sink: LineSink;
  private readonly errorsOnly: boolean;
  private readonly sample: number;
  private sampleCount = 0;
  /** Lines left out by errors_only or sampling (counted, so the totals still add up). */
  skipped = 0;
  // The ISO timestamp up to the seconds, kept for the second it names: one Date per second.
  private secondStart = -1;
  private secondPrefix = '';
  private lastNow = -1;
  private lastTime = '';

  constructor(sink: LineSink, opts: AccessLogOptions = { errorsOnly: false, sample: 1 }) {
    this.sink = sink;
    this.errorsOnly = opts.errorsOnly;
    this.sample = Math.max(1, Math.floor(opts.sample));
  }

  get stats(): SinkStats {
    return this.sink.stats;
  }

  request(r: RequestRecord): void {
    if (!this.keep(r.status, r.error)) return;
    // listener (a config name: [a-z0-9_-]), client and upstream (IP:port) need no escaping; what the
    // client sent (method, host, path) goes through str().
    let line =
      `{"time":"${this.time()}","listener":"${r.listener}","client":"${r.client}","protocol":"${r.protocol}"` +
      `,"method":${str(r.method)},"host":${str(r.host)},"path":${str(r.path)},"status":${r.status}` +
      `,"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"duration_ms":${round2(r.durationMs)}`;
    if (r.upstream !== undefined) line += `,"upstream":"${r.upstream}"`;
    if (r.upstreamProtocol !== undefined) line += `,"upstream_protocol":"${r.upstreamProtocol}"`;
    line += `,"pool_wait_ms":${round2(r.poolWaitMs)}`;
    if (r.error !== null) line += `,"error":"${r.error}"`;
    if (r.attempts > 1) line += `,"attempts":${r.attempts}`;
    if (r.retrySkipped !== null) line += `,"retry_skipped":"${r.retrySkipped}"`;
    if (r.cache !== undefined) line += `,"cache":"${r.cache}"`;
    this.sink.write(`${line}}\n`, 1);
  }

  /** Any other line: its fields in the order given, `undefined` ones left out. */
  event(fields: Record<string, unknown>): void {
    const status = typeof fields.status === 'number' ? fields.status : 0;
    const error = typeof fields.error === 'string' ? fields.error : null;
    if (!this.keep(status, error)) return;
    const body = JSON.stringify(fields);
    this.sink.write(`{"time":"${this.time()}"${body.length > 2 ? ',' : ''}${body.slice(1)}\n`, 1);
  }

  private keep(status: number, error: string | null): boolean {
    if (error !== null || status >= 400) return true;
    if (this.errorsOnly) {
      this.skipped++;
      return false;
    }
    if (this.sample === 1) return true;
    if (++this.sampleCount >= this.sample) {
      this.sampleCount = 0;
      return true;
    }
    this.skipped++;
    return false;
  }

  private time(): string {
    const now = Date.now();
    // Under load dozens of lines share a millisecond: the same string.
    if (now === this.lastNow) return this.lastTime;
    this.lastNow = now;
    this.lastTime = this.format(now);
    return this.lastTime;
  }

  private format(now: number): string {
    const ms = now - this.secondStart;
    if (ms < 0 || ms >= 1000) {
      this.secondStart = now - (now % 1000);
      // "2026-12-03T17:50:17.000Z" without its milliseconds and zone
      this.secondPrefix = new Date(this.secondStart).toISOString().slice(0, 20);
      return `${this.secondPrefix}${pad3(now % 1000)}Z`;
    }
    return `${this.secondPrefix}${pad3(ms)}Z`;
  }
}

function pad3(n: number): string {
  return n >= 100 ? `${n}` : n >= 10 ? `0${n}` : `00${n}`;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/**
 * A JSON string literal. Request fields were checked by the parser, so nearly every value is plain
 * printable ASCII without quotes or backslashes and is copied as is; anything else goes through
 * JSON.stringify.
 */
export function str(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) return JSON.stringify(s);
  }
  return `"${s}"`;
}
