import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type { Endpoint } from '../cluster/endpoint.ts';
import type { ErrorCode } from '../core/errors.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import { DROP, F_COLON, F_FLAG, F_START, F_VEND, F_VSTART, FIELD_STRIDE } from '../http1/field-scan.ts';
import { BARE_LF, findHeadEnd, NEED_MORE } from '../http1/head-end.ts';
import { parseResponseHead, type ResponseHead } from '../http1/response-head.ts';
import { secureUpstream } from '../pool/upstream-tls.ts';
import type { Dial, DialFailure, DialHandler } from '../ports/dialer.ts';
import type { Fields } from './tunnel-downstream.ts';

/** Largest upstream response head, and largest refusal body relayed for a declined upgrade. */
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_DECLINED_BODY = 64 * 1024;

export interface UpgradeLegOwner {
  /** 101: the upstream switched protocols; `rest` are bytes it sent after the head (already in the new protocol). */
  onUpgraded(socket: net.Socket, res: ResponseHead, fields: Fields, rest: Buffer): void;
  /** A final response that is not 101, with its whole body (the upstream connection is closed). */
  onDeclined(res: ResponseHead, fields: Fields, body: Buffer): void;
  onLegFailed(code: ErrorCode, detail: string): void;
}

const HEAD = 0;
const BODY = 1;
const DONE = 2;

/**
 * The HTTP/1.1 side of an upgrade: a connection of its own to the endpoint (an upgraded connection
 * never returns to a pool, so it is not taken from one), dialled through the cluster's dialer so its
 * source port is counted in the port budget until it closes. Sends the request head, reads the
 * response head (skipping 1xx other than 101) and hands the socket over on 101. A refusal (say 403
 * or 426) is read whole, within limits, so the client gets it as the upstream sent it.
 */
export class UpgradeLeg implements DialHandler {
  private readonly owner: UpgradeLegOwner;
  private readonly head: Buffer;
  private readonly proxyHeader: Buffer | null;
  private readonly endpoint: Endpoint;
  private readonly dial: Dial;
  private socket: net.Socket | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private state = HEAD;
  private res: ResponseHead | null = null;
  private resFields: Fields = [];
  private body: Buffer[] = [];
  private bodyBytes = 0;
  private remaining = -1;
  private scanner: ChunkedScanner | null = null;

  /** `proxyHeader`: the cluster's send_proxy_protocol header for this client, sent before anything else. */
  constructor(endpoint: Endpoint, head: Buffer, owner: UpgradeLegOwner, proxyHeader: Buffer | null = null) {
    this.endpoint = endpoint;
    this.head = head;
    this.proxyHeader = proxyHeader;
    this.owner = owner;
    const pool = endpoint.pool;
    this.dial = pool.dialer.dial(pool.address, pool.port, { noDelay: true, allowHalfOpen: true }, this);
  }

  /** Give up (client gone, timeout): whatever was opened is closed; no callback follows. */
  cancel(): void {
    this.state = DONE;
    this.dial.cancel();
    this.socket?.destroy();
  }

  onDialConnected(raw: net.Socket): void {
    if (this.state === DONE) {
      raw.destroy();
      return;
    }
    this.endpoint.connectSucceeded();
    // Before a TLS ClientHello: the PROXY header is the connection's first bytes.
    if (this.proxyHeader !== null) raw.write(this.proxyHeader);
    const tls = this.endpoint.pool.tls;
    if (tls === null) {
      this.start(raw);
      return;
    }
    secureUpstream(raw, tls.config, tls.host, ['http/1.1'], (err, secure) => {
      if (err !== null) {
        secure.destroy();
        this.fail('upstream_connect_failed', err.message);
        return;
      }
      this.start(secure);
    });
  }

  onDialFailed(code: DialFailure, detail: string): void {
    if (code === 'upstream_connect_failed') this.endpoint.connectFailed();
    this.fail(code, detail);
  }

