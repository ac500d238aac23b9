import { clockNow } from '../core/clock.ts';
import type { DialFailure, Dialer } from '../ports/dialer.ts';
import type { ConnectObserver, PoolOptions, UpstreamPool } from './upstream-pool.ts';
import { PendingQueue } from './pending-queue.ts';
import type { PoolKey } from './pool-key.ts';
import type { PoolWaiter } from './pool-waiter.ts';
import { H2UpstreamConnection, READY } from './h2-upstream-connection.ts';
import type { UpstreamTls } from './upstream-tls.ts';

export interface H2Options {
  /** Local cap of streams per session (the peer's SETTINGS may lower it). */
  maxConcurrentStreams: number;
  /** Per-stream receive window we advertise (SETTINGS_INITIAL_WINDOW_SIZE), bytes. */
  initialWindowSize: number;
  /** Session-level receive window, bytes. */
  connectionWindowSize: number;
  /** Largest decoded response header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** A request body stuck behind the upstream's zero window this long is reset. */
  stallTimeoutMs: number;
  /** 0 = no keepalive; otherwise PING a session that received nothing for this long. */
  pingIntervalMs: number;
  /** No PING ack within this: the session is dead and destroyed. */
  pingTimeoutMs: number;
}

/**
 * `maxConnections` caps sessions per endpoint (connected + connecting; draining ones do not count,
 * they take no new streams). `maxRequestsPerConnection` is streams per session before it is retired.
 */
export interface H2PoolOptions extends PoolOptions {
  h2: H2Options;
  tls: UpstreamTls | null;
  /** TLS ALPN offer: ['h2'] for protocol http2, ['h2', 'http/1.1'] for auto. */
  alpn: string[];
  /** The endpoint's configured name: SNI, certificate check, and the default :authority. */
  host: string;
}

/**
 * HTTP/2 sessions to one endpoint (one PoolKey); many requests share a session as streams.
 *
 * acquire() reserves one stream slot on the first session, in open order, that has room, so streams
 * pack into as few sessions as possible and surplus sessions go idle and close. With no room, the
 * waiter queues (FIFO) and a session is opened when the queue outgrows what the sessions already
 * connecting are expected to take (the peer's limit learnt from earlier sessions, else the local
 * cap). At `maxConnections` the queue holds at most `maxPending` beyond that (`pool_queue_full`),
 * each waiter for at most `pendingTimeoutMs` (`pool_queue_timeout`). A slot that frees up, a session
 * that connects, or a peer that raises its limit serves the queue head first.
 */
export class H2Pool implements UpstreamPool {
  readonly key: PoolKey;
  readonly address: string;
  readonly port: number;
  readonly opts: H2PoolOptions;
  readonly dialer: Dialer;
  readonly scheme: 'http' | 'https';
  /** The endpoint as an origin (scheme://host:port): the default :authority. */
  readonly authority: string;
  private readonly observer: ConnectObserver | null;
  /**
   * Set when TLS ALPN settled on something other than h2 (protocol auto): the endpoint then uses
   * HTTP/1.1. The pool hands every queued waiter (and any later one) here and takes no more work.
   */
  onFallback: ((waiters: PoolWaiter[]) => void) | null = null;
  fellBack = false;
  /** Connected sessions that take new streams, in open order. */
  private readonly usable: H2UpstreamConnection[] = [];
  /** Connected sessions that take no new streams and finish the ones they carry. */
  private readonly draining = new Set<H2UpstreamConnection>();
  private readonly connectingSet = new Set<H2UpstreamConnection>();
  private readonly pending: PendingQueue;
  /** Streams a connecting session is expected to take: the latest peer's limit, else the local cap. */
  private expected: number;
  private dispatching = false;
  private redispatch = false;
  private closed = false;

  // Counters for the stats snapshot.
  connectsTotal = 0;
  connectFailures = 0;
  queueFull = 0;
  queueTimeouts = 0;
  /** Sessions the peer sent GOAWAY on (counted once per session, answers to ours not counted). */
  goaways = 0;
  /** Streams closed unprocessed: RST_STREAM REFUSED_STREAM, or above a GOAWAY's last-stream-id. */
  refusedStreams = 0;
  pingTimeouts = 0;
  streamsTotal = 0;

