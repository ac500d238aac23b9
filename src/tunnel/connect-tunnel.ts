import { performance } from 'node:perf_hooks';
import net from 'node:net';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import { type ConnectPolicy, type ResolvedTarget, splitAuthority } from './connect-policy.ts';
import { SocketSide } from './socket-side.ts';
import { Splice, type SpliceOwner, type SpliceResult } from './splice.ts';
import type { Fields, TunnelDownstream, TunnelWatcher } from './tunnel-downstream.ts';
import { logTunnel } from './tunnel-log.ts';
import { UdpRelay, type UdpRelayResult } from './udp-relay.ts';

/** What the client asked for: a TCP tunnel (CONNECT) or a UDP proxy (CONNECT-UDP, RFC 9298). */
export interface ConnectRequest {
  kind: 'connect' | 'connect-udp';
  host: string;
  port: number;
  /** Proxy-Authorization, if sent. */
  auth: string | undefined;
  /** What the access log shows as the target. */
  target: string;
}

/**
 * One CONNECT or CONNECT-UDP tunnel of the forward proxy: authenticate, resolve and check the target
 * against the listener's `connect` policy, then connect (TCP) or open a UDP socket, answer 200 / 101,
 * and relay. Every refusal carries its code: 407 proxy_auth_required, 403 connect_denied, 502
 * connect_resolve_failed / upstream_connect_failed, 504 upstream_timeout.
 */
export class ConnectTunnel implements Expirable, SpliceOwner, TunnelWatcher {
  private readonly down: TunnelDownstream;
  private readonly req: ConnectRequest;
  private readonly policy: ConnectPolicy;
  private readonly startedAt = performance.now();
  deadline: number;
  sweepSlot = -1;
  private socket: net.Socket | null = null;
  private target: ResolvedTarget | null = null;
  private status = 0;
  private done = false;

  constructor(down: TunnelDownstream, req: ConnectRequest, policy: ConnectPolicy) {
    this.down = down;
    this.req = req;
    this.policy = policy;
    this.deadline = Math.ceil(this.startedAt + policy.connectTimeoutMs);
    sweeper.add(this);
    down.watch(this);
    if (!policy.clientAllowed(down.peer)) {
      this.fail('connect_client_denied', `client ${down.peer} is outside connect.clients`);
      return;
    }
    if (!policy.authorized(req.auth)) {
      this.fail('proxy_auth_required', 'missing or wrong Proxy-Authorization', policy.challenge());
      return;
    }
    policy.resolve(req.host, req.port).then(
      (t) => this.resolved(t),
      (err: Error) => this.fail('internal_error', err.message),
    );
  }

  private resolved(t: ResolvedTarget | ErrorCode): void {
    if (this.done) return;
    if (typeof t === 'string') {
      this.fail(t, `${this.req.target} is not allowed or did not resolve`);
      return;
    }
    this.target = t;
    if (this.req.kind === 'connect-udp') {
      this.udpUp(t);
      return;
    }
    const s = net.connect({
      host: t.address,
      port: this.req.port,
      family: t.family,
      allowHalfOpen: true,
      noDelay: true,
    });
    this.socket = s;
    s.pause();
    const onConnectError = (err: NodeJS.ErrnoException): void =>
      this.fail('upstream_connect_failed', err.code ?? err.message);
    s.once('error', onConnectError);
    s.once('connect', () => {
      // From here an error is the tunnel's (a reset the splice passes on), not a failed connect.
      s.off('error', onConnectError);
      this.tcpUp(s);
    });
  }

  private tcpUp(s: net.Socket): void {
    if (this.done || this.down.closed) {
      s.destroy();
      this.fail('downstream_closed', 'client left while connecting');
      return;
    }
    this.accept(200, []);
    s.on('error', noop);
    new Splice(this.down.side(), new SocketSide(s, null), this.policy.idleTimeoutMs, this);
  }

  private udpUp(t: ResolvedTarget): void {
    if (this.down.closed) {
      this.fail('downstream_closed', 'client left while resolving');
      return;
    }
    // RFC 9298 §3.3 / §3.4: the answer carries Capsule-Protocol: ?1 (and the Upgrade on HTTP/1.1).
    const fields: Fields = this.down.h2
      ? [['capsule-protocol', '?1']]
      : [
          ['connection', 'upgrade'],
          ['upgrade', 'connect-udp'],
          ['capsule-protocol', '?1'],
        ];
    this.accept(this.down.h2 ? 200 : 101, fields);
    const ctx = this.down.ctx;
    new UdpRelay(
      this.down.duplex(),
      { address: t.address, port: this.req.port, family: t.family },
      { idleTimeoutMs: this.policy.udpIdleTimeoutMs, maxCapsuleBytes: this.policy.maxCapsuleBytes },
      (r) => {
        ctx.stats.tunnelsOpen--;
        ctx.stats.connectUdpOpen--;
        this.udpDone(r);
      },
    );
  }

