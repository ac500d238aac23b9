import { Buffer } from 'node:buffer';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { isLent, type ReadSink, readDirect } from '../core/direct-io.ts';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import type { CertStore } from '../tls/cert-store.ts';
import { wantsConnectProtocol } from '../tunnel/tunnel-entry.ts';
import { H2Ingress, type H2IngressOptions } from './h2-ingress.ts';
import { H1DownstreamConnection } from './h1-downstream-connection.ts';
import { listenOn } from './listen.ts';
import type { ListenerContext } from './listener-context.ts';
import { MemberList } from '../core/member-list.ts';
import { type CidrSet, unmapIPv4 } from '../core/cidr.ts';
import type { PreambleOptions } from './l4-preamble.ts';
import { openingOf, readPreamble, refuseConnection } from './before-routing.ts';
import { ConnectionGate, type GateLimits } from './connection-gate.ts';
import type { Cluster } from '../cluster/cluster.ts';
import { TcpTunnel, type TcpListenerContext } from '../tunnel/tcp-tunnel.ts';
import type { SniRouter } from './sni-router.ts';
import { type ClientOrigin, originOf } from '../proxy-protocol/client-origin.ts';

/** A TLS listener's names passed through untouched (`passthrough:`), and what their tunnels need. */
export interface Passthrough {
  router: SniRouter<Cluster>;
  tunnelCtx: TcpListenerContext;
  maxHelloBytes: number;
}

const kClient = Symbol('muxgate.proxyClient');
type FrontSocket = net.Socket & { [kClient]?: ClientOrigin };

const NO_LIMITS: GateLimits = { maxConnections: 0, maxPerClient: 0, queueSize: 0, queueTimeoutMs: 1 };

export type HttpProtocol = 'http1' | 'http2' | 'auto';

/** The HTTP/2 cleartext connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * An HTTP listener: cleartext or TLS, speaking HTTP/1.1, HTTP/2, or both on one port. Each accepted
 * connection is classified once: over TLS by the ALPN protocol the handshake settled, in cleartext by
 * whether its first bytes are the HTTP/2 preface. HTTP/1.1 connections get an H1DownstreamConnection, HTTP/2
 * ones go to the listener's H2Ingress.
 */
export class HttpListener {
  readonly ctx: ListenerContext;
  readonly protocol: HttpProtocol;
  readonly tls: boolean;
  private readonly server: net.Server;
  private readonly sessions = new MemberList<H1DownstreamConnection>();
  private readonly h2: H2Ingress | null;
  private readonly certs: CertStore | null;
  /** Connections still reading their PROXY header (bounded by proxy_protocol.timeout). */
  private readonly pending = new Set<net.Socket>();

  readonly gate: ConnectionGate;
  /** A TLS listener's passthrough names and the tunnels they became (null: it terminates every name); swapped by a reload. */
  passthrough: Passthrough | null;
  private readonly passTunnels = new MemberList<TcpTunnel>();

