import type { Buffer } from 'node:buffer';
import { deadlineIn } from '../core/sweeper.ts';
import { clockNow } from '../core/clock.ts';
import { PendingQueue } from './pending-queue.ts';
import type { DialFailure, Dialer } from '../ports/dialer.ts';
import type { PoolKey } from './pool-key.ts';
import type { PoolWaiter } from './pool-waiter.ts';
import type { ConnectObserver, PoolOptions, UpstreamPool } from './upstream-pool.ts';
import type { UpstreamTls } from './upstream-tls.ts';
import { BUSY, CLOSED, CONNECTING, IDLE, H1UpstreamConnection } from './h1-upstream-connection.ts';
import { type ClientOrigin, originKey, proxyHeaderFor } from '../proxy-protocol/client-origin.ts';

/** A waiter that cannot say whose it is: its header says UNKNOWN (v1) or LOCAL (v2). */
const UNKNOWN_ORIGIN: ClientOrigin = { client: '', clientPort: 0, destination: '', destinationPort: 0 };

function keyOf(w: PoolWaiter): string {
  const origin = w.clientOrigin?.();
  return origin === undefined ? '' : originKey(origin);
}

/**
 * A bounded pool of HTTP/1.1 connections to one endpoint (one PoolKey).
 *
 * Invariant: open connections (idle + busy + connecting) never exceed `maxConnections`. A request that
 * finds no idle connection waits in a FIFO queue; under the cap it also starts a connect, at the cap
 * it waits for a release. Whichever connection becomes ready first serves the queue head, so a
 * request never waits for "its own" connect while another connection sits free. Beyond the cap the
 * queue holds at most `maxPending` waiters (then `pool_queue_full`), each for at most
 * `pendingTimeoutMs` (then `pool_queue_timeout`).
 *
 * With `sendProxyProtocol` every connection starts with a PROXY header naming one client connection
 * and is lent only to that client connection's requests (its affinity, the ClientOrigin key): reuse
 * then happens along a client's keep-alive connection. The cap still holds for the pool as a whole;
 * at the cap an idle connection of another client is closed to make room, and a released connection
 * nobody of its client waits for is closed when others wait.
 *
 * NOTE: the pool does not resolve names, choose endpoints or parse HTTP; it hands out sockets.
 */
export class H1Pool implements UpstreamPool {
  readonly key: PoolKey;
  readonly address: string;
  readonly port: number;
  readonly opts: PoolOptions;
  readonly dialer: Dialer;
  private readonly observer: ConnectObserver | null;
  /** TLS origination (with the endpoint's configured host name for SNI), or null for cleartext. */
  readonly tls: { config: UpstreamTls; host: string } | null;
  /** Most recently used last: reuse is LIFO so surplus connections age out through idle_timeout. */
  private readonly idle: H1UpstreamConnection[] = [];
  private readonly pending: PendingQueue;
  busy = 0;
  connecting = 0;
  private closed = false;
  /** send_proxy_protocol: connects in flight per affinity (null: connections are shared). */
  private readonly connectingFor: Map<string, number> | null;

  // Counters for the stats snapshot.
  connectsTotal = 0;
  connectFailures = 0;
  queueFull = 0;
  queueTimeouts = 0;
  reused = 0;

  constructor(
    key: PoolKey,
    address: string,
    port: number,
    opts: PoolOptions,
    dialer: Dialer,
    observer: ConnectObserver | null = null,
    tls: { config: UpstreamTls; host: string } | null = null,
  ) {
    this.key = key;
    this.tls = tls;
    this.dialer = dialer;
    this.address = address;
    this.port = port;
    this.opts = opts;
    this.pending = new PendingQueue(opts.pendingTimeoutMs, (w) => {
      this.queueTimeouts++;
      w.onPoolError('pool_queue_timeout');
    });
    this.observer = observer;
    this.connectingFor = opts.sendProxyProtocol === undefined ? null : new Map();
  }

