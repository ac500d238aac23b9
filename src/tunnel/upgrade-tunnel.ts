import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Http2Stream } from '../http2/stream.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import { h2RequestFields } from '../forward/h2-translate.ts';
import { upstreamTarget } from '../forward/upstream-head.ts';
import { renderHead } from '../http1/field-scan.ts';
import { type RequestHead, requestField } from '../http1/request-head.ts';
import type { ResponseHead } from '../http1/response-head.ts';
import type { Route } from '../router/route.ts';
import { H2ConnectLeg } from './h2-connect-leg.ts';
import { SocketSide } from './socket-side.ts';
import { Splice, type SpliceOwner, type SpliceResult } from './splice.ts';
import { StreamSide } from './stream-side.ts';
import type { Fields, TunnelDownstream, TunnelWatcher } from './tunnel-downstream.ts';
import type { TunnelSide } from './tunnel-side.ts';
import { logTunnel } from './tunnel-log.ts';
import { UpgradeLeg } from './upgrade-leg.ts';
import { proxyHeaderFor } from '../proxy-protocol/client-origin.ts';
import { newWebSocketKey, webSocketAccept } from './websocket-key.ts';

/** Fields of a 101 / 200 that belong to the WebSocket handshake of one hop, not end to end. */
const HANDSHAKE_ONLY = new Set(['sec-websocket-accept', 'upgrade', 'connection']);

/**
 * One upgraded connection through a route: a WebSocket (from an HTTP/1.1 Upgrade or an RFC 8441
 * stream) or another Upgrade token the route allows. Picks an endpoint and reaches it one of two
 * ways:
 * - cluster `websocket: h2`: an RFC 8441 extended CONNECT stream on the endpoint's HTTP/2 pool,
 *   when the session advertises SETTINGS_ENABLE_CONNECT_PROTOCOL;
 * - otherwise an HTTP/1.1 Upgrade on a connection of its own.
 * Each hop gets the handshake it speaks: a Sec-WebSocket-Key is made up for an HTTP/1.1 upstream of an
 * RFC 8441 client (and the upstream's Accept checked), and Sec-WebSocket-Accept computed for an
 * HTTP/1.1 client of an HTTP/2 upstream. Then the two sides are spliced.
 */
export class UpgradeTunnel implements Expirable, SpliceOwner, TunnelWatcher {
  private readonly down: TunnelDownstream;
  /** The request; dropped once the tunnel is up (an idle tunnel keeps only what its log line needs). */
  private head: RequestHead | null;
  private readonly host: string;
  private readonly path: string;
  private readonly route: Route;
  private readonly token: string;
  private readonly startedAt = performance.now();
  deadline: number;
  sweepSlot = -1;
  private endpoint: Endpoint | null = null;
  private countsActive = false;
  private h1: UpgradeLeg | null = null;
  private h2: H2ConnectLeg | null = null;
  /** The key sent to an HTTP/1.1 upstream when the client (RFC 8441) sent none. */
  private madeKey: string | null = null;
  private upstreamProtocol: 'HTTP/1.1' | 'HTTP/2' = 'HTTP/1.1';
  private status = 0;
  private done = false;

  constructor(down: TunnelDownstream, head: RequestHead, route: Route, token: string) {
    this.down = down;
    this.head = head;
    this.host = head.host;
    this.path = head.target;
    this.route = route;
    this.token = token;
    const cluster = route.cluster;
    this.deadline = Math.ceil(this.startedAt + cluster.opts.pool.connectTimeoutMs + route.responseTimeoutMs);
    sweeper.add(this);
    down.watch(this);
    if (!cluster.admit()) {
      this.fail('circuit_open', 'the cluster has max_requests in flight or max_pending waiting');
      return;
    }
    const endpoint = cluster.pick(cluster.hashKeyOf(head, down.peer));
    if (endpoint === undefined) {
      this.fail('no_healthy_endpoint', 'every endpoint is ejected');
      return;
    }
    this.endpoint = endpoint;
    this.countsActive = true;
    endpoint.active++;
    endpoint.requests++;
    cluster.requests++;
    const h2 = endpoint.h2;
    if (token === 'websocket' && cluster.opts.upstream?.websocket === 'h2' && h2 !== null && !h2.fellBack) {
      this.upstreamProtocol = 'HTTP/2';
      this.h2 = new H2ConnectLeg(h2, this.extendedConnectHeaders(h2.scheme), this);
    } else {
      this.viaH1();
    }
  }

  // --- HTTP/1.1 upstream ---

  private viaH1(): void {
    this.upstreamProtocol = 'HTTP/1.1';
    const head = this.head as RequestHead;
    let tail = `connection: upgrade\r\nupgrade: ${this.token}\r\n`;
    if (this.token === 'websocket' && requestField(head, 'sec-websocket-key') === undefined) {
      this.madeKey = newWebSocketKey();
      tail += `sec-websocket-key: ${this.madeKey}\r\n`;
    }
    tail += this.down.forwardingFields(head);
    const first = `GET ${upstreamTarget(head, this.route)} HTTP/1.1\r\nhost: ${this.route.hostRewrite ?? head.host}\r\n`;
    const pp = this.route.cluster.opts.sendProxyProtocol;
    const proxyHeader = pp === undefined ? null : proxyHeaderFor(pp, this.down.origin());
    this.h1 = new UpgradeLeg(
      this.endpoint as Endpoint,
      renderHead(first, head.buf, head.fields, tail),
      this,
      proxyHeader,
    );
  }