  constructor(
    key: PoolKey,
    address: string,
    port: number,
    opts: H2PoolOptions,
    dialer: Dialer,
    observer: ConnectObserver | null = null,
  ) {
    this.key = key;
    this.address = address;
    this.port = port;
    this.opts = opts;
    this.pending = new PendingQueue(opts.pendingTimeoutMs, (w) => {
      this.queueTimeouts++;
      w.onPoolError('pool_queue_timeout');
    });
    this.dialer = dialer;
    this.observer = observer;
    this.scheme = opts.tls === null ? 'http' : 'https';
    const name = opts.host === '' ? address : opts.host;
    this.authority = `${this.scheme}://${name.includes(':') ? `[${name}]` : name}:${port}`;
    this.expected = Math.max(1, opts.h2.maxConcurrentStreams);
  }

  /** Connected sessions (taking streams or draining). */
  get sessions(): number {
    return this.usable.length + this.draining.size;
  }
  get connecting(): number {
    return this.connectingSet.size;
  }
  get drainingCount(): number {
    return this.draining.size;
  }
  get pendingCount(): number {
    return this.pending.length;
  }
  get streamsActive(): number {
    let n = 0;
    for (const s of this.usable) n += s.active;
    for (const s of this.draining) n += s.active;
    return n;
  }

