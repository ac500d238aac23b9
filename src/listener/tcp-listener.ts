import net, { type AddressInfo } from 'node:net';
import { listenOn } from './listen.ts';
import { TcpTunnel } from '../tunnel/tcp-tunnel.ts';
import { H2TcpTunnel } from '../tunnel/h2-tcp-tunnel.ts';
import { ListenerStats } from '../core/listener-stats.ts';
import type { ListenerTunnel, TcpListenerContext } from '../tunnel/tcp-tunnel.ts';
import { MemberList } from '../core/member-list.ts';
import { unmapIPv4 } from '../core/cidr.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { TcpOpening } from '../tunnel/tcp-tunnel.ts';
import type { Preamble, PreambleOptions } from './l4-preamble.ts';
import { openingOf, readPreamble, refuseConnection } from './before-routing.ts';
import type { SniRouter } from './sni-router.ts';
import { ConnectionGate, type GateLimits } from './connection-gate.ts';

/** What a tcp listener reads before it picks a cluster: a PROXY header, a ClientHello to route by. */
export interface TcpEdge {
  preamble: PreambleOptions | null;
  sni: SniRouter<Cluster> | null;
}

/** Everything a TCP tunnel needs from its listener, resolved once at start. */

/**
 * An L4 listener: each accepted connection is piped to an endpoint of one cluster (TcpTunnel), or with
 * `tunnel: h2` carried as a CONNECT stream to a peer muxgate (H2TcpTunnel). The client socket is
 * accepted paused, so nothing is read until the upstream side is connected.
 */
export class TcpListener {
  readonly ctx: TcpListenerContext;
  readonly protocol = 'tcp';
  private readonly server: net.Server;
  private readonly tunnels = new MemberList<ListenerTunnel>();
  readonly gate: ConnectionGate;

  /** Connections still reading their preamble (bounded by its timeouts). */
  private readonly pending = new Set<net.Socket>();
  edge: TcpEdge;

  constructor(ctx: TcpListenerContext, limits: GateLimits, edge: TcpEdge = { preamble: null, sni: null }) {
    this.ctx = ctx;
    this.edge = edge;
    this.gate = new ConnectionGate(limits, (socket, code) => refuseConnection(this.ctx, socket, code, ''));
    // Accepted paused: nothing is read until the upstream side is connected (or the preamble is read).
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      if (this.ctx.draining) {
        socket.destroy();
        return;
      }
      if (!this.gate.active) this.accepted(socket);
      else this.gate.admit(socket, unmapIPv4(socket.remoteAddress ?? ''), () => this.accepted(socket));
    });
  }

  private accepted(socket: net.Socket): void {
    if (this.ctx.tunnel !== null) new H2TcpTunnel(socket, this.ctx, this.tunnels);
    else if (this.edge.preamble !== null) this.readPreamble(socket, this.edge.preamble);
    else this.open(socket, this.direct(socket));
  }

  private direct(socket: net.Socket): TcpOpening | null {
    const cluster = this.ctx.cluster;
    if (cluster === null) return null;
    return {
      cluster,
      client: unmapIPv4(socket.remoteAddress ?? ''),
      clientPort: socket.remotePort ?? 0,
      destination: unmapIPv4(socket.localAddress ?? ''),
      destinationPort: socket.localPort ?? 0,
      first: null,
      sni: null,
    };
  }

  private open(socket: net.Socket, opening: TcpOpening | null): void {
    if (opening === null) refuseConnection(this.ctx, socket, 'sni_no_route', '');
    else new TcpTunnel(socket, this.ctx, this.tunnels as MemberList<TcpTunnel>, opening);
  }

  private readPreamble(socket: net.Socket, opts: PreambleOptions): void {
    readPreamble(socket, opts, this.pending, this.ctx, (p) => this.open(socket, this.routed(p)));
  }

  private routed(p: Preamble): TcpOpening | null {
    const sni = this.edge.sni;
    const cluster = sni === null ? this.ctx.cluster : sni.pick(p.hello?.serverName ?? null, p.hello?.alpn ?? []);
    return cluster === null ? null : openingOf(p, cluster);
  }

  get name(): string {
    return this.ctx.name;
  }

  get stats(): ListenerStats {
    return this.ctx.stats;
  }

  listen(host: string, port: number, reusePort = false): Promise<AddressInfo> {
    return listenOn(this.server, host, port, reusePort);
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  get connections(): number {
    return this.tunnels.size + this.pending.size;
  }

  /** Stop accepting; open tunnels carry on until they end or the drain timeout cuts them. */
  drain(): void {
    this.ctx.draining = true;
    this.server.close();
    this.gate.closeHeld();
  }

  destroyAll(): void {
    this.server.close();
    this.gate.closeHeld();
    for (const s of this.pending) s.destroy();
    for (const t of this.tunnels.snapshot()) t.destroy('shutting_down');
  }
}

export { ListenerStats };
