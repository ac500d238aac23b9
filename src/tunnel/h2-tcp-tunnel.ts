import { performance } from 'node:perf_hooks';
import type { Http2Stream } from '../http2/stream.ts';
import type { Socket } from 'node:net';
import { unmapIPv4 } from '../core/cidr.ts';
import type { ErrorCode } from '../core/errors.ts';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import type { ListenerTunnel, TcpListenerContext } from './tcp-tunnel.ts';
import { H2ConnectLeg } from './h2-connect-leg.ts';
import { SocketSide } from './socket-side.ts';
import { Splice, type SpliceOwner, type SpliceResult } from './splice.ts';
import { StreamSide } from './stream-side.ts';
import type { Fields } from './tunnel-downstream.ts';
import type { MemberList } from '../core/member-list.ts';

/**
 * One accepted TCP connection of a `tunnel: h2` listener, carried as an HTTP/2 CONNECT stream
 * (RFC 9113 §8.5) to a peer muxgate whose listener has `connect` (the sidecar), which dials
 * `tunnel_target` next to the backend. The streams share the cluster's HTTP/2 session pool, so N
 * client connections need about N / max_concurrent_streams TCP connections between the two proxies.
 * The client socket is accepted paused: nothing is read until the peer answered 200.
 */
export class H2TcpTunnel implements Expirable, SpliceOwner {
  private readonly down: Socket;
  private readonly ctx: TcpListenerContext;
  private readonly tunnels: MemberList<ListenerTunnel>;
  memberSlot = -1;
  private readonly client: string;
  private readonly startedAt = performance.now();
  deadline: number;
  sweepSlot = -1;
  private endpoint: Endpoint | null = null;
  private leg: H2ConnectLeg | null = null;
  private splice: Splice | null = null;
  private status = 0;
  private done = false;

  constructor(down: Socket, ctx: TcpListenerContext, tunnels: MemberList<ListenerTunnel>) {
    this.down = down;
    this.ctx = ctx;
    this.tunnels = tunnels;
    tunnels.add(this);
    this.client = unmapIPv4(down.remoteAddress ?? '');
    ctx.stats.connectionsOpen++;
    ctx.stats.connectionsTotal++;
    ctx.stats.requests++;
    this.deadline = Math.ceil(this.startedAt + ctx.connectTimeoutMs);
    sweeper.add(this);
    down.setNoDelay(true);
    down.on('error', noop);
    down.once('close', this.onClientGone);
    // tunnel h2 listeners always have a cluster (the schema refuses sni_routes with tunnel h2).
    const cluster = ctx.cluster!;
    if (!cluster.admit()) {
      this.fail('circuit_open', 'the cluster has max_requests in flight or max_pending waiting');
      return;
    }
    const ep = cluster.pick(cluster.opts.hashKey?.sourceIp === true ? this.client : undefined);
    const pool = ep?.h2 ?? null;
    if (ep === undefined || pool === null) {
      this.fail('no_healthy_endpoint', 'every endpoint is ejected');
      return;
    }
    this.endpoint = ep;
    ep.active++;
    ep.requests++;
    cluster.requests++;
    const headers = [':method', 'CONNECT', ':authority', (ctx.tunnel as { authority: string }).authority];
    this.leg = new H2ConnectLeg(pool, headers, this);
  }

  destroy(code: ErrorCode): void {
    if (this.splice !== null) this.splice.destroy(code === 'idle_timeout' ? 'idle_timeout' : 'shutting_down');
    else this.fail(code, 'shutting down');
  }

  onStreamUp(stream: Http2Stream, _fields: Fields): void {
    const side = new StreamSide(stream);
    if (this.done || this.down.destroyed) {
      side.reset();
      this.fail('downstream_closed', 'client left while the tunnel was set up');
      return;
    }
    this.status = 200;
    sweeper.delete(this);
    this.down.off('close', this.onClientGone);
    this.ctx.stats.tunnelsOpen++;
    this.ctx.stats.tunnelsTotal++;
    this.ctx.stats.tcpTunnelsOpen++;
    this.splice = new Splice(new SocketSide(this.down, null), side, this.ctx.idleTimeoutMs, this);
  }

  onSpliceDone(r: SpliceResult): void {
    this.ctx.stats.tunnelsOpen--;
    this.ctx.stats.tcpTunnelsOpen--;
    this.finish(null, r);
  }

  onDeclined(status: number, _fields: Fields, body: Buffer): void {
    this.status = status;
    this.fail('upstream_connect_failed', `peer answered ${status}: ${body.toString('utf8', 0, 200).trim()}`);
  }

  onLegFailed(code: ErrorCode, detail: string): void {
    this.fail(code, detail);
  }

  onNoH2(): void {
    this.fail('upstream_protocol_error', 'the peer does not speak HTTP/2');
  }

  expire(): void {
    this.fail('upstream_timeout', 'no CONNECT answer within connect_timeout');
  }

  private readonly onClientGone = (): void => {
    this.fail('downstream_closed', 'client left while the tunnel was set up');
  };

  private fail(code: ErrorCode, detail: string): void {
    if (this.done) return;
    this.leg?.cancel();
    if (!this.down.destroyed) this.down.destroy();
    if (code !== 'downstream_closed') {
      this.ctx.stats.recordError(code);
      this.ctx.cluster?.recordError(code);
    }
    this.finish(code, null, detail);
  }

  private finish(code: ErrorCode | null, r: SpliceResult | null, detail?: string): void {
    if (this.done) return;
    this.done = true;
    sweeper.delete(this);
    this.tunnels.delete(this);
    const ep = this.endpoint;
    if (ep !== null) ep.active--;
    const stats = this.ctx.stats;
    stats.connectionsOpen--;
    stats.bytesIn += r?.bytesIn ?? 0;
    stats.bytesOut += r?.bytesOut ?? 0;
    this.ctx.accessLog?.event({
      listener: this.ctx.name,
      client: this.client,
      upstream: ep?.key ?? null,
      tunnel: 'h2',
      status: this.status,
      bytes_in: r?.bytesIn ?? 0,
      bytes_out: r?.bytesOut ?? 0,
      duration_ms: Math.round(performance.now() - this.startedAt),
      end: r?.end,
      closed_by: r?.closedFirst ?? null,
      ...(code === null ? {} : { error: code, detail }),
    });
  }
}

function noop(): void {}