  private accept(status: number, fields: Fields): void {
    this.status = status;
    sweeper.delete(this);
    this.down.unwatch();
    this.down.accept(status, fields);
    const stats = this.down.ctx.stats;
    stats.tunnelsOpen++;
    stats.tunnelsTotal++;
    if (this.req.kind === 'connect') stats.connectsOpen++;
    else stats.connectUdpOpen++;
  }

  onSpliceDone(r: SpliceResult): void {
    this.down.ctx.stats.tunnelsOpen--;
    this.down.ctx.stats.connectsOpen--;
    this.finish(null, r);
  }

  expire(): void {
    this.fail('upstream_timeout', `no connection to ${this.req.target} within connect_timeout`);
  }

  onClientGone(): void {
    this.fail('downstream_closed', 'client left during the setup');
  }

  private fail(code: ErrorCode, detail: string, fields?: Fields): void {
    if (this.done) return;
    this.socket?.destroy();
    this.status = ERRORS[code].status;
    if (!this.down.closed && code !== 'downstream_closed') this.down.refuse(code, fields);
    this.down.ctx.stats.recordError(code);
    this.finish(code, null, detail);
  }

  private udpDone(r: UdpRelayResult): void {
    const code: ErrorCode | null =
      r.reason === 'malformed_capsule' || r.reason === 'capsule_too_large' ? r.reason : null;
    if (code !== null) this.down.ctx.stats.recordError(code);
    this.done = true;
    logTunnel(this.down, {
      kind: this.req.kind,
      host: this.req.target,
      path: '',
      status: this.status,
      upstream: this.upstreamText(),
      upstreamProtocol: 'UDP',
      startedAt: this.startedAt,
      error: code,
      detail: `${r.datagramsIn} datagrams in, ${r.datagramsOut} out, ${r.dropped} dropped`,
      result: null,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      end: r.reason,
    });
  }

  private finish(code: ErrorCode | null, r: SpliceResult | null, detail?: string): void {
    this.done = true;
    sweeper.delete(this);
    logTunnel(this.down, {
      kind: this.req.kind,
      host: this.req.target,
      path: '',
      status: this.status,
      upstream: this.upstreamText(),
      upstreamProtocol: this.req.kind === 'connect' ? 'TCP' : 'UDP',
      startedAt: this.startedAt,
      error: code,
      detail,
      result: r,
    });
  }

  private upstreamText(): string | undefined {
    const t = this.target;
    if (t === null) return undefined;
    return t.family === 6 ? `[${t.address}]:${this.req.port}` : `${t.address}:${this.req.port}`;
  }
}

/** A CONNECT authority as a request, or null when it is not "host:port". */
export function connectRequest(authority: string, auth: string | undefined): ConnectRequest | null {
  const hp = splitAuthority(authority);
  return hp === null ? null : { kind: 'connect', host: hp.host, port: hp.port, auth, target: authority };
}

const MASQUE_PREFIX = '/.well-known/masque/udp/';

/**
 * RFC 9298 §2: the default URI template "/.well-known/masque/udp/{target_host}/{target_port}/".
 * The host is percent-decoded (an IPv6 literal comes as "2001%3Adb8%3A%3A1"). Null when the path does
 * not fit the template.
 */
export function masqueRequest(path: string, auth: string | undefined): ConnectRequest | null {
  if (!path.startsWith(MASQUE_PREFIX)) return null;
  const q = path.indexOf('?');
  const parts = (q === -1 ? path : path.slice(0, q)).slice(MASQUE_PREFIX.length).split('/');
  if (parts.length !== 3 || parts[2] !== '') return null;
  let host: string;
  try {
    host = decodeURIComponent(parts[0] as string);
  } catch {
    return null;
  }
  const portText = parts[1] as string;
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535 || host === '' || /[\s/]/.test(host)) return null;
  const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  return { kind: 'connect-udp', host, port, auth, target };
}

export function isMasquePath(path: string): boolean {
  return path.startsWith(MASQUE_PREFIX);
}

function noop(): void {}