  constructor(
    ctx: ListenerContext,
    protocol: HttpProtocol,
    h2: H2IngressOptions,
    certs: CertStore | null,
    limits: GateLimits = NO_LIMITS,
    passthrough: Passthrough | null = null,
  ) {
    this.passthrough = passthrough;
    this.ctx = ctx;
    this.gate = new ConnectionGate(limits, (socket, code) => refuseConnection(this.ctx, socket, code, ''));
    this.protocol = protocol;
    this.certs = certs;
    this.tls = certs !== null;
    this.h2 = protocol === 'http1' ? null : new H2Ingress(ctx, h2, wantsConnectProtocol(ctx));
    if (certs === null) {
      // allowHalfOpen: a client may send its request and half-close; it still gets its response.
      this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
        this.admit(socket, (s, first) => this.onCleartext(s, first)),
      );
    } else {
      const server = tls.createServer({
        ...certs.serverOptions(),
        allowHalfOpen: true,
        noDelay: true,
        // A handshake is part of the request head's budget (slowloris over TLS).
        handshakeTimeout: ctx.limits.headerTimeoutMs,
      });
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      certs.attach(server);
      if (ctx.proxyProtocol === null && passthrough === null) {
        // Over TLS the limits apply once the handshake is done (node:tls starts it at accept).
        server.on('secureConnection', (socket: tls.TLSSocket) =>
          this.admit(socket, (s, first) => this.onSecure(s, first)),
        );
        this.server = server;
      } else {
        // A PROXY header, or a ClientHello to pass through, comes before TLS: a plain server reads
        // them, then hands the connection (what it read put back) to the TLS server, which never
        // listens itself, or pipes it to a passthrough cluster. The limits apply before any of it.
        server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecure(socket, null));
        this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
          this.admit(socket, (s, first) => this.front(s, first, server)),
        );
      }
    }
  }

  /** Before TLS: the PROXY header, the ClientHello when some names pass through; then TLS here, or a tunnel. */
  private front(socket: net.Socket, first: Buffer | null, tlsServer: tls.Server): void {
    if (this.ctx.draining) {
      socket.destroy();
      return;
    }
    const pt = this.passthrough;
    const opts: PreambleOptions = {
      proxyProtocol: this.ctx.proxyProtocol,
      sni: pt === null ? null : { timeoutMs: this.ctx.limits.headerTimeoutMs, maxBytes: pt.maxHelloBytes },
      // Read as a stream: what was read is put back for node:tls, which reads buffered bytes first.
      directIo: false,
      first,
    };
    readPreamble(socket, opts, this.pending, this.ctx, (p) => {
      const cluster = pt === null || p.hello === null ? null : pt.router.pick(p.hello.serverName, p.hello.alpn);
      if (cluster !== null) {
        new TcpTunnel(socket, pt!.tunnelCtx, this.passTunnels, openingOf(p, cluster));
        return;
      }
      if (p.proxy !== null && p.proxy.source !== null) (socket as FrontSocket)[kClient] = originOf(p);
      if (p.rest.length > 0) socket.unshift(p.rest);
      tlsServer.emit('connection', socket);
    });
  }

  /** Through the listener's connection limits (max_connections, max_connections_per_client), then `start`. */
  private admit<S extends net.Socket>(socket: S, start: (s: S, first: Buffer | null) => void): void {
    if (!this.gate.active) {
      start(socket, null);
      return;
    }
    this.gate.admit(socket, unmapIPv4(socket.remoteAddress ?? ''), () => {
      if (!socket.isPaused()) {
        start(socket, null);
        return;
      }
      // Held at the limit: paused, but what arrived before the pause took effect may sit in the
      // stream's buffer. It goes to the owner first; then the socket reads on.
      const chunks: Buffer[] = [];
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) chunks.push(c);
      socket.resume();
      start(socket, chunks.length === 0 ? null : Buffer.concat(chunks));
    });
  }

  /** `first`: bytes already read (owned), when the connection was held at the limit. */
  private onCleartext(socket: net.Socket, first: Buffer | null): void {
    if (this.ctx.draining) {
      socket.destroy();
      return;
    }
    const pp = this.ctx.proxyProtocol;
    if (pp !== null) {
      this.readProxyHeader(socket, pp, first);
      return;
    }
    if (this.protocol === 'http1') {
      const c = new H1DownstreamConnection(socket, this.ctx, this.sessions);
      if (first !== null) c.startWith(first);
    } else if (this.protocol === 'http2') this.h2!.accept(socket, first);
    else new Sniff(socket, this, first, undefined);
  }

  /**
   * A PROXY header first (proxy_protocol): its client address becomes the connection's peer (the
   * access log, X-Forwarded-For, Forwarded, trusted_proxies, rate-limit and hash keys all read it);
   * the bytes after it start the HTTP conversation.
   */
  private readProxyHeader(socket: net.Socket, pp: { trusted: CidrSet; timeoutMs: number }, first: Buffer | null): void {
    const opts = { proxyProtocol: pp, sni: null, directIo: this.ctx.directIo, first };
    readPreamble(socket, opts, this.pending, this.ctx, (p) => {
      const rest = p.rest.length > 0 ? p.rest : null;
      // A LOCAL header (a health check) names no client: the socket's own ends stand.
      const origin = p.proxy !== null && p.proxy.source !== null ? originOf(p) : undefined;
      if (this.protocol === 'http1') {
        new H1DownstreamConnection(socket, this.ctx, this.sessions, origin).startWith(p.rest);
      } else if (this.protocol === 'http2') this.h2!.accept(socket, rest, origin);
      else new Sniff(socket, this, rest, origin);
    });
  }

  private onSecure(socket: tls.TLSSocket, first: Buffer | null): void {
    if (this.ctx.draining) {
      socket.destroy();
      return;
    }
    // The client a PROXY header named, kept on the plain socket TLS was started over.
    const origin = (socket as unknown as { _parent?: FrontSocket })._parent?.[kClient];
    // ALPN offered only what this listener speaks (see serverOptions), so the choice is final. No ALPN
    // at all: an HTTP/1.1 client, or, on an http2-only listener, one speaking HTTP/2 without asking.
    const alpn = socket.alpnProtocol;
    if (alpn === 'h2' || (alpn === false && this.protocol === 'http2')) this.h2!.accept(socket, first, origin);
    else {
      const c = new H1DownstreamConnection(socket, this.ctx, this.sessions, origin);
      if (first !== null) c.startWith(first);
    }
  }

  /**
   * Called by the preface sniffer once the first bytes tell HTTP/1.1 from HTTP/2. `first` may be a
   * view of the shared read buffer: HTTP/2 takes lent bytes, HTTP/1.1 gets its own copy.
   */
  classified(socket: net.Socket, first: Buffer, isH2: boolean, origin: ClientOrigin | undefined): void {
    if (isH2) {
      this.h2!.accept(socket, first, origin);
      return;
    }
    const owned = isLent(first) ? Buffer.from(first) : first;
    new H1DownstreamConnection(socket, this.ctx, this.sessions, origin).startAfterSniff(owned);
  }

  listen(host: string, port: number, reusePort = false): Promise<AddressInfo> {
    return listenOn(this.server, host, port, reusePort);
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  get connections(): number {
    return this.sessions.size + (this.h2?.connections.size ?? 0) + this.pending.size + this.passTunnels.size;
  }

  /** Stop accepting; idle connections close now, busy ones after their response; HTTP/2 gets GOAWAY. */
  drain(): void {
    this.ctx.draining = true;
    this.server.close();
    this.gate.closeHeld();
    this.certs?.close();
    for (const s of this.sessions.snapshot()) s.drain();
    this.h2?.drain();
  }

  destroyAll(): void {
    this.server.close();
    this.certs?.close();
    for (const s of this.pending) s.destroy();
    this.gate.closeHeld();
    for (const t of this.passTunnels.snapshot()) t.destroy('shutting_down');
    for (const s of this.sessions.snapshot()) s.destroy();
    this.h2?.destroyAll();
  }
}