  get open(): number {
    return this.idle.length + this.busy + this.connecting;
  }
  get idleCount(): number {
    return this.idle.length;
  }
  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Lease a connection to `w`. `fresh` skips idle connections (used to retry after a keep-alive race).
   * May call back synchronously.
   */
  acquire(w: PoolWaiter, fresh = false): void {
    if (this.closed) {
      w.onPoolError('shutting_down');
      return;
    }
    if (this.connectingFor !== null) {
      this.acquireFor(w, fresh);
      return;
    }
    if (!fresh) {
      const conn = this.idle.pop();
      if (conn !== undefined) {
        this.reused++;
        this.lease(conn, w);
        return;
      }
    }
    this.connectOrQueue(w, null, null);
  }

  /** No idle connection for `w`: connect under the cap (`key`, `origin`: for that client connection), else queue. */
  private connectOrQueue(w: PoolWaiter, key: string | null, origin: ClientOrigin | null): void {
    if (this.open < this.opts.maxConnections) {
      const may = this.opts.mayConnect;
      if (may === undefined || may()) {
        this.pending.push(w, clockNow());
        this.connect(key, origin);
        return;
      }
      // The cluster is at its max_connections: wait for one of ours, or refuse when there is none.
      if (this.open === 0) {
        this.opts.capRefused?.();
        w.onPoolError('circuit_open');
        return;
      }
    }
    // At the cap: only waiters beyond those already covered by connects in flight count against max_pending.
    if (this.pending.length - this.connecting >= this.opts.maxPending) {
      this.queueFull++;
      w.onPoolError('pool_queue_full');
      return;
    }
    this.pending.push(w, clockNow());
  }

  /** A waiter gave up (client went away): drop it from the queue. */
  cancel(w: PoolWaiter): void {
    this.pending.remove(w);
  }

  /** Give a leased connection back. Not reusable (or past its request budget) means it is closed. */
  release(conn: H1UpstreamConnection, reusable: boolean): void {
    if (conn.state !== BUSY && conn.state !== CLOSED) return;
    if (conn.user === null) return;
    conn.user = null;
    this.busy--;
    const max = this.opts.maxRequestsPerConnection;
    if (conn.state === CLOSED || !reusable || this.closed || (max > 0 && conn.requests >= max)) {
      if (conn.state !== CLOSED) {
        conn.state = CLOSED;
        conn.destroy();
      }
      // The freed slot may let a queued request connect.
      if (
        this.pending.length > this.connecting &&
        this.open < this.opts.maxConnections &&
        (this.opts.mayConnect?.() ?? true)
      ) {
        if (this.connectingFor === null) this.connect();
        else this.connectForPending();
      }
      return;
    }
    this.dispatch(conn);
  }

  /** Closes the idle connections; busy ones stay and are reused as usual. */
  closeIdle(): void {
    for (const c of this.idle.splice(0)) {
      c.state = CLOSED;
      c.destroy();
    }
  }

  close(): void {
    this.closed = true;
    this.closeIdle();
    this.pending.failAll('shutting_down');
  }

  // --- called by H1UpstreamConnection ---

  onConnected(conn: H1UpstreamConnection): void {
    this.connecting--;
    if (conn.affinity !== null) this.connectDone(conn.affinity);
    this.observer?.connectSucceeded();
    this.dispatch(conn);
  }

  onConnectFailed(conn: H1UpstreamConnection, code: DialFailure): void {
    if (conn.state !== CONNECTING) return;
    conn.state = CLOSED;
    this.connecting--;
    this.connectFailures++;
    // Running out of source ports says nothing about the endpoint's health.
    if (code === 'upstream_connect_failed') this.observer?.connectFailed();
    if (conn.affinity !== null) {
      this.connectDone(conn.affinity);
      // The attempt covered a waiter of its client's: fail the oldest one still uncovered.
      const w = this.uncoveredWaiter(conn.affinity);
      if (w !== null) {
        this.pending.remove(w);
        w.onPoolError(code);
      }
      return;
    }
    // Fail the oldest waiter that this attempt was covering; the others keep their own attempts.
    if (this.pending.length > this.connecting) {
      const w = this.pending.shift();
      w?.onPoolError(code);
    }
  }