  onUpgraded(socket: Socket, _res: ResponseHead, fields: Fields, rest: Buffer): void {
    if (this.done) {
      socket.destroy();
      return;
    }
    if (this.madeKey !== null) {
      const accept = fields.find(([n]) => n === 'sec-websocket-accept')?.[1];
      if (accept !== webSocketAccept(this.madeKey)) {
        socket.destroy();
        this.fail('websocket_handshake_failed', 'wrong or missing Sec-WebSocket-Accept');
        return;
      }
    }
    const side = new SocketSide(socket, rest);
    if (this.down.h2) {
      this.up(side, 200, endToEnd(fields));
    } else {
      this.up(side, 101, [...fields.filter(([n]) => n !== 'upgrade' && n !== 'connection'), ...this.upgradeFields()]);
    }
  }

  // --- HTTP/2 upstream ---

  private extendedConnectHeaders(scheme: 'http' | 'https'): string[] {
    const head = this.head as RequestHead;
    // RFC 8441 §5: the key and its accept are HTTP/1.1's handshake, not sent as a stream's fields.
    return h2RequestFields(
      head,
      upstreamTarget(head, this.route),
      this.route.hostRewrite ?? head.host,
      scheme,
      this.down.forwardingFields(head),
      false,
      'CONNECT',
      'websocket',
      EXTENDED_CONNECT_SKIP,
    );
  }

  onStreamUp(stream: Http2Stream, fields: Fields): void {
    const side = new StreamSide(stream);
    if (this.done) {
      side.reset();
      return;
    }
    if (this.down.h2) this.up(side, 200, endToEnd(fields));
    else this.up(side, 101, [...endToEnd(fields), ...this.upgradeFields()]);
  }

  onNoH2(): void {
    if (this.done) return;
    this.h2 = null;
    this.viaH1();
  }

  // --- either upstream ---

  onDeclined(statusOrRes: number | ResponseHead, fields: Fields, body: Buffer): void {
    if (this.done) return;
    const status = typeof statusOrRes === 'number' ? statusOrRes : statusOrRes.status;
    this.status = status;
    this.down.answer(status, fields, body);
    this.finish(null, null);
  }

  onLegFailed(code: ErrorCode, detail: string): void {
    this.fail(code, detail);
  }

  private upgradeFields(): Fields {
    const out: [string, string][] = [
      ['connection', 'upgrade'],
      ['upgrade', this.token],
    ];
    const key = requestField(this.head as RequestHead, 'sec-websocket-key');
    if (this.upstreamProtocol === 'HTTP/2' && key !== undefined)
      out.push(['sec-websocket-accept', webSocketAccept(key)]);
    return out;
  }

  private up(upstream: TunnelSide, status: number, fields: Fields): void {
    const down = this.down;
    if (down.closed) {
      upstream.reset();
      this.fail('downstream_closed', 'client left during the handshake');
      return;
    }
    this.status = status;
    sweeper.delete(this);
    down.unwatch();
    down.accept(status, fields);
    this.head = null;
    const ctx = down.ctx;
    ctx.stats.tunnelsOpen++;
    ctx.stats.tunnelsTotal++;
    if (this.token === 'websocket') ctx.stats.websocketsOpen++;
    else ctx.stats.otherUpgradesOpen++;
    // Shutdown needs no handle on it: destroying either socket or stream ends the splice.
    // An upgraded protocol (WebSocket) closes with its own handshake: no half-closed tunnel.
    // The legs are done: an idle tunnel keeps only the splice, its sides and this.
    this.h1 = null;
    this.h2 = null;
    new Splice(down.side(), upstream, this.route.upgradeIdleTimeoutMs, this, false);
  }

  // --- endings ---

  onSpliceDone(r: SpliceResult): void {
    const stats = this.down.ctx.stats;
    stats.tunnelsOpen--;
    if (this.token === 'websocket') stats.websocketsOpen--;
    else stats.otherUpgradesOpen--;
    this.finish(null, r);
  }

  expire(): void {
    this.fail('upstream_timeout', 'no answer to the upgrade in time');
  }

  onClientGone(): void {
    this.fail('downstream_closed', 'client left during the handshake');
  }

  private fail(code: ErrorCode, detail: string): void {
    if (this.done) return;
    this.h1?.cancel();
    this.h2?.cancel();
    this.status = ERRORS[code].status;
    if (!this.down.closed && code !== 'downstream_closed') this.down.refuse(code);
    const ctx = this.down.ctx;
    ctx.stats.recordError(code);
    if (ERRORS[code].source === 'upstream') this.route.cluster.recordError(code);
    this.finish(code, null, detail);
  }

  /** The tunnel is over: refused, answered by the upstream, or spliced and closed (then `r`). */
  private finish(code: ErrorCode | null, r: SpliceResult | null, detail?: string): void {
    this.done = true;
    sweeper.delete(this);
    if (this.countsActive) {
      this.countsActive = false;
      (this.endpoint as Endpoint).active--;
    }
    logTunnel(this.down, {
      kind: this.token,
      host: this.host,
      path: this.path,
      status: this.status,
      upstream: this.endpoint?.key,
      upstreamProtocol: this.upstreamProtocol,
      startedAt: this.startedAt,
      error: code,
      detail,
      result: r,
    });
  }
}

function endToEnd(fields: Fields): Fields {
  return fields.filter(([n]) => !HANDSHAKE_ONLY.has(n));
}

const EXTENDED_CONNECT_SKIP: ReadonlySet<string> = new Set(['sec-websocket-key', 'content-length']);