/**
 * Reads a cleartext connection's first bytes until they either are the HTTP/2 preface or cannot be.
 * An HTTP/1.1 request line never starts with "PRI * HTTP/2.0" (PRI is not a method anyone routes), so
 * a mismatch at any byte decides for HTTP/1.1 at once. A client that sends nothing is closed after the
 * listener's header_timeout (a sweeper deadline), as an HTTP/1.1 one would be.
 *
 * A plain TCP socket is read through the shared direct-read buffer, as its owner will read it: a
 * read through the stream costs, per connection, a 64 KiB allocation shrunk to the bytes read (the
 * malloc heap stays fragmented after a burst of connections), a Buffer and the stream's bookkeeping.
 * Nothing of the sniff outlives it: its listeners, deadline and first bytes would otherwise stay
 * reachable for the connection's whole life.
 */
class Sniff implements ReadSink, Expirable {
  deadline: number;
  sweepSlot = -1;
  private readonly socket: net.Socket;
  private readonly listener: HttpListener;
  /** Bytes of an incomplete preface (owned). */
  private got: Buffer | null = null;
  private readonly onClose = (): void => this.done();
  /** The 'data' listener, when the socket is not read directly. */
  private onData: ((chunk: Buffer) => void) | null = null;
  /** The client as a PROXY header named it (undefined: the socket's ends). */
  private readonly origin: ClientOrigin | undefined;

  /** `first`: bytes already read (after a PROXY header), owned. */
  constructor(socket: net.Socket, listener: HttpListener, first: Buffer | null, origin: ClientOrigin | undefined) {
    this.socket = socket;
    this.listener = listener;
    this.origin = origin;
    this.deadline = deadlineIn(listener.ctx.limits.headerTimeoutMs);
    sweeper.add(this);
    socket.on('close', this.onClose);
    socket.on('error', destroyOnError);
    if (!listener.ctx.directIo || !readDirect(socket, this)) {
      this.onData = (chunk: Buffer): void => this.onBytes(chunk);
      socket.on('data', this.onData);
      socket.resume();
    }
    if (first !== null) this.onBytes(first);
  }

  onDirectRead(buf: Buffer, length: number): void {
    this.onBytes(buf.subarray(0, length));
  }

  private onBytes(chunk: Buffer): void {
    const got = this.got === null ? chunk : Buffer.concat([this.got, chunk]);
    const n = Math.min(got.length, PREFACE.length);
    let prefix = true;
    for (let i = 0; i < n && prefix; i++) prefix = got[i] === PREFACE[i];
    if (prefix && n < PREFACE.length) {
      this.got = isLent(got) ? Buffer.from(got) : got;
      return;
    }
    this.done();
    this.listener.classified(this.socket, got, prefix, this.origin);
  }

  expire(): void {
    this.socket.destroy();
  }

  private done(): void {
    sweeper.delete(this);
    this.deadline = 0;
    const socket = this.socket;
    socket.off('close', this.onClose);
    socket.off('error', destroyOnError);
    if (this.onData !== null) {
      socket.off('data', this.onData);
      socket.pause();
    }
    this.got = null;
  }
}

function destroyOnError(this: net.Socket): void {
  this.destroy();
}
