import type { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { unmapIPv4 } from '../core/cidr.ts';
import { forwardingFields } from '../forward/forwarding-cache.ts';
import type { RequestHead } from '../http1/request-head.ts';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import {
  type ConnectionFailure,
  type ConnectionHandler,
  type ConnectionOptions,
  Http2Connection,
} from '../http2/connection.ts';
import { ENHANCE_YOUR_CALM, errorName } from '../http2/frame.ts';
import type { Http2Stream } from '../http2/stream.ts';
import { isH2Connect, startH2Tunnel } from '../tunnel/tunnel-entry.ts';
import { H2RequestStream } from './h2-request-stream.ts';
import type { ListenerContext } from './listener-context.ts';
import type { MemberList } from '../core/member-list.ts';
import { type ClientOrigin, socketOrigin } from '../proxy-protocol/client-origin.ts';

/**
 * One downstream HTTP/2 connection: who the peer is (decided once, like an HTTP/1.1 session), the
 * engine connection, and what its streams become: a CONNECT stream a tunnel, anything else a
 * request (H2RequestStream). No new stream for idle_timeout and none open: graceful GOAWAY.
 */
export class H2DownstreamConnection implements ConnectionHandler, Expirable {
  readonly conn: Http2Connection;
  readonly ctx: ListenerContext;
  readonly peer: string;
  private readonly socket: Socket;
  /** From a PROXY header, or the socket's ends once asked for. */
  private givenOrigin: ClientOrigin | undefined;
  readonly trusted: boolean;
  private readonly set: MemberList<H2DownstreamConnection>;
  memberSlot = -1;
  /** Whole milliseconds (Math.ceil): see Http2Connection.deadline for why. */
  deadline = 0;
  sweepSlot = -1;
  /** The last forwarding block and what it was built for (see forwarding-cache.ts). */
  fwdHost: string | null = null;
  fwdVersion = '';
  fwdFields = '';

  /** `origin`: the client as a PROXY header named it (default: the socket's ends). */
  constructor(
    socket: Socket,
    ctx: ListenerContext,
    opts: ConnectionOptions,
    set: MemberList<H2DownstreamConnection>,
    origin?: ClientOrigin,
  ) {
    this.ctx = ctx;
    this.set = set;
    this.socket = socket;
    this.givenOrigin = origin;
    this.peer = origin?.client ?? unmapIPv4(socket.remoteAddress ?? '');
    this.trusted = ctx.trusted.has(this.peer);
    this.conn = new Http2Connection(socket, 'server', this, opts);
  }

  start(first: Buffer | null): void {
    const ctx = this.ctx;
    this.set.add(this);
    ctx.stats.connectionsOpen++;
    ctx.stats.connectionsTotal++;
    this.deadline = deadlineIn(ctx.limits.idleTimeoutMs);
    sweeper.add(this);
    this.conn.start(first);
    if (ctx.draining) this.conn.shutdown();
  }

  /** X-Forwarded-*, Forwarded and Via lines for a request on this connection (memoised: forwarding-cache.ts). */
  forwardingFields(head: RequestHead): string {
    return forwardingFields(this, head, '2');
  }

  /** The client connection's two ends, as a PROXY header to an upstream names them (made on first use). */
  origin(): ClientOrigin {
    if (this.givenOrigin === undefined) this.givenOrigin = socketOrigin(this.socket);
    return this.givenOrigin;
  }

  get openStreams(): number {
    return this.conn.openStreams;
  }

  onStream(stream: Http2Stream, fields: readonly string[] | null, endStream: boolean): void {
    // While draining, streams up to the last id of our second GOAWAY are still served (§6.8): the
    // engine ignores those above it.
    this.deadline = deadlineIn(this.ctx.limits.idleTimeoutMs);
    if (fields !== null && isH2Connect(fields)) {
      startH2Tunnel(stream, this, fields);
      return;
    }
    new H2RequestStream(stream, this).start(fields, endStream);
  }

  /** No stream opened for idle_timeout: GOAWAY once none is open either. */
  expire(): void {
    if (this.conn.openStreams === 0) this.conn.shutdown();
    else this.deadline = deadlineIn(this.ctx.limits.idleTimeoutMs);
  }

  onGoaway(): void {}

  onStreamError(_stream: Http2Stream, code: string): void {
    this.ctx.stats.recordError(code);
  }

  onStall(): void {
    this.ctx.stats.recordError('h2_send_stall');
  }

  onClose(failure: ConnectionFailure | null): void {
    const ctx = this.ctx;
    this.deadline = 0;
    sweeper.delete(this);
    if (!this.set.delete(this)) return;
    ctx.stats.connectionsOpen--;
    if (failure === null || !failure.local) return;
    ctx.stats.recordError(failure.code);
    const fields = {
      listener: ctx.name,
      client: this.peer,
      error: failure.code,
      h2_error: errorName(failure.h2code),
      detail: failure.detail,
    };
    // A flood is an attack the operator wants to see; a protocol error is a broken client, logged quietly.
    if (failure.code === 'rapid_reset') ctx.log.warn(fields, 'HTTP/2 stream reset flood: GOAWAY ENHANCE_YOUR_CALM');
    else if (failure.h2code === ENHANCE_YOUR_CALM) ctx.log.warn(fields, 'HTTP/2 flood: GOAWAY ENHANCE_YOUR_CALM');
    else ctx.log.info(fields, 'HTTP/2 connection closed with an error');
  }

  drain(): void {
    this.conn.shutdown();
  }

  destroy(): void {
    this.conn.destroy();
  }
}
