import type { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { ConnectionOptions } from '../http2/connection.ts';
import { H2DownstreamConnection } from './h2-downstream-connection.ts';
import type { ListenerContext } from './listener-context.ts';
import { MemberList } from '../core/member-list.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';

/** A listener's HTTP/2 limits (config `http2:`), as the engine takes them. */
export type H2IngressOptions = Omit<ConnectionOptions, 'enableConnectProtocol'>;

/**
 * The HTTP/2 side of a listener: the listener hands it connections already known to be HTTP/2
 * (ALPN "h2", or the cleartext connection preface) and it serves each with muxgate's own engine
 * (src/http2/) as an H2DownstreamConnection.
 */
export class H2Ingress {
  private readonly ctx: ListenerContext;
  private readonly opts: ConnectionOptions;
  readonly connections = new MemberList<H2DownstreamConnection>();

  constructor(ctx: ListenerContext, opts: H2IngressOptions, enableConnectProtocol: boolean) {
    this.ctx = ctx;
    this.opts = { ...opts, enableConnectProtocol };
  }

  /** Serve HTTP/2 on a connection; `first`: bytes already read from it (the sniffed preface). */
  accept(socket: Socket, first: Buffer | null, origin?: ClientOrigin): void {
    const c = new H2DownstreamConnection(socket, this.ctx, this.opts, this.connections, origin);
    c.start(first);
  }

  /** Graceful: GOAWAY to every connection; streams in flight finish, new ones go elsewhere. */
  drain(): void {
    for (const c of this.connections.snapshot()) c.drain();
  }

  destroyAll(): void {
    for (const c of this.connections.snapshot()) c.destroy();
  }
}
