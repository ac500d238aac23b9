import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { proxyHeaderFor } from '../proxy-protocol/client-origin.ts';
import { type ErrorCode, retryWhen } from '../core/errors.ts';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import type { ListenerStats } from '../core/listener-stats.ts';
import type { AccessLog } from '../core/access-log.ts';
import type { Logger } from '../core/log.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { Dial, DialFailure, DialHandler } from '../ports/dialer.ts';
import type { Member, MemberList } from '../core/member-list.ts';
import { SocketSide } from './socket-side.ts';
import { Splice, type SpliceOwner, type SpliceResult } from './splice.ts';

/** What an L4 listener's connections need from it (its tunnels read this, not the listener). */
/** What a TCP listener holds its tunnels as (both kinds: a direct TcpTunnel, an H2TcpTunnel). */
export interface ListenerTunnel extends Member {
  destroy(code: ErrorCode): void;
}

export interface TcpListenerContext {
  name: string;
  /** Where connections go (with sni_routes: those no route matches); null: sni routes only. */
  cluster: Cluster | null;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  connectAttempts: number;
  accessLog: AccessLog | null;
  log: Logger;
  stats: ListenerStats;
  draining: boolean;
  /** `tunnel: h2`: each connection becomes a CONNECT stream to the cluster for this authority; null = plain L4. */
  tunnel: { authority: string } | null;
}

/** Where one connection goes and who it is from, once its preamble (PROXY header, ClientHello) is read. */
export interface TcpOpening {
  cluster: Cluster;
  /** The client: from the PROXY header when the listener accepts one, else the peer. */
  client: string;
  clientPort: number;
  /** Where the client connected to (the PROXY header's destination, else our address). */
  destination: string;
  destinationPort: number;
  /** Bytes already read from the client (a ClientHello read for routing): sent upstream first. */
  first: Buffer | null;
  /** The ClientHello's server name, for the access log. */
  sni: string | null;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

/**
 * One L4 connection: the client socket joined to an upstream socket by a Splice of two SocketSides
 * (the WebSocket and CONNECT tunnels' machinery: direct I/O through the shared read buffer on plain
 * TCP, nothing per idle tunnel but the two sockets and the splice): backpressure (a side that cannot
 * write pauses the other's reads), a FIN is passed on as a FIN (half-close: each direction ends on its
 * own), and a reset on either side resets the other. A connect that fails or times out is retried on
 * another endpoint; an idle tunnel (no byte either way for idle_timeout) is closed (FIN) on both sides.
 *
 * TIME_WAIT: whoever sends the first FIN keeps the 4-tuple in TIME_WAIT. When the upstream ends first,
 * that is the upstream, and our source port is free at once; when the client ends first, its FIN is
 * passed on and our side of the upstream connection waits out TIME_WAIT (the port allocator cools such
 * a port if the kernel refuses it).
 */
export class TcpTunnel implements Expirable, DialHandler, SpliceOwner {
  private readonly down: Socket;
  private readonly ctx: TcpListenerContext;
  private readonly tunnels: MemberList<TcpTunnel>;
  memberSlot = -1;
  private readonly client: string;
  private readonly opening: TcpOpening;
  private readonly cluster: Cluster;
  private up: Socket | null = null;
  private dial: Dial | null = null;
  private endpoint: Endpoint | null = null;
  private readonly tried: Endpoint[] = [];
  private state = CONNECTING;
  private readonly startedAt = performance.now();
  deadline: number;
  sweepSlot = -1;
  bytesIn = 0;
  bytesOut = 0;
  private error: ErrorCode | null = null;
  private errorDetail = '';
  private closedFirst: 'client' | 'upstream' | null = null;
  /** The local address:port of the upstream connection (kept: it is gone once the socket closes). */
  private source: string | null = null;
  private splice: Splice | null = null;
  private readonly onDownError = (err: NodeJS.ErrnoException): void => this.noteError('downstream_closed', err.code);
  private readonly onDownCloseEvent = (): void => this.onDownClose();

  constructor(down: Socket, ctx: TcpListenerContext, tunnels: MemberList<TcpTunnel>, opening: TcpOpening) {
    this.down = down;
    this.ctx = ctx;
    this.tunnels = tunnels;
    tunnels.add(this);
    this.opening = opening;
    this.cluster = opening.cluster;
    this.client = opening.client;
    ctx.stats.connectionsOpen++;
    ctx.stats.connectionsTotal++;
    ctx.stats.requests++;
    this.deadline = Math.ceil(this.startedAt + this.connectTimeoutMs);
    sweeper.add(this);
    down.setNoDelay(true);
    down.on('error', this.onDownError);
    down.on('close', this.onDownCloseEvent);
    this.connect();
  }

  // --- connecting ---

  private get connectTimeoutMs(): number {
    return this.cluster.opts.pool.connectTimeoutMs;
  }