  onIdleClosed(conn: H1UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** `key`, `origin`: with send_proxy_protocol, the client connection the new connection is for. */
  private connect(key: string | null = null, origin: ClientOrigin | null = null): void {
    this.connecting++;
    this.connectsTotal++;
    let header: Buffer | null = null;
    const pp = this.opts.sendProxyProtocol;
    if (key !== null && pp !== undefined) {
      this.connectingFor!.set(key, (this.connectingFor!.get(key) ?? 0) + 1);
      header = origin === null ? proxyHeaderFor(pp, UNKNOWN_ORIGIN) : proxyHeaderFor(pp, origin);
    }
    new H1UpstreamConnection(this, this.address, this.port, this.opts.connectTimeoutMs, key, header);
  }

  /** A connection is ready (new or released): serve the queue head, or park it idle. */
  private dispatch(conn: H1UpstreamConnection): void {
    if (conn.affinity !== null) {
      this.dispatchOwn(conn, conn.affinity);
      return;
    }
    const w = this.pending.shift();
    if (w !== null) {
      this.lease(conn, w);
      return;
    }
    this.park(conn);
  }

  private park(conn: H1UpstreamConnection): void {
    if (this.closed) {
      conn.state = CLOSED;
      conn.destroy();
      return;
    }
    conn.state = IDLE;
    conn.deadline = deadlineIn(this.opts.idleTimeoutMs);
    this.idle.push(conn);
  }

  // --- send_proxy_protocol: connections with an affinity ---

  private acquireFor(w: PoolWaiter, fresh: boolean): void {
    const origin = w.clientOrigin?.() ?? null;
    const key = origin === null ? '' : originKey(origin);
    if (!fresh) {
      for (let i = this.idle.length - 1; i >= 0; i--) {
        const conn = this.idle[i]!;
        if (conn.affinity !== key) continue;
        this.idle.splice(i, 1);
        this.reused++;
        this.lease(conn, w);
        return;
      }
    }
    // At the cap, an idle connection of another client makes room (the least recently used one).
    if (this.open >= this.opts.maxConnections && this.idle.length > 0) {
      const victim = this.idle.shift()!;
      victim.state = CLOSED;
      victim.destroy();
    }
    this.connectOrQueue(w, key, origin);
  }

  /**
   * A connection of `key`'s is ready: its client's oldest waiter gets it. Without one, it parks idle,
   * unless other clients wait for a connection of their own: then its slot goes to one of them.
   */
  private dispatchOwn(conn: H1UpstreamConnection, key: string): void {
    for (let w = this.pending.head; w !== null; w = w.queueNext) {
      if (keyOf(w) !== key) continue;
      this.pending.remove(w);
      this.lease(conn, w);
      return;
    }
    if (!this.closed && this.uncoveredWaiter(null) !== null) {
      conn.state = CLOSED;
      conn.destroy();
      if (this.opts.mayConnect?.() ?? true) this.connectForPending();
      return;
    }
    this.park(conn);
  }

  /** Dials for the oldest waiter no connect in flight covers. */
  private connectForPending(): void {
    const w = this.uncoveredWaiter(null);
    if (w === null) return;
    const origin = w.clientOrigin?.() ?? null;
    this.connect(origin === null ? '' : originKey(origin), origin);
  }

  /**
   * The oldest waiter (of client `only`, or of any) that the connects in flight for its client do not
   * cover: the n-th waiter of a client is covered while n connects for that client are in flight.
   */
  private uncoveredWaiter(only: string | null): PoolWaiter | null {
    const seen = new Map<string, number>();
    for (let w = this.pending.head; w !== null; w = w.queueNext) {
      const key = keyOf(w);
      if (only !== null && key !== only) continue;
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      if (n > (this.connectingFor!.get(key) ?? 0)) return w;
    }
    return null;
  }

  private connectDone(key: string): void {
    const m = this.connectingFor!;
    const n = (m.get(key) ?? 1) - 1;
    if (n <= 0) m.delete(key);
    else m.set(key, n);
  }

  private lease(conn: H1UpstreamConnection, w: PoolWaiter): void {
    conn.state = BUSY;
    conn.deadline = 0;
    conn.requests++;
    this.busy++;
    // The waiter sets conn.user in onPoolReady before it writes anything.
    w.onPoolReady(conn);
  }
}
