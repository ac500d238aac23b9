import { performance } from 'node:perf_hooks';
import type { ErrorCode } from '../core/errors.ts';
import type { SpliceResult } from './splice.ts';
import type { TunnelDownstream } from './tunnel-downstream.ts';

export interface TunnelRecord {
  /** websocket, another upgrade token, connect, connect-udp. */
  kind: string;
  host: string;
  path: string;
  status: number;
  upstream: string | undefined;
  upstreamProtocol: string | undefined;
  startedAt: number;
  error: ErrorCode | null;
  detail?: string | undefined;
  /** Set when the tunnel was up: its byte counts and how it ended. */
  result: SpliceResult | null;
  bytesIn?: number;
  bytesOut?: number;
  end?: string;
}

/** One access-log line per tunnel, written when it is over; its bytes count in the listener's totals. */
export function logTunnel(down: TunnelDownstream, t: TunnelRecord): void {
  const ctx = down.ctx;
  const r = t.result;
  const bytesIn = r?.bytesIn ?? t.bytesIn ?? 0;
  const bytesOut = r?.bytesOut ?? t.bytesOut ?? 0;
  ctx.stats.bytesIn += bytesIn;
  ctx.stats.bytesOut += bytesOut;
  const log = ctx.accessLog;
  if (log === null) return;
  log.event({
    listener: ctx.name,
    client: down.peer,
    protocol: down.h2 ? 'HTTP/2' : 'HTTP/1.1',
    tunnel: t.kind,
    host: t.host,
    path: t.path,
    status: t.status,
    bytes_in: bytesIn,
    bytes_out: bytesOut,
    duration_ms: Math.round((performance.now() - t.startedAt) * 100) / 100,
    upstream: t.upstream,
    upstream_protocol: t.upstreamProtocol,
    end: r?.end ?? t.end,
    closed_first: r?.closedFirst ?? undefined,
    error: t.error ?? undefined,
    detail: t.detail,
  });
}