  /**
   * Reserve a stream slot for `w`. `avoid` (a session that just refused this request) is not handed
   * out while another session has room or a new one may be opened. May call back synchronously.
   */
  acquire(w: PoolWaiter, avoid: H2UpstreamConnection | null = null): void {
    if (this.closed) {
      w.onPoolError('shutting_down');
      return;
    }
    if (this.fellBack) {
      this.handOff([w]);
      return;
    }
    for (const s of this.usable) {
      if (s !== avoid && s.active < s.capacity) {
        this.lease(s, w);
        return;
      }
    }
    const max = this.opts.maxConnections;
    const have = this.usable.length + this.connectingSet.size;
    if (have < max) {
      const may = this.opts.mayConnect;
      if (may === undefined || may()) {
        this.pending.push(w, clockNow());
        this.maybeConnect();
        return;
      }
      // The cluster is at its max_connections: wait for room on ours, or refuse when there is none.
      if (have === 0) {
        this.opts.capRefused?.();
        w.onPoolError('circuit_open');
        return;
      }
    }
    if (avoid !== null && avoid.active < avoid.capacity) {
      this.lease(avoid, w); // nowhere else to go
      return;
    }
    // At the cap: only waiters beyond what the connecting sessions will take count against max_pending.
    if (this.pending.length - this.absorbable() >= this.opts.maxPending) {
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

  /** Closes the sessions that carry no stream (GOAWAY); busy ones stay. */
  closeIdle(): void {
    for (const s of [...this.usable]) if (s.active === 0) s.close();
  }

  /** GOAWAY every session (open streams finish), drop connects, fail the queue with `shutting_down`. */
  close(): void {
    this.closed = true;
    for (const s of this.connectingSet) s.abort();
    this.connectingSet.clear();
    for (const s of [...this.usable]) s.close();
    for (const s of [...this.draining]) s.close();
    this.pending.failAll('shutting_down');
  }

  // --- called by H2UpstreamConnection ---

  /** The peer's first SETTINGS arrived: the session takes streams. */
  sessionReady(s: H2UpstreamConnection): void {
    this.connectingSet.delete(s);
    this.usable.push(s);
    this.observer?.connectSucceeded();
    this.expected = Math.max(1, s.cap);
    this.dispatch();
    // A lower limit than expected leaves waiters the other connects will not take.
    this.maybeConnect();
  }

  /** A later SETTINGS changed the session's stream limit. */
  capacityChanged(s: H2UpstreamConnection): void {
    this.expected = Math.max(1, s.cap);
    if (this.pending.head !== null) {
      this.dispatch();
      this.maybeConnect();
    }
  }

  slotFreed(_s: H2UpstreamConnection): void {
    if (this.pending.head !== null) this.dispatch();
  }

  /** The session takes no new streams from now on (it was READY). */
  sessionDraining(s: H2UpstreamConnection): void {
    const i = this.usable.indexOf(s);
    if (i !== -1) this.usable.splice(i, 1);
    this.draining.add(s);
    this.maybeConnect();
  }

  sessionClosed(s: H2UpstreamConnection, prev: number): void {
    if (prev === READY) {
      const i = this.usable.indexOf(s);
      if (i !== -1) this.usable.splice(i, 1);
    } else {
      this.draining.delete(s);
    }
    this.maybeConnect();
  }

  connectFailed(s: H2UpstreamConnection, code: DialFailure): void {
    if (!this.connectingSet.delete(s)) return;
    this.connectFailures++;
    // Running out of source ports says nothing about the endpoint's health.
    if (code === 'upstream_connect_failed') this.observer?.connectFailed();
    // Fail the waiters this attempt was covering (the oldest ones the other connects will not take),
    // rather than connect again once per waiter: the endpoint just failed a connect.
    let n = Math.min(this.expected, this.pending.length - this.absorbable());
    while (n-- > 0) {
      const w = this.pending.shift();
      if (w === null) break;
      w.onPoolError(code);
    }
    this.maybeConnect();
  }

  /** TLS settled on HTTP/1.1 (ALPN auto): the endpoint is HTTP/1.1, hand everything over. */
  fallback(s: H2UpstreamConnection): void {
    this.connectingSet.delete(s);
    if (this.fellBack || this.closed) return;
    this.fellBack = true;
    for (const c of this.connectingSet) c.abort();
    this.connectingSet.clear();
    for (const u of [...this.usable]) u.close();
    const waiters: PoolWaiter[] = [];
    for (let w = this.pending.shift(); w !== null; w = this.pending.shift()) waiters.push(w);
    if (waiters.length > 0) this.handOff(waiters);
  }

  // --- internals ---

  private handOff(waiters: PoolWaiter[]): void {
    if (this.onFallback !== null) this.onFallback(waiters);
    else for (const w of waiters) w.onPoolError('upstream_connect_failed');
  }

  /** Waiters the sessions now connecting are expected to take. */
  private absorbable(): number {
    return this.connectingSet.size * this.expected;
  }

  /** Open sessions while the queue outgrows what connecting ones will take, up to the cap. */
  private maybeConnect(): void {
    const max = this.opts.maxConnections;
    while (
      !this.closed &&
      !this.fellBack &&
      this.usable.length + this.connectingSet.size < max &&
      this.pending.length > this.absorbable() &&
      (this.opts.mayConnect?.() ?? true)
    ) {
      this.connectsTotal++;
      this.connectingSet.add(new H2UpstreamConnection(this));
    }
  }

  /** Serve the queue from the sessions with room, first session first. */
  private dispatch(): void {
    if (this.dispatching) {
      // A waiter's callback freed or changed capacity: the running loop starts over when done.
      this.redispatch = true;
      return;
    }
    this.dispatching = true;
    try {
      do {
        this.redispatch = false;
        let i = 0;
        while (this.pending.head !== null && i < this.usable.length) {
          const s = this.usable[i] as H2UpstreamConnection;
          // lease may retire s (request budget), which removes it from `usable`: re-read index i.
          if (s.active < s.capacity) this.lease(s, this.pending.shift() as PoolWaiter);
          else i++;
        }
      } while (this.redispatch && this.pending.head !== null);
    } finally {
      this.dispatching = false;
    }
  }

  private lease(s: H2UpstreamConnection, w: PoolWaiter): void {
    s.reserved();
    const max = this.opts.maxRequestsPerConnection;
    if (max > 0 && s.requests >= max) s.retire();
    w.onSessionReady(s);
  }
}