  private connect(): void {
    const cluster = this.cluster;
    const key = cluster.opts.hashKey?.sourceIp === true ? this.client : undefined;
    // Round robin and least connections move on by themselves; a hash keeps answering the same
    // endpoint, so after a failure walk the cluster for one not tried yet.
    if (this.tried.length === 0 && !cluster.admit()) {
      this.fail('circuit_open', 'the cluster has max_requests in flight or max_pending waiting');
      return;
    }
    let ep = cluster.pick(key);
    if (ep !== undefined && this.tried.includes(ep)) {
      ep = cluster.endpoints.find((e) => e.healthy && !this.tried.includes(e)) ?? ep;
    }
    if (ep === undefined) {
      this.fail('no_healthy_endpoint', 'every endpoint is ejected');
      return;
    }
    this.endpoint = ep;
    this.tried.push(ep);
    ep.active++;
    ep.requests++;
    this.deadline = deadlineIn(this.connectTimeoutMs);
    this.dial = cluster.dialer.dial(
      ep.address,
      ep.port,
      { noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000, allowHalfOpen: true },
      this,
    );
  }

  onDialConnected(up: Socket): void {
    if (this.state !== CONNECTING) {
      up.destroy();
      return;
    }
    this.endpoint?.connectSucceeded();
    this.state = OPEN;
    this.ctx.stats.tcpTunnelsOpen++;
    this.up = up;
    this.source = this.dial?.local || null;
    sweeper.delete(this);
    this.deadline = 0;
    const down = this.down;
    down.off('error', this.onDownError);
    down.off('close', this.onDownCloseEvent);
    const pp = this.cluster.opts.sendProxyProtocol;
    if (pp !== undefined) up.write(proxyHeaderFor(pp, this.opening));
    // Both sockets joined by a splice: direct I/O on plain TCP, backpressure, FIN passed on as FIN, a
    // reset as a reset, and an idle tunnel closed (not reset) after idle_timeout.
    this.splice = new Splice(
      new SocketSide(down, this.opening.first),
      new SocketSide(up, null),
      this.ctx.idleTimeoutMs,
      this,
      true,
      true,
    );
  }

  onSpliceDone(r: SpliceResult): void {
    this.bytesIn = r.bytesIn;
    this.bytesOut = r.bytesOut;
    this.closedFirst = r.closedFirst;
    if (r.end === 'idle_timeout') this.noteError('idle_timeout', '');
    else if (r.end === 'upstream_reset') this.noteError('upstream_reset', '');
    else if (r.end === 'client_reset') this.noteError('downstream_closed', 'reset');
    else if (r.end === 'shutting_down') this.noteError('shutting_down', '');
    this.finish();
  }

  onDialFailed(code: DialFailure, detail: string): void {
    if (this.state !== CONNECTING) return;
    this.releaseEndpoint();
    if (code === 'upstream_connect_failed') this.tried[this.tried.length - 1]?.connectFailed();
    this.dial = null;
    if (
      retryWhen(code) === 'unsent' &&
      this.tried.length < this.ctx.connectAttempts &&
      this.tried.length < this.cluster.endpoints.length
    ) {
      this.connect();
      return;
    }
    this.fail(code, detail);
  }

  // --- closing ---

  /** The client left while the upstream was being connected (once connected, the splice hears it). */
  private onDownClose(): void {
    if (this.state !== CONNECTING) return;
    this.dial?.cancel();
    this.noteError('downstream_closed', 'client left before the upstream connected');
    this.finish();
  }

  /** Sweeper, while connecting: the connect timeout (once connected, the splice keeps the idle deadline). */
  expire(): void {
    if (this.state !== CONNECTING) return;
    this.dial?.cancel();
    this.onDialFailed('upstream_connect_failed', 'connect timeout');
  }

  /** Close both sides now (idle timeout, shutdown). */
  destroy(code: ErrorCode): void {
    this.noteError(code, '');
    if (this.splice !== null) {
      this.splice.destroy(code === 'idle_timeout' ? 'idle_timeout' : 'shutting_down');
      return;
    }
    this.up?.destroy();
    this.down.destroy();
    if (this.state === CONNECTING) this.dial?.cancel();
  }

  private fail(code: ErrorCode, detail: string): void {
    this.error = code;
    this.errorDetail = detail;
    this.cluster.recordError(code);
    // Nothing was read from the client; closing tells it the service is not there.
    this.down.destroy();
    this.finish();
  }

  private noteError(code: ErrorCode, detail: string | undefined): void {
    if (this.error !== null) return;
    this.error = code;
    this.errorDetail = detail ?? '';
  }

  private releaseEndpoint(): void {
    if (this.endpoint !== null) {
      this.endpoint.active--;
      this.endpoint = null;
    }
  }

  private finish(): void {
    if (this.state === CLOSED) return;
    const opened = this.state === OPEN;
    this.state = CLOSED;
    sweeper.delete(this);
    this.tunnels.delete(this);
    const ep = this.endpoint;
    this.releaseEndpoint();
    const stats = this.ctx.stats;
    stats.connectionsOpen--;
    if (opened) stats.tcpTunnelsOpen--;
    stats.bytesIn += this.bytesIn;
    stats.bytesOut += this.bytesOut;
    const err = this.error;
    if (err !== null && err !== 'downstream_closed') stats.recordError(err);
    this.ctx.accessLog?.event({
      listener: this.ctx.name,
      client: this.client,
      upstream: ep?.key ?? null,
      source: this.source,
      ...(this.opening.sni === null ? {} : { sni: this.opening.sni }),
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      duration_ms: Math.round(performance.now() - this.startedAt),
      closed_by: opened ? this.closedFirst : null,
      ...(err === null ? {} : { error: err, detail: this.errorDetail || undefined }),
    });
  }
}
