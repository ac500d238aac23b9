import { Buffer } from 'node:buffer';
import type net from 'node:net';
import {
  type DrainSink,
  pauseDirect,
  type ReadSink,
  readDirect,
  resumeDirect,
  writeDirect,
  writeDirectTo,
} from '../core/direct-io.ts';
import { writeLentDirect } from '../core/write-batch.ts';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import type { Dial, DialFailure, DialHandler } from '../ports/dialer.ts';
import type { H1Pool } from './h1-pool.ts';
import { secureUpstream } from './upstream-tls.ts';

const HTTP1_ALPN = ['http/1.1'];

/**
 * The side of an exchange that leases a connection. While leased, every socket event goes to it; the
 * pool never reads or writes a leased connection.
 */
export interface UpstreamUser {
  /**
   * Bytes from the upstream. `chunk` may be a view of the shared read buffer, valid only during the
   * call: whoever keeps bytes past it must copy them.
   */
  /** The response bytes `chunk[0, end)`. */
  onUpstreamData(chunk: Buffer, end: number): void;
  /**
   * The upstream ended or reset the connection (or it failed); the user must release it as not reusable.
   * `hadError` is true for a reset: the connection did not end cleanly (a close-delimited body is truncated).
   */
  onUpstreamClose(hadError: boolean): void;
  onUpstreamDrain(): void;
  /** The deadline the user set (`conn.deadline`) passed. */
  onUpstreamTimeout(): void;
}

export const CONNECTING = 0;
export const IDLE = 1;
export const BUSY = 2;
export const CLOSED = 3;

/** One HTTP/1.1 connection to an endpoint, owned by its pool, leased to one exchange at a time. */
export class H1UpstreamConnection implements Expirable, DialHandler, DrainSink, ReadSink {
  /** Set once connected; the pool leases only connected connections. */
  socket!: net.Socket;
  readonly pool: H1Pool;
  private readonly dial: Dial;
  state = CONNECTING;
  /** Exchanges this connection has carried (for max_requests_per_connection and reuse decisions). */
  requests = 0;
  user: UpstreamUser | null = null;
  deadline = 0;
  sweepSlot = -1;
  /** Plain TCP: direct reads and writes on the handle (core/direct-io.ts); every write must use `write`. */
  direct = false;
  /** With send_proxy_protocol: the client connection (ClientOrigin key) whose requests alone it carries. */
  readonly affinity: string | null;
  /** The PROXY header to send first (before TLS); dropped once sent. */
  private proxyHeader: Buffer | null;

  constructor(
    pool: H1Pool,
    host: string,
    port: number,
    connectTimeoutMs: number,
    affinity: string | null = null,
    proxyHeader: Buffer | null = null,
  ) {
    this.pool = pool;
    this.affinity = affinity;
    this.proxyHeader = proxyHeader;
    this.deadline = deadlineIn(connectTimeoutMs);
    sweeper.add(this);
    this.dial = pool.dialer.dial(host, port, { noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, this);
  }

  onDialConnected(socket: net.Socket): void {
    if (this.proxyHeader !== null) {
      // The connection's first bytes, before a TLS ClientHello; later writes queue behind it in libuv.
      socket.write(this.proxyHeader);
      this.proxyHeader = null;
    }
    const tls = this.pool.tls;
    if (tls === null) {
      this.ready(socket);
      return;
    }
    // The connect deadline keeps running through the handshake.
    this.socket = secureUpstream(socket, tls.config, tls.host, HTTP1_ALPN, (err, secure) => {
      if (err !== null) {
        secure.destroy();
        if (this.state !== CONNECTING) return;
        sweeper.delete(this);
        this.pool.onConnectFailed(this, 'upstream_connect_failed');
        return;
      }
      secure.on('data', (chunk: Buffer) => {
        if (this.user !== null) this.user.onUpstreamData(chunk, chunk.length);
        else secure.destroy();
      });
      this.ready(secure);
    });
  }

  private ready(socket: net.Socket): void {
    this.socket = socket;
    this.deadline = 0;
    // Plain TCP: reads are lent views of the shared read buffer and writes go to the handle
    // (core/direct-io.ts). Over TLS the TLS layer reads the TCP socket; decrypted bytes come as 'data'.
    this.direct =
      this.pool.tls === null && this.pool.opts.directIo && readDirect(socket, this) && writeDirectTo(socket, this);
    if (!this.direct) {
      if (this.pool.tls === null) socket.on('data', (chunk: Buffer) => this.onDirectRead(chunk, chunk.length));
      socket.on('drain', () => this.user?.onUpstreamDrain());
    }
    // Half-close from the upstream means it will not take another request; the user may still be
    // reading a close-delimited body, which the 'end' delivers as the message end via close below.
    socket.on('end', () => socket.destroy());
    socket.on('error', () => {});
    socket.on('close', (hadError: boolean) => this.onClose(hadError));
    this.pool.onConnected(this);
  }

  /**
   * Request bytes for the upstream. `lent`: `data` is only valid during the call (a view of a shared
   * read buffer), so it is copied unless the kernel takes it at once. Returns false to ask for a pause.
   */
  write(data: Buffer, lent: boolean): boolean {
    if (this.direct) return lent ? writeLentDirect(this.socket, data) : writeDirect(this.socket, data);
    return this.socket.write(lent ? Buffer.from(data) : data);
  }

  onDirectDrain(): void {
    this.user?.onUpstreamDrain();
  }

  onDirectRead(buf: Buffer, length: number): void {
    if (this.user !== null) this.user.onUpstreamData(buf, length);
    else this.socket.destroy(); // bytes nobody asked for: the connection is out of sync, never reuse it
  }

  /** Backpressure from the client: stop reading the upstream until resumeReading. */
  pauseReading(): void {
    if (this.direct) pauseDirect(this.socket);
    else this.socket.pause();
  }

  resumeReading(): void {
    if (this.direct) resumeDirect(this.socket);
    else this.socket.resume();
  }

  onDialFailed(code: DialFailure): void {
    sweeper.delete(this);
    this.pool.onConnectFailed(this, code);
  }

  expire(): void {
    if (this.state === CONNECTING) {
      this.dial.cancel();
      sweeper.delete(this);
      this.pool.onConnectFailed(this, 'upstream_connect_failed');
    } else if (this.state === IDLE) {
      this.socket.destroy();
    } else if (this.state === BUSY) {
      this.user?.onUpstreamTimeout();
    }
  }

  private onClose(hadError: boolean): void {
    sweeper.delete(this);
    const prev = this.state;
    if (prev === CLOSED) return;
    this.state = CLOSED;
    if (prev === IDLE) this.pool.onIdleClosed(this);
    else if (this.user !== null) this.user.onUpstreamClose(hadError);
  }

  destroy(): void {
    if (this.state === CONNECTING) this.dial.cancel();
    else this.socket.destroy();
  }
}
