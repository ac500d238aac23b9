import { Buffer } from 'node:buffer';
import http2, { type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode, reasonPhrase } from '../core/errors.ts';
import { errorResponse } from '../forward/error-response.ts';
import { forwardedHeaders } from '../forward/forwarded-headers.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { H2Connection } from '../listener/h2-connection.ts';
import type { Http1Session } from '../listener/http1-session.ts';
import type { ListenerContext } from '../listener/listener-context.ts';

const { NGHTTP2_CANCEL } = http2.constants;

/** Response fields as (lower-case name, value) pairs. */
export type Fields = readonly (readonly [string, string])[];

/**
 * The client end of a tunnel (a WebSocket, another Upgrade, CONNECT, CONNECT-UDP) while it is being
 * set up, whichever protocol it arrived on. Until `accept`, nothing is read from the client; after
 * it, `stream` carries the tunnel's bytes. Every path ends in exactly one of accept (then the splice
 * owns the stream), refuse (a proxy error) or answer (the upstream's own refusal, relayed).
 */
export interface TunnelDownstream {
  readonly h2: boolean;
  readonly ctx: ListenerContext;
  readonly peer: string;
  readonly stream: Duplex;
  /** The tunnel is up: 101 / 200 and its fields. */
  accept(status: number, fields: Fields): void;
  /** A proxy error (nothing was sent yet); the connection (HTTP/1.1) or stream (HTTP/2) ends. */
  refuse(code: ErrorCode, fields?: Fields): void;
  /** A final response from the upstream that is not a tunnel (e.g. 403 to a WebSocket): relayed, then the end. */
  answer(status: number, fields: Fields, body: Buffer): void;
  /** Gone before the tunnel was up (client closed, shutdown). */
  readonly closed: boolean;
  /** X-Forwarded-*, Forwarded and Via lines for the upstream request. */
  forwardingFields(head: RequestHead): string;
}

/** An HTTP/1.1 connection whose request asked for a tunnel; the session handed its socket over. */
export class H1TunnelDownstream implements TunnelDownstream {
  readonly h2 = false;
  readonly ctx: ListenerContext;
  readonly peer: string;
  readonly stream: Socket;
  private readonly session: Http1Session;
  /** Bytes the client sent after the request head (early tunnel data); they go first. */
  private leftover: Buffer | null;

  constructor(session: Http1Session, leftover: Buffer | null) {
    this.session = session;
    this.ctx = session.ctx;
    this.peer = session.peer;
    this.stream = session.socket;
    this.leftover = leftover !== null && leftover.length > 0 ? Buffer.from(leftover) : null;
  }

  forwardingFields(head: RequestHead): string {
    return this.session.forwardingFields(head);
  }

  get closed(): boolean {
    return this.stream.destroyed;
  }

  accept(status: number, fields: Fields): void {
    this.write(`HTTP/1.1 ${status} ${status === 101 ? 'Switching Protocols' : 'Connection Established'}\r\n`, fields);
    if (this.leftover !== null) {
      this.stream.unshift(this.leftover);
      this.leftover = null;
    }
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

/** An HTTP/2 CONNECT or extended CONNECT stream. */
export class H2TunnelDownstream implements TunnelDownstream {
  readonly h2 = true;
  readonly stream: ServerHttp2Stream;
  readonly conn: H2Connection;

  constructor(stream: ServerHttp2Stream, conn: H2Connection) {
    this.stream = stream;
    this.conn = conn;
    // Nothing is read before the tunnel is up; `pipe` resumes the stream then.
    stream.pause();
  }

  get ctx(): ListenerContext {
    return this.conn.ctx;
  }

  get peer(): string {
    return this.conn.peer;
  }

  get closed(): boolean {
    return this.stream.closed || this.stream.destroyed;
  }

  forwardingFields(head: RequestHead): string {
    const via = this.ctx.via;
    return forwardedHeaders(head, {
      peer: this.conn.peer,
      proto: this.ctx.proto,
      host: head.host,
      trusted: this.conn.trusted,
      via: via === null ? null : `2 ${via}`,
    });
  }

  accept(status: number, fields: Fields): void {
    this.respond(status, fields, false);
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
    if (this.respond(info.status, all, false)) this.stream.end(body);
  }

  answer(status: number, fields: Fields, body: Buffer): void {
    if (this.respond(status, [...fields, ['content-length', String(body.length)]], false)) this.stream.end(body);
  }

  private respond(status: number, fields: Fields, endStream: boolean): boolean {
    const s = this.stream;
    if (s.closed || s.headersSent) return false;
    const h: OutgoingHttpHeaders = Object.create(null);
    h[':status'] = status;
    for (const [n, v] of fields) {
      const prev = h[n];
      h[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
    }
    try {
      s.respond(h, { endStream });
      return true;
    } catch (err) {
      this.ctx.log.error({ err: (err as Error).message }, 'cannot send the HTTP/2 tunnel response');
      s.close(NGHTTP2_CANCEL);
      return false;
    }
  }
}

function lines(fields: Fields): string {
  let s = '';
  for (const [n, v] of fields) s += `${n}: ${v}\r\n`;
  return s;
}
