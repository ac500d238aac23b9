import net, { type AddressInfo } from 'node:net';
import { listenOn } from './listen.ts';
import { Http1Session } from './http1-session.ts';
import type { ListenerContext } from './listener-context.ts';

/** A TCP listener speaking HTTP/1.1 downstream; one Http1Session per accepted connection. */
export class Http1Listener {
  readonly ctx: ListenerContext;
  readonly protocol = 'http1';
  private readonly server: net.Server;
  private readonly sessions = new Set<Http1Session>();

  constructor(ctx: ListenerContext) {
    this.ctx = ctx;
    // allowHalfOpen: a client may send its request and half-close; it still gets its response.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      if (this.ctx.draining) {
        socket.destroy();
        return;
      }
      new Http1Session(socket, this.ctx, this.sessions);
    });
  }

  listen(host: string, port: number, reusePort = false): Promise<AddressInfo> {
    return listenOn(this.server, host, port, reusePort);
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  get connections(): number {
    return this.sessions.size;
  }

  /** Stop accepting; idle keep-alive connections close now, busy ones after their response. */
  drain(): void {
    this.ctx.draining = true;
    this.server.close();
    for (const s of this.sessions) s.drain();
  }

  destroyAll(): void {
    this.server.close();
    for (const s of this.sessions) s.destroy();
  }
}
