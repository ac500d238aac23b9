import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { CidrSet } from '../core/cidr.ts';
import { unmapIPv4 } from '../core/cidr.ts';
import type { ErrorCode } from '../core/errors.ts';
import { type ReadSink, readDirect } from '../core/direct-io.ts';
import { type Expirable, deadlineIn, sweeper } from '../core/sweeper.ts';
import { parseProxyHeader } from '../proxy-protocol/proxy-header-parser.ts';
import type { ProxyHeader } from '../proxy-protocol/proxy-header.ts';
import { type ClientHelloInfo, readClientHello } from '../tls/client-hello.ts';

/** What a connection's first bytes may carry before its payload: a PROXY header, then a ClientHello to route by. */
export interface PreambleOptions {
  /** Accept a PROXY header first, from these peers only; null: none is read. */
  proxyProtocol: { trusted: CidrSet; timeoutMs: number } | null;
  /** Read (without consuming) the ClientHello; null: not read. */
  sni: { timeoutMs: number; maxBytes: number } | null;
  /**
   * Read a plain TCP socket through the shared direct-read buffer (an HTTP listener's sockets, read
   * directly by their owner next): no stream state is left behind for the owner to drain. Otherwise the
   * socket is read as a stream and left paused.
   */
  directIo?: boolean;
  /** Bytes already read from the socket (owned), parsed before anything the socket reads next. */
  first?: Buffer | null;
}

export interface Preamble {
  /** The client: the PROXY header's source when there was one (LOCAL: the peer), else the peer. */
  client: string;
  clientPort: number;
  /** Where the client connected to, as the PROXY header says (else our local address). */
  destination: string;
  destinationPort: number;
  proxy: ProxyHeader | null;
  hello: ClientHelloInfo | null;
  /** Bytes read past the PROXY header (the ClientHello among them): the payload's start, to forward first. */
  rest: Buffer;
}

/**
 * Reads a paused socket's preamble: the PROXY header (its bytes consumed), then the ClientHello (its
 * bytes kept for the upstream). Each step has its own deadline; a failure closes the connection and
 * reports a stable code. The socket is left paused with no listener of ours on it.
 */
export class PreambleReader implements Expirable, ReadSink {
  deadline: number;
  sweepSlot = -1;
  private readonly socket: Socket;
  private readonly opts: PreambleOptions;
  private readonly done: (p: Preamble) => void;
  private readonly failed: (code: ErrorCode, detail: string) => void;
  private got: Buffer = Buffer.alloc(0);
  private proxy: ProxyHeader | null = null;
  private step: 'proxy' | 'sni' | 'over';
  private expireCode: ErrorCode;
  private readonly onData = (chunk: Buffer): void => this.onBytes(chunk);
  private direct = false;
  private readonly onEnd = (): void => this.fail(this.expireCode, 'the client closed before the preamble ended');

  constructor(
    socket: Socket,
    opts: PreambleOptions,
    done: (p: Preamble) => void,
    failed: (code: ErrorCode, detail: string) => void,
  ) {
    this.socket = socket;
    this.opts = opts;
    this.done = done;
    this.failed = failed;
    const pp = opts.proxyProtocol;
    this.step = pp !== null ? 'proxy' : 'sni';
    this.expireCode = pp !== null ? 'proxy_protocol_timeout' : 'sni_timeout';
    this.deadline = deadlineIn(pp !== null ? pp.timeoutMs : (opts.sni?.timeoutMs ?? 1));
    if (pp !== null && !pp.trusted.has(socket.remoteAddress)) {
      this.step = 'over';
      this.deadline = 0;
      queueMicrotask(() => failed('proxy_protocol_untrusted', `peer ${unmapIPv4(socket.remoteAddress ?? '')}`));
      return;
    }
    sweeper.add(this);
    socket.on('end', this.onEnd);
    this.direct = opts.directIo === true && readDirect(socket, this);
    if (!this.direct) {
      socket.on('data', this.onData);
      socket.resume();
    }
    const first = opts.first;
    if (first !== undefined && first !== null && first.length > 0) this.onBytes(first);
  }

  onDirectRead(buf: Buffer, length: number): void {
    // Lent: the bytes are kept across reads (and handed on), so they are copied.
    this.onBytes(Buffer.from(buf.subarray(0, length)));
  }

  private onBytes(chunk: Buffer): void {
    this.got = this.got.length === 0 ? chunk : Buffer.concat([this.got, chunk]);
    if (this.step === 'proxy') {
      const r = parseProxyHeader(this.got);
      if (r.kind === 'more') return;
      if (r.kind === 'error') {
        this.fail(r.code, r.message);
        return;
      }
      this.proxy = r.header;
      this.got = this.got.subarray(r.consumed);
      if (this.opts.sni === null) {
        this.finish(null);
        return;
      }
      this.step = 'sni';
      this.expireCode = 'sni_timeout';
      sweeper.delete(this);
      this.deadline = deadlineIn(this.opts.sni.timeoutMs);
      sweeper.add(this);
      if (this.got.length === 0) return;
    }
    if (this.step !== 'sni' || this.opts.sni === null) return;
    const h = readClientHello(this.got, { maxBytes: this.opts.sni.maxBytes });
    if (h.kind === 'more') return;
    if (h.kind === 'error') {
      this.fail(h.code, h.message);
      return;
    }
    this.finish(h.hello);
  }

  expire(): void {
    this.fail(this.expireCode, 'timed out');
  }

  private stop(): void {
    this.step = 'over';
    sweeper.delete(this);
    this.deadline = 0;
    this.socket.off('end', this.onEnd);
    // Direct reads go on into this sink until the next owner takes the socket over (in the same turn).
    if (this.direct) return;
    this.socket.off('data', this.onData);
    this.socket.pause();
  }

  private fail(code: ErrorCode, detail: string): void {
    if (this.step === 'over') return;
    this.stop();
    this.failed(code, detail);
  }

  private finish(hello: ClientHelloInfo | null): void {
    this.stop();
    const s = this.socket;
    const p = this.proxy;
    // LOCAL (a health check of the sender), UNKNOWN and unix sockets name no client address: the peer's stands.
    const proxied =
      p !== null && p.command === 'proxy' && p.source !== null && p.family !== 'unix' && p.family !== 'unknown';
    this.done({
      client: proxied ? unmapIPv4(p.source!.address) : unmapIPv4(s.remoteAddress ?? ''),
      clientPort: proxied ? p.source!.port : (s.remotePort ?? 0),
      destination:
        proxied && p.destination !== null ? unmapIPv4(p.destination.address) : unmapIPv4(s.localAddress ?? ''),
      destinationPort: proxied && p.destination !== null ? p.destination.port : (s.localPort ?? 0),
      proxy: p,
      hello,
      rest: this.got,
    });
  }
}
