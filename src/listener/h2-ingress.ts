import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { isH2Connect, startH2Tunnel, wantsConnectProtocol } from '../tunnel/tunnel-entry.ts';
import { H2Connection, type ResetGuard } from './h2-connection.ts';
import { H2Stream } from './h2-stream.ts';
import type { ListenerContext } from './listener-context.ts';

export interface H2IngressOptions {
  maxConcurrentStreams: number;
  initialWindowSize: number;
  connectionWindowSize: number;
  maxSessionMemory: number;
  maxHeaderListSize: number;
  resetGuard: ResetGuard;
}

const MiB = 1024 * 1024;

/**
 * The HTTP/2 side of a listener: a node:http2 server that never listens itself. The listener hands it
 * connections already known to be HTTP/2 (ALPN "h2", or the cleartext connection preface), and it
 * serves their streams through H2Stream. Limits are explicit because node:http2's defaults are not safe
 * for an edge proxy (unbounded concurrent streams, 64 KiB windows).
 */
export class H2Ingress {
  private readonly server: http2.Http2Server;
  private readonly ctx: ListenerContext;
  private readonly opts: H2IngressOptions;
  readonly connections = new Set<H2Connection>();

  constructor(ctx: ListenerContext, opts: H2IngressOptions) {
    this.ctx = ctx;
    this.opts = opts;
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: opts.maxConcurrentStreams,
        initialWindowSize: opts.initialWindowSize,
        maxHeaderListSize: opts.maxHeaderListSize,
        enablePush: false,
        // RFC 8441: browsers open WebSockets as streams as soon as this is advertised, so only when served.
        enableConnectProtocol: wantsConnectProtocol(ctx),
      },
      maxSessionMemory: Math.max(1, Math.round(opts.maxSessionMemory / MiB)),
      // Field count is checked by the HTTP/1.1 parser (max_headers, 431); node's own cap must not bite first.
      maxHeaderListPairs: Math.max(128, ctx.limits.maxHeaders * 2 + 8),
      // Streams refused over max_concurrent_streams also end the connection past this many.
      maxSessionRejectedStreams: opts.resetGuard.maxResets,
    });
    this.server.on('session', (session: ServerHttp2Session) => this.onSession(session));
    this.server.on('stream', (stream: ServerHttp2Stream, _h: unknown, _f: number, raw: string[]) =>
      this.onStream(stream, raw),
    );
  }

  /** Serve HTTP/2 on a connection (its first bytes may have been read and unshifted back). */
  accept(socket: Duplex): void {
    this.server.emit('connection', socket);
  }

  private onSession(session: ServerHttp2Session): void {
    const ctx = this.ctx;
    const conn = new H2Connection(session, ctx, this.opts.resetGuard);
    (session as SessionWithConn)[kConn] = conn;
    this.connections.add(conn);
    ctx.stats.connectionsOpen++;
    ctx.stats.connectionsTotal++;
    session.on('error', ignore);
    session.once('close', () => {
      this.connections.delete(conn);
      ctx.stats.connectionsOpen--;
    });
    session.setTimeout(ctx.limits.idleTimeoutMs, () => {
      // Silent for idle_timeout: close gracefully unless a stream is still waiting on an upstream
      // (the route's response_timeout bounds that wait).
      if (conn.openStreams === 0) session.close();
    });
    if (this.opts.connectionWindowSize > 65535) {
      try {
        session.setLocalWindowSize(this.opts.connectionWindowSize);
      } catch {
        // The session may already be closing.
      }
    }
    if (ctx.draining) session.close();
  }

  private onStream(stream: ServerHttp2Stream, raw: string[]): void {
    const conn = (stream.session as SessionWithConn | undefined)?.[kConn];
    if (conn === undefined || conn.calmedDown) {
      stream.on('error', ignore);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (isH2Connect(raw)) {
      startH2Tunnel(stream, conn, raw);
      return;
    }
    conn.openStreams++;
    new H2Stream(stream, conn).start(raw, stream.endAfterHeaders);
  }

  /** Graceful: GOAWAY to every connection; streams in flight finish, new ones go elsewhere. */
  drain(): void {
    for (const c of this.connections) if (!c.session.closed) c.session.close();
  }

  destroyAll(): void {
    for (const c of this.connections) c.session.destroy();
  }
}

const kConn = Symbol('muxgate.h2conn');
type SessionWithConn = ServerHttp2Session & { [kConn]?: H2Connection };

function ignore(): void {}
