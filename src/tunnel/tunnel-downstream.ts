import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode, reasonPhrase } from '../core/errors.ts';
import { errorResponse } from '../forward/error-response.ts';
import type { RequestHead } from '../http1/request-head.ts';
import { CANCEL } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import { H2StreamDuplex } from '../http2/stream-duplex.ts';
import type { DownstreamContext } from '../forward/downstream.ts';
import type { RequestLimits } from '../http1/request-head.ts';
import type { Router } from '../router/router.ts';
import type { ConnectPolicy } from './connect-policy.ts';
import { SocketSide } from './socket-side.ts';
import { StreamSide } from './stream-side.ts';
import type { TunnelSide } from './tunnel-side.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';

/** Response fields as (lower-case name, value) pairs. */
export type Fields = readonly (readonly [string, string])[];

/** What tunnels need from the listener a request came in on (a listener's context is one). */
export interface TunnelContext extends DownstreamContext {
  readonly router: Router;
  /** The forward proxy (CONNECT, CONNECT-UDP), or null: CONNECT gets 405. */
  readonly connect: ConnectPolicy | null;
  readonly limits: RequestLimits & { readonly maxHeaderBytes: number };
}

/** The HTTP/1.1 connection a tunnel request came on: its socket is handed over with the request. */
export interface H1TunnelOrigin {
  readonly ctx: TunnelContext;
  readonly peer: string;
  readonly socket: Socket;
  /** X-Forwarded-*, Forwarded and Via lines for a request on this connection. */
  forwardingFields(head: RequestHead): string;
  /** The client connection's two ends (for a PROXY header to an upstream). */
  origin(): ClientOrigin;
}

export interface TunnelWatcher {
  onClientGone(): void;
}

/**
 * The client end of a tunnel (a WebSocket, another Upgrade, CONNECT, CONNECT-UDP) while it is being
 * set up, whichever protocol it arrived on. Until `accept`, nothing is read from the client; after
 * it, `side()` (a splice) or `duplex()` (the UDP relay's capsules) carries the tunnel's bytes. Every
 * path ends in exactly one of accept, refuse (a proxy error) or answer (the upstream's own refusal,
 * relayed).
 */
export interface TunnelDownstream {
  readonly h2: boolean;
  readonly ctx: TunnelContext;
  readonly peer: string;
  /** `w` hears once if the client goes away before the tunnel is accepted. */
  watch(w: TunnelWatcher): void;
  unwatch(): void;
  /** The tunnel is up: 101 / 200 and its fields. */
  accept(status: number, fields: Fields): void;
  /** After accept: the client's end for a splice (once). */
  side(): TunnelSide;
  /** After accept: the client's end as a Node Duplex, for the UDP relay (once; instead of `side`). */
  duplex(): Duplex;
  /** A proxy error (nothing was sent yet); the connection (HTTP/1.1) or stream (HTTP/2) ends. */
  refuse(code: ErrorCode, fields?: Fields): void;
  /** A final response from the upstream that is not a tunnel (e.g. 403 to a WebSocket): relayed, then the end. */
  answer(status: number, fields: Fields, body: Buffer): void;
  /** Gone before the tunnel was up (client closed, shutdown). */
  readonly closed: boolean;
  /** X-Forwarded-*, Forwarded and Via lines for the upstream request. */
  forwardingFields(head: RequestHead): string;
  /** The client connection's two ends (for a PROXY header to an upstream). */
  origin(): ClientOrigin;
}

/** An HTTP/1.1 connection whose request asked for a tunnel; the session handed its socket over. */
export class H1TunnelDownstream implements TunnelDownstream {
  readonly h2 = false;
  readonly ctx: TunnelContext;
  readonly peer: string;
  readonly stream: Socket;
  private readonly session: H1TunnelOrigin;
  /** Bytes the client sent after the request head (early tunnel data); they go first. */
  private leftover: Buffer | null;
  private onGone: (() => void) | null = null;

  constructor(session: H1TunnelOrigin, leftover: Buffer | null) {
    this.session = session;
    this.ctx = session.ctx;
    this.peer = session.peer;
    this.stream = session.socket;
    this.leftover = leftover !== null && leftover.length > 0 ? Buffer.from(leftover) : null;
  }

  forwardingFields(head: RequestHead): string {
    return this.session.forwardingFields(head);
  }

  origin(): ClientOrigin {
    return this.session.origin();
  }

  get closed(): boolean {
    return this.stream.destroyed;
  }

  watch(w: TunnelWatcher): void {
    const onGone = (): void => w.onClientGone();
    this.onGone = onGone;
    this.stream.once('close', onGone);
  }

  unwatch(): void {
    if (this.onGone !== null) this.stream.off('close', this.onGone);
    this.onGone = null;
  }

  accept(status: number, fields: Fields): void {
    this.write(`HTTP/1.1 ${status} ${status === 101 ? 'Switching Protocols' : 'Connection Established'}\r\n`, fields);
  }

