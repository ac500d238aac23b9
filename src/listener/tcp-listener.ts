import net, { type AddressInfo } from 'node:net';
import { listenOn } from './listen.ts';
import { TcpTunnel } from '../forward/tcp-tunnel.ts';
import { H2TcpTunnel } from '../tunnel/h2-tcp-tunnel.ts';
import { ListenerStats } from '../core/listener-stats.ts';
import type { ListenerTunnel, TcpListenerContext } from '../forward/tcp-tunnel.ts';
import { MemberList } from '../core/member-list.ts';

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
  /** Connections closed at accept because max_connections were open. */
  rejected = 0;

  constructor(ctx: TcpListenerContext, maxConnections: number) {
    this.ctx = ctx;
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      if (this.ctx.draining) {
        socket.destroy();
        return;
      }
      if (this.ctx.tunnel !== null) new H2TcpTunnel(socket, this.ctx, this.tunnels);
      else new TcpTunnel(socket, this.ctx, this.tunnels as MemberList<TcpTunnel>);
    });
    if (maxConnections > 0) this.server.maxConnections = maxConnections;
    this.server.on('drop', () => {
      this.rejected++;
      this.ctx.stats.recordError('too_many_connections');
    });
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
    return this.tunnels.size;
  }

  /** Stop accepting; open tunnels carry on until they end or the drain timeout cuts them. */
  drain(): void {
    this.ctx.draining = true;
    this.server.close();
  }

  destroyAll(): void {
    this.server.close();
    for (const t of this.tunnels.snapshot()) t.destroy('shutting_down');
  }
}

export { ListenerStats };
