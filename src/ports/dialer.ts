import { performance } from 'node:perf_hooks';
import net from 'node:net';
import type { KernelBudget, PortAllocator, PortLease, SourcePlan } from './port-allocator.ts';

export type DialFailure = 'upstream_connect_failed' | 'upstream_ports_exhausted';

export interface DialHandler {
  /** Connected; from now on the socket is the caller's (its close still frees the port). */
  onDialConnected(socket: net.Socket): void;
  /** No connection: `detail` is the errno code (ECONNREFUSED...) or why no port was found. */
  onDialFailed(code: DialFailure, detail: string): void;
}

/** Socket options the caller wants on the upstream socket. */
export interface DialSocketOptions {
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  allowHalfOpen?: boolean;
  onread?: { buffer: Buffer; callback: (n: number) => boolean };
}

/** Ports tried (each cooled on EADDRINUSE / EADDRNOTAVAIL) before a connect is given up as exhausted. */
export const MAX_PORT_ATTEMPTS = 8;

/**
 * Opens upstream connections for one cluster. With source addresses, every connection is bound to a
 * (source IP, port) the PortAllocator chose for its destination; a port the kernel refuses is cooled
 * and another tried, a bounded number of times. Without, the kernel picks the port and the dialer only
 * counts the connection against the kernel's range.
 */
export class Dialer {
  readonly allocator: PortAllocator;
  readonly plan: SourcePlan | null;
  readonly cluster: string;
  readonly warnRatio: number;

  constructor(allocator: PortAllocator, plan: SourcePlan | null, cluster: string, warnRatio: number) {
    this.allocator = allocator;
    this.plan = plan;
    this.cluster = cluster;
    this.warnRatio = warnRatio;
  }

  dial(address: string, port: number, opts: DialSocketOptions, handler: DialHandler): Dial {
    return new Dial(this, address, port, opts, handler);
  }
}

/** The handler of a Dial that has connected: nothing is reported any more. */
const CONNECTED: DialHandler = {
  onDialConnected(): void {},
  onDialFailed(): void {},
};

/** One connect in progress (and, once connected, the holder of its port until the socket closes). */
export class Dial {
  private readonly dialer: Dialer;
  private readonly address: string;
  private readonly port: number;
  private readonly opts: DialSocketOptions;
  /** Let go once connected: the Dial lives as long as the socket (it frees the port), its caller need not. */
  private handler: DialHandler;
  socket: net.Socket | null = null;
  lease: PortLease | null = null;
  private kernel: KernelBudget | null = null;
  private attempts = 0;
  private connected = false;
  private cancelled = false;

  constructor(dialer: Dialer, address: string, port: number, opts: DialSocketOptions, handler: DialHandler) {
    this.dialer = dialer;
    this.address = address;
    this.port = port;
    this.opts = opts;
    this.handler = handler;
    this.attempt();
  }

  /** The local address:port the connection left from ("" before it connected). */
  get local(): string {
    const s = this.socket;
    if (s === null || s.localAddress === undefined) return '';
    return s.localAddress.includes(':') ? `[${s.localAddress}]:${s.localPort}` : `${s.localAddress}:${s.localPort}`;
  }

  /** Give up a connect in progress (timeout, client gone). The port is freed when the socket closes. */
  cancel(): void {
    this.cancelled = true;
    this.socket?.destroy();
  }

  private attempt(): void {
    const d = this.dialer;
    const now = performance.now();
    const plan = d.plan;
    let socket: net.Socket;
    if (plan !== null) {
      if (!d.allocator.reaches(plan, this.address)) {
        queueMicrotask(() =>
          this.handler.onDialFailed('upstream_connect_failed', 'no source address of this address family'),
        );
        return;
      }
      const lease = d.allocator.lease(plan, this.address, this.port, now);
      if (lease === null) {
        queueMicrotask(() => this.handler.onDialFailed('upstream_ports_exhausted', 'no free source port'));
        return;
      }
      this.lease = lease;
      socket = net.connect({
        ...this.opts,
        host: this.address,
        port: this.port,
        localAddress: lease.table.source,
        localPort: lease.port,
      });
    } else {
      this.kernel = d.allocator.kernelOpened(this.address, this.port, d.cluster, d.warnRatio, now);
      socket = net.connect({ ...this.opts, host: this.address, port: this.port });
    }
    this.socket = socket;
    this.attempts++;
    socket.once('connect', () => this.onConnect());
    socket.once('error', (err: NodeJS.ErrnoException) => this.onError(socket, err));
    socket.once('close', () => this.onClose(socket));
  }

  private onConnect(): void {
    this.connected = true;
    const h = this.handler;
    // The socket's listeners keep this Dial for the connection's life; they must not keep the caller
    // (an upgrade's handshake state, its buffers) too. Nothing reaches the handler after this.
    this.handler = CONNECTED;
    h.onDialConnected(this.socket as net.Socket);
  }

  private onError(socket: net.Socket, err: NodeJS.ErrnoException): void {
    if (this.connected || this.cancelled || socket !== this.socket) return;
    const code = err.code ?? 'ERROR';
    const portRefused = code === 'EADDRNOTAVAIL' || code === 'EADDRINUSE';
    const now = performance.now();
    if (portRefused && this.lease !== null) {
      // TIME_WAIT or a connection we do not know about holds this 4-tuple: cool the port, try another.
      this.lease.table.cool(this.lease.port, now);
      this.lease = null;
      if (this.attempts < MAX_PORT_ATTEMPTS) {
        this.attempt();
        return;
      }
      this.handler.onDialFailed('upstream_ports_exhausted', `${this.attempts} source ports refused (${code})`);
      return;
    }
    if (code === 'EADDRNOTAVAIL' && this.kernel !== null) {
      // This attempt holds no port: take it out of the count before reporting the budget.
      const budget = this.kernel;
      this.kernel = null;
      this.dialer.allocator.kernelClosed(budget);
      this.dialer.allocator.kernelExhausted(budget, this.dialer.cluster, now);
      this.handler.onDialFailed('upstream_ports_exhausted', 'the kernel has no free ephemeral port (EADDRNOTAVAIL)');
      return;
    }
    this.handler.onDialFailed('upstream_connect_failed', code);
  }

  /** Whatever ended the socket, its port goes back (a cooled one stays cooling). */
  private onClose(socket: net.Socket): void {
    if (socket !== this.socket && this.socket !== null) {
      // An earlier attempt's socket: its port was cooled in onError.
      return;
    }
    if (this.lease !== null) {
      this.lease.table.release(this.lease.port);
      this.lease = null;
    }
    if (this.kernel !== null) {
      this.dialer.allocator.kernelClosed(this.kernel);
      this.kernel = null;
    }
  }
}