  private start(socket: net.Socket): void {
    if (this.state === DONE) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', noop);
    socket.on('close', this.onClose);
    socket.write(this.head);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === HEAD) this.onHeadBytes(chunk);
    else if (this.state === BODY) this.onBodyBytes(chunk, 0);
  };

  private onHeadBytes(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const buf = this.buf;
      const end = findHeadEnd(buf, 0, 0, buf.length);
      if (end === NEED_MORE) {
        if (buf.length > MAX_HEAD_BYTES) this.fail('upstream_protocol_error', 'response head too large');
        return;
      }
      const res = end === BARE_LF ? null : parseResponseHead(buf, 0, end);
      if (res === null) {
        this.fail('upstream_protocol_error', 'malformed response head');
        return;
      }
      this.buf = buf.subarray(end);
      if (res.status === 101) {
        this.upgraded(res);
        return;
      }
      if (res.status < 200) continue; // 100 / 103 before the answer: not relayed for a tunnel
      this.res = res;
      this.resFields = keptFields(res);
      this.state = BODY;
      if (res.chunked) this.scanner = new ChunkedScanner(MAX_HEAD_BYTES, true);
      else this.remaining = res.contentLength;
      const rest = this.buf;
      this.buf = Buffer.alloc(0);
      this.onBodyBytes(rest, 0);
      return;
    }
  }

  private upgraded(res: ResponseHead): void {
    const socket = this.socket as net.Socket;
    this.state = DONE;
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
    socket.pause();
    const rest = Buffer.from(this.buf);
    this.buf = Buffer.alloc(0);
    this.owner.onUpgraded(socket, res, keptFields(res), rest);
  }

  private onBodyBytes(chunk: Buffer, start: number): void {
    if (this.remaining === 0) {
      this.declined();
      return;
    }
    const scanner = this.scanner;
    if (scanner !== null) {
      const used = scanner.feed(chunk, start, chunk.length);
      if (used < 0) {
        this.fail('upstream_protocol_error', 'malformed chunked body');
        return;
      }
      const r = scanner.ranges as number[];
      for (let i = 0; i < r.length; i += 2) this.keep(chunk.subarray(r[i], r[i + 1]));
      if (scanner.done) this.declined();
    } else {
      const n = this.remaining < 0 ? chunk.length - start : Math.min(this.remaining, chunk.length - start);
      this.keep(chunk.subarray(start, start + n));
      if (this.remaining > 0) {
        this.remaining -= n;
        if (this.remaining === 0) this.declined();
      }
    }
  }

  private keep(b: Buffer): void {
    if (this.state !== BODY || b.length === 0) return;
    this.bodyBytes += b.length;
    if (this.bodyBytes > MAX_DECLINED_BODY) {
      this.fail('upstream_protocol_error', 'refusal body too large to relay');
      return;
    }
    this.body.push(Buffer.from(b));
  }

  private declined(): void {
    if (this.state !== BODY) return;
    this.state = DONE;
    this.socket?.destroy();
    this.owner.onDeclined(this.res as ResponseHead, this.resFields, Buffer.concat(this.body));
  }

  private readonly onEnd = (): void => {
    // A close-delimited refusal ends here; anything else ending now is a broken answer.
    if (this.state === BODY && this.remaining < 0 && this.scanner === null) this.declined();
    else this.fail('upstream_reset', 'upstream closed before answering the upgrade');
  };

  private readonly onClose = (): void => {
    this.fail('upstream_reset', 'upstream closed before answering the upgrade');
  };

  private fail(code: ErrorCode, detail: string): void {
    if (this.state === DONE) return;
    this.state = DONE;
    this.socket?.destroy();
    this.dial.cancel();
    this.owner.onLegFailed(code, detail);
  }
}

/** The response fields a proxy relays (hop-by-hop and framing flagged by the parser left out), names lower-cased. */
export function keptFields(res: ResponseHead): [string, string][] {
  const out: [string, string][] = [];
  const { buf, fields } = res;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (fields[f + F_FLAG] === DROP) continue;
    out.push([
      buf.toString('latin1', fields[f + F_START], fields[f + F_COLON]).toLowerCase(),
      buf.toString('latin1', fields[f + F_VSTART], fields[f + F_VEND]),
    ]);
  }
  return out;
}

function noop(): void {}