  side(): TunnelSide {
    const l = this.leftover;
    this.leftover = null;
    return new SocketSide(this.stream, l);
  }

  duplex(): Duplex {
    if (this.leftover !== null) {
      this.stream.unshift(this.leftover);
      this.leftover = null;
    }
    return this.stream;
  }

  refuse(code: ErrorCode, fields: Fields = []): void {
    const b = errorResponse(code, true, false, lines(fields));
    this.ctx.stats.bytesOut += b.length;
    this.stream.end(b);
  }

  answer(status: number, fields: Fields, body: Buffer): void {
    const all: Fields = [...fields, ['content-length', String(body.length)], ['connection', 'close']];
    this.write(`HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`, all);
    this.stream.end(body);
  }

  private write(first: string, fields: Fields): void {
    const head = Buffer.from(`${first}${lines(fields)}\r\n`, 'latin1');
    this.ctx.stats.bytesOut += head.length;
    if (!this.stream.destroyed) this.stream.write(head);
  }
}

/** What an HTTP/2 tunnel needs from the connection it arrived on. */
export interface H2TunnelOrigin {
  readonly ctx: TunnelContext;
  readonly peer: string;
  /** X-Forwarded-*, Forwarded and Via lines for a request on this connection. */
  forwardingFields(head: RequestHead): string;
  /** The client connection's two ends (for a PROXY header to an upstream). */
  origin(): ClientOrigin;
}

/**
 * An HTTP/2 CONNECT or extended CONNECT stream. Until the tunnel is up this is the stream's sink: the
 * stream is paused (DATA waits in the record) and a reset means the client is gone.
 */
export class H2TunnelDownstream implements TunnelDownstream, StreamSink {
  readonly h2 = true;
  readonly stream: Http2Stream;
  readonly conn: H2TunnelOrigin;
  private watcher: TunnelWatcher | null = null;

  constructor(stream: Http2Stream, conn: H2TunnelOrigin) {
    this.stream = stream;
    this.conn = conn;
    stream.sink = this;
    stream.pause();
  }

  get ctx(): TunnelContext {
    return this.conn.ctx;
  }

  get peer(): string {
    return this.conn.peer;
  }

  get closed(): boolean {
    return this.stream.closed;
  }

  forwardingFields(head: RequestHead): string {
    return this.conn.forwardingFields(head);
  }

  origin(): ClientOrigin {
    return this.conn.origin();
  }

  watch(w: TunnelWatcher): void {
    this.watcher = w;
  }

  unwatch(): void {
    this.watcher = null;
  }

  accept(status: number, fields: Fields): void {
    this.respond(status, fields, false);
  }

  side(): TunnelSide {
    return new StreamSide(this.stream);
  }

  duplex(): Duplex {
    const d = new H2StreamDuplex(this.stream);
    d.on('error', noop);
    return d;
  }

  refuse(code: ErrorCode, fields: Fields = []): void {
    const info = ERRORS[code];
    const body = Buffer.from(`${info.text} (${code})\n`);
    this.ctx.stats.bytesOut += body.length;
    const all: Fields = [
      ...fields,
      ['content-type', 'text/plain; charset=utf-8'],
      ['content-length', String(body.length)],
      ['muxgate-error', code],
    ];
    if (this.respond(info.status, all, false)) this.endWith(body);
  }

  answer(status: number, fields: Fields, body: Buffer): void {
    if (this.respond(status, [...fields, ['content-length', String(body.length)]], false)) this.endWith(body);
  }

  /** The last bytes of a refusal, then END_STREAM; the client's side is reset NO_ERROR if still open. */
  private endWith(body: Buffer): void {
    const s = this.stream;
    if (body.length > 0) s.write(body);
    s.end(null, true);
  }

  private respond(status: number, fields: Fields, endStream: boolean): boolean {
    const s = this.stream;
    if (s.closed || s.headersSent) return false;
    const flat: string[] = [':status', String(status)];
    for (const [n, v] of fields) {
      if (!safeField(n, v)) {
        this.ctx.log.error({ field: n }, 'cannot send the HTTP/2 tunnel response: invalid field');
        s.reset(CANCEL);
        return false;
      }
      flat.push(n.toLowerCase(), v);
    }
    s.respond(flat, endStream);
    return true;
  }

  // --- StreamSink, while the tunnel is set up ---

  onHeaders(): void {}
  onData(): void {}
  onEnd(): void {}
  onWritable(): void {}

  onReset(): void {
    const w = this.watcher;
    this.watcher = null;
    w?.onClientGone();
  }
}

/** A field we may send: no CR, LF or NUL that would break the peer's parse, and a name at all. */
function safeField(name: string, value: string): boolean {
  if (name === '') return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

function lines(fields: Fields): string {
  let s = '';
  for (const [n, v] of fields) s += `${n}: ${v}\r\n`;
  return s;
}

function noop(): void {}
