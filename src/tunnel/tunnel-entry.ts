import type { ErrorCode } from '../core/errors.ts';
import { checkH2Fields, h2RequestHead } from '../forward/h2-translate.ts';
import type { Http2Stream } from '../http2/stream.ts';
import { parseRequestHead, type RequestHead, requestField } from '../http1/request-head.ts';
import type { Route } from '../router/route.ts';
import { type ConnectRequest, ConnectTunnel, connectRequest, isMasquePath, masqueRequest } from './connect-tunnel.ts';
import {
  type H2TunnelOrigin,
  H2TunnelDownstream,
  type TunnelContext,
  type TunnelDownstream,
} from './tunnel-downstream.ts';
import { UpgradeTunnel } from './upgrade-tunnel.ts';
import { isWebSocketKey } from './websocket-key.ts';

/** What a request that asks for a tunnel becomes. */
export type TunnelPlan =
  | { kind: 'upgrade'; route: Route; token: string; head: RequestHead }
  | { kind: 'connect'; req: ConnectRequest };

/**
 * Decides what an HTTP/1.1 request with CONNECT or an Upgrade becomes: a tunnel plan, an error code
 * (refused, never forwarded), or null (an Upgrade nobody accepts here: the request is forwarded as a
 * plain request, the Upgrade header dropped, as RFC 9110 §7.8 lets a server ignore it).
 */
export function planH1Tunnel(ctx: TunnelContext, head: RequestHead, path: string): TunnelPlan | ErrorCode | null {
  const connect = ctx.connect;
  const auth = requestField(head, 'proxy-authorization');
  if (head.method === 'CONNECT') {
    if (connect === null) return 'method_not_allowed';
    if (head.contentLength > 0 || head.chunked) return 'invalid_connect';
    const req = connectRequest(head.target, auth);
    return req === null ? 'invalid_connect' : { kind: 'connect', req };
  }
  const offered = (head.upgrade ?? '').split(',').map((t) => t.trim());
  if (offered.includes('connect-udp') && connect?.udp === true && isMasquePath(path)) {
    if (head.method !== 'GET' || head.contentLength > 0 || head.chunked) return 'invalid_upgrade';
    const req = masqueRequest(head.target, auth);
    return req === null ? 'invalid_upgrade' : { kind: 'connect', req };
  }
  const route = ctx.router.route(head, path);
  const allowed = route?.upgrades;
  if (route === null || allowed === null || allowed === undefined) return null;
  const token = offered.find((t) => allowed.has(t));
  if (token === undefined) return null;
  if (head.contentLength > 0 || head.chunked) return 'invalid_upgrade';
  if (token === 'websocket') {
    // RFC 6455 §4.1: GET with a 16-byte key. The key matters to muxgate when the upstream speaks
    // RFC 8441 and the client's Accept must be computed here.
    const key = requestField(head, 'sec-websocket-key');
    if (head.method !== 'GET' || key === undefined || !isWebSocketKey(key)) return 'invalid_upgrade';
  }
  return { kind: 'upgrade', route, token, head };
}

/** Start a planned tunnel on a downstream that is ready to be answered. */
export function startTunnel(down: TunnelDownstream, plan: TunnelPlan): void {
  if (plan.kind === 'upgrade') new UpgradeTunnel(down, plan.head, plan.route, plan.token);
  else new ConnectTunnel(down, plan.req, down.ctx.connect as NonNullable<TunnelContext['connect']>);
}

/** True when `raw` (HTTP/2 header pairs) is a CONNECT: such streams are tunnels, never requests. */
export function isH2Connect(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) if (raw[i] === ':method') return raw[i + 1] === 'CONNECT';
  return false;
}

/**
 * An HTTP/2 CONNECT stream: plain CONNECT (RFC 9113 §8.5) to the forward proxy, or extended CONNECT
 * (RFC 8441) with `:protocol` websocket through a route, or connect-udp (RFC 9298) to the proxy.
 */
export function startH2Tunnel(stream: Http2Stream, conn: H2TunnelOrigin, raw: readonly string[]): void {
  const ctx = conn.ctx;
  const down = new H2TunnelDownstream(stream, conn);
  const plan = planH2Tunnel(ctx, raw);
  if (typeof plan === 'string') {
    ctx.stats.recordError(plan);
    ctx.accessLog?.event({ listener: ctx.name, client: conn.peer, protocol: 'HTTP/2', method: 'CONNECT', error: plan });
    down.refuse(plan);
    return;
  }
  startTunnel(down, plan);
}

function planH2Tunnel(ctx: TunnelContext, raw: readonly string[]): TunnelPlan | ErrorCode {
  const bad = checkH2Fields(raw);
  if (bad !== null) return bad;
  let protocol: string | null = null;
  let authority: string | null = null;
  let path: string | null = null;
  let auth: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string;
    const v = raw[i + 1] as string;
    if (n === ':protocol') protocol = v;
    else if (n === ':authority') authority = v;
    else if (n === ':path') path = v;
    else if (n === 'proxy-authorization') auth = v;
    if (n !== ':protocol') rest.push(n, n === ':method' ? 'GET' : v);
  }
  const connect = ctx.connect;
  if (protocol === null) {
    // Plain CONNECT (RFC 9113 §8.5): :authority, and neither :scheme nor :path.
    if (authority === null || path !== null || hasField(raw, ':scheme')) return 'invalid_connect';
    if (connect === null) return 'method_not_allowed';
    const req = connectRequest(authority ?? '', auth);
    return req === null ? 'invalid_connect' : { kind: 'connect', req };
  }
  // Extended CONNECT (RFC 8441 §4): only where advertised, with :scheme, :path and :authority.
  if (!wantsConnectProtocol(ctx)) return 'invalid_connect';
  if (authority === null || path === null || !hasField(raw, ':scheme')) return 'invalid_connect';
  if (protocol === 'connect-udp') {
    if (connect === null || !connect.udp) return 'method_not_allowed';
    const req = masqueRequest(path ?? '', auth);
    return req === null ? 'invalid_upgrade' : { kind: 'connect', req };
  }
  if (protocol !== 'websocket') return 'method_not_allowed';
  // The request is read as the GET it stands for, by the same strict parser as any request.
  const synth = h2RequestHead(rest, true);
  if (typeof synth === 'string') return synth;
  const head = parseRequestHead(synth.bytes, 0, synth.bytes.length, ctx.limits);
  if (typeof head === 'string') return head;
  const route = ctx.router.route(head, undefined, 'GET');
  if (route === null) return 'no_route';
  if (route.upgrades?.has('websocket') !== true) return 'method_not_allowed';
  return { kind: 'upgrade', route, token: 'websocket', head };
}

/** The h2 server setting: advertise extended CONNECT only when something here serves it. */
export function wantsConnectProtocol(ctx: TunnelContext): boolean {
  return ctx.router.routes.some((r) => r.upgrades?.has('websocket') === true) || ctx.connect?.udp === true;
}

function hasField(raw: readonly string[], name: string): boolean {
  for (let i = 0; i < raw.length; i += 2) if (raw[i] === name) return true;
  return false;
}
