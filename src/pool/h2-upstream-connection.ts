import { Buffer } from 'node:buffer';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import { type ConnectionFailure, type ConnectionHandler, Http2Connection } from '../http2/connection.ts';
import { MAX_STREAM_ID, REFUSED_STREAM } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import type { Dial, DialFailure, DialHandler } from '../ports/dialer.ts';
import type { H2Pool } from './h2-pool.ts';
import type { ResponseTranslation } from '../forward/response-translation.ts';
import { secureUpstream } from './upstream-tls.ts';

/** Dialling, TLS, or waiting for the peer's first SETTINGS. */
export const CONNECTING = 0;
/** Takes new streams (while it has room). */
export const READY = 1;
/** Takes no new streams (GOAWAY either way, request budget spent, session error); finishing its own. */
export const DRAINING = 2;
export const CLOSED = 3;

/** Largest SETTINGS_MAX_CONCURRENT_STREAMS: what a peer that sends none allows. */
const UNLIMITED = 0xffffffff;

const PING_PAYLOAD = Buffer.from('muxgping', 'latin1');

/**
 * One HTTP/2 connection to an endpoint, owned by its H2Pool, carrying many streams at once.
 *
 * Slots: the pool reserves a slot (`active++`) before it calls the waiter, and the waiter opens its
 * stream right away with `request` (or gives the slot back with `releaseSlot`). The slot returns
 * when the stream closes. The session counts as connected only once the peer's SETTINGS arrived:
 * that is when its concurrent-stream limit is known.
 *
 * Timers: one sweeper deadline covers connect (dial + TLS + SETTINGS), idle close, and PING
 * keepalive. Keepalive needs "no frames received for a while": the connection's byte counter is
 * sampled instead of a timer per frame.
 *
 * The protocol is muxgate's own engine (src/http2/connection.ts) in the client role.
 */
export class H2UpstreamConnection implements Expirable, DialHandler, ConnectionHandler {
  readonly pool: H2Pool;
  state = CONNECTING;
  /** Streams reserved or open on this session. */
  active = 0;
  /** Slots handed out over the session's life (for max_requests_per_connection). */
  requests = 0;
  /** min(local cap, peer's SETTINGS_MAX_CONCURRENT_STREAMS), from the peer's latest SETTINGS. */
  cap = 0;
  deadline = 0;
  sweepSlot = -1;
  /**
   * Its responses' last head as the forwarding side checked and translated it (made by the first H2Leg
   * that needs it; this connection's decoder hands equal blocks out as the same list).
   */
  translation: ResponseTranslation | null = null;
  private readonly dial: Dial;
  /** The dialled TCP socket: its close frees the source port, its byte counter feeds keepalive. */
  private raw: net.Socket | null = null;
  private tlsSocket: tls.TLSSocket | null = null;
  private conn: Http2Connection | null = null;
  /** Lowest last-stream-id of the GOAWAYs received; -1 = none. */
  private goawayLast = -1;
  /** We sent GOAWAY (session.close()): a GOAWAY the peer sends after that is only its answer. */
  private closing = false;
  // Deadlines (performance.now() ms, 0 = none); `deadline` is the earliest of them.
  private idleAt = 0;
  private checkAt = 0;
  /** When the unanswered PING went out (0 = none in flight). */
  private pingSentAt = 0;
  private rxBytes = 0;
  private rxAt = 0;

  constructor(pool: H2Pool) {
    this.pool = pool;
    this.deadline = deadlineIn(pool.opts.connectTimeoutMs);
    sweeper.add(this);
    this.dial = pool.dialer.dial(pool.address, pool.port, { noDelay: true, keepAlive: true }, this);
  }

  /** Streams this session may still carry: 0 unless READY (and the connection is still up). */
  get capacity(): number {
    if (this.state !== READY) return 0;
    const c = this.conn;
    if (c === null || c.closed || c.goawayReceived) return 0;
    return this.cap;
  }

  /** The peer sent SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): extended CONNECT streams are allowed. */
  get connectProtocol(): boolean {
    return this.conn?.remote.enableConnectProtocol === true;
  }

  /**
   * Open the stream for the slot the pool reserved (call synchronously from onSessionReady).
   * `fields`: flat [name, value, ...], pseudo-fields first. Null when the connection cannot take it
   * (it went away meanwhile); the slot is given back then.
   */
  request(
    fields: readonly string[],
    endStream: boolean,
    sink: StreamSink | null,
    noResponseBody = false,
  ): Http2Stream | null {
    const c = this.conn;
    const stream = c === null ? null : c.request(fields, endStream, sink, noResponseBody);
    if (stream === null) {
      this.freeSlot();
      return null;
    }
    this.pool.streamsTotal++;
    // Stream ids run out after 2^30 requests: retire the connection before the last one (a new one
    // takes over), rather than fail a request on it.
    if (c!.nextStreamId > MAX_STREAM_ID) this.retire();
    return stream;
  }

  /** The waiter got a slot but will not use it (client went away): give it back. */
  releaseSlot(): void {
    this.freeSlot();
  }

  /**
   * True if the peer never processed `stream`, so any request (even a POST) may go again elsewhere:
   * no response head came, and it was reset with REFUSED_STREAM or lies above the last-stream-id of a
   * GOAWAY the peer sent (the engine resets those with REFUSED_STREAM).
   */
  wasRefused(stream: Http2Stream): boolean {
    return !stream.headersReceived && stream.resetCode === REFUSED_STREAM;
  }

  /** Graceful close: no new streams, GOAWAY sent, the socket closes once the open streams end. */
  close(): void {
    if (this.state === CLOSED) return;
    if (this.state === CONNECTING) {
      this.abort();
      return;
    }
    this.drain();
    if (!this.closing) {
      this.closing = true;
      this.conn?.shutdown();
    }
  }

  /** Stop taking streams (request budget spent); closes when the last one ends. */
  retire(): void {
    this.drain();
    if (this.active === 0) this.close();
  }

  /** Tear down at once without telling the pool (the pool is dropping it itself). */
  abort(): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    sweeper.delete(this);
    this.teardown();
  }

  // --- connect ---

  onDialConnected(socket: net.Socket): void {
    if (this.state !== CONNECTING) {
      socket.destroy();
      return;
    }
    this.raw = socket;
    // Dial listens with once('error'); a later error on the raw socket must not go unhandled.
    socket.on('error', noop);
    const t = this.pool.opts.tls;
    if (t === null) this.startSession(socket);
    else this.tlsSocket = secureUpstream(socket, t, this.pool.opts.host, this.pool.opts.alpn, this.onSecure);
  }

  onDialFailed(code: DialFailure): void {
    this.fail(code);
  }

  private readonly onSecure = (err: Error | null, socket: tls.TLSSocket, alpn: string | false): void => {
    if (this.state !== CONNECTING) {
      socket.destroy();
      return;
    }
    if (err !== null) {
      this.fail('upstream_connect_failed');
      return;
    }
    if (alpn === 'h2') {
      this.startSession(socket);
      return;
    }
    if (this.pool.opts.alpn.includes('http/1.1')) {
      // The endpoint speaks HTTP/1.1 only: this connection is not ours to keep (the H1 pool dials its own).
      this.abort();
      this.pool.fallback(this);
      return;
    }
    this.fail('upstream_connect_failed');
  };

  private startSession(socket: net.Socket): void {
    const h2 = this.pool.opts.h2;
    const conn = new Http2Connection(socket, 'client', this, {
      maxConcurrentStreams: h2.maxConcurrentStreams,
      initialWindowSize: h2.initialWindowSize,
      connectionWindowSize: h2.connectionWindowSize,
      maxHeaderListSize: h2.maxHeaderListSize,
      maxHeaderBlockBytes: h2.maxHeaderListSize * 2,
      headerTableSize: 4096,
      enableConnectProtocol: false,
      settingsTimeoutMs: this.pool.opts.connectTimeoutMs,
      stallTimeoutMs: h2.stallTimeoutMs,
      floods: UPSTREAM_FLOODS,
    });
    this.conn = conn;
    conn.start(null);
  }

  private fail(code: DialFailure): void {
    if (this.state !== CONNECTING) return;
    this.abort();
    this.pool.connectFailed(this, code);
  }

  private teardown(): void {
    this.conn?.destroy();
    this.tlsSocket?.destroy();
    this.dial.cancel(); // destroys the raw socket, which frees the source port
  }

  // --- connection events ---

  onStream(stream: Http2Stream): void {
    stream.reset(REFUSED_STREAM); // never called for a client: the engine refuses peer streams itself
  }

  onSettings(): void {
    const remote = this.conn!.remote;
    const peerMax = Number.isFinite(remote.maxConcurrentStreams) ? remote.maxConcurrentStreams : UNLIMITED;
    this.cap = Math.min(this.pool.opts.h2.maxConcurrentStreams, peerMax);
    if (this.state === CONNECTING) {
      const now = performance.now();
      this.state = READY;
      this.rxBytes = this.conn!.bytesReceived;
      this.rxAt = now;
      this.checkAt = this.pool.opts.h2.pingIntervalMs > 0 ? now + this.pool.opts.h2.pingIntervalMs : 0;
      this.pool.sessionReady(this);
      if (this.active === 0 && this.state === READY) this.setIdle(now);
      else this.rearm();
    } else if (this.state === READY) {
      // A later SETTINGS may raise or lower the limit; a lower one applies to new streams only.
      this.pool.capacityChanged(this);
    }
  }

  onGoaway(lastStreamId: number): void {
    // A graceful shutdown often sends two GOAWAYs: count the session once.
    if (this.goawayLast === -1 && !this.closing) this.pool.goaways++;
    if (this.goawayLast === -1 || lastStreamId < this.goawayLast) this.goawayLast = lastStreamId;
    this.drain();
    // No new streams; the connection closes once the streams below the last id are done.
    if (this.active === 0) this.close();
  }

  onStreamClosed(stream: Http2Stream): void {
    if (this.wasRefused(stream)) this.pool.refusedStreams++;
    this.freeSlot();
  }

  onPingAck(): void {
    if (this.state === CLOSED) return;
    const now = performance.now();
    this.pingSentAt = 0;
    this.rxAt = now;
    this.rxBytes = this.conn?.bytesReceived ?? 0;
    this.checkAt = now + this.pool.opts.h2.pingIntervalMs;
    this.rearm();
  }

  onClose(_failure: ConnectionFailure | null): void {
    const prev = this.state;
    if (prev === CLOSED) return;
    if (prev === CONNECTING) {
      this.fail('upstream_connect_failed');
      return;
    }
    this.state = CLOSED;
    sweeper.delete(this);
    this.raw?.destroy();
    this.pool.sessionClosed(this, prev);
  }

  // --- slots ---

  private freeSlot(): void {
    if (this.active === 0) return;
    this.active--;
    if (this.state === READY) {
      this.pool.slotFreed(this); // may hand the slot straight to a queued waiter
      if (this.active === 0 && this.state === READY) this.setIdle(performance.now());
    } else if (this.state === DRAINING && this.active === 0) {
      this.close();
    }
  }

  /** The pool reserved a slot on this session. */
  reserved(): void {
    // `deadline` may still hold the idle time: expire() then finds idleAt 0 and only rearms.
    if (this.active++ === 0) this.idleAt = 0;
    this.requests++;
  }

  private drain(): void {
    if (this.state !== READY) return;
    this.state = DRAINING;
    this.idleAt = 0;
    this.pool.sessionDraining(this);
  }

  // --- deadlines ---

  private setIdle(now: number): void {
    const ms = this.pool.opts.idleTimeoutMs;
    if (ms > 0) this.idleAt = now + ms;
    this.rearm();
  }

  private rearm(): void {
    const a = this.idleAt;
    const b = this.checkAt;
    this.deadline = a === 0 ? b : b === 0 ? a : Math.min(a, b);
  }

  expire(now: number): void {
    if (this.state === CONNECTING) {
      this.fail('upstream_connect_failed'); // dial + TLS + SETTINGS did not finish in time
      return;
    }
    if (this.state === CLOSED) return;
    if (this.idleAt !== 0 && now >= this.idleAt) {
      this.idleAt = 0;
      if (this.active === 0 && this.state === READY) {
        this.close(); // its 'close' ends every deadline
        return;
      }
    }
    if (this.checkAt !== 0 && now >= this.checkAt) this.keepalive(now);
    this.rearm();
  }

  /** PING after `pingIntervalMs` without a received byte; no answer within `pingTimeoutMs` kills the session. */
  private keepalive(now: number): void {
    const h2 = this.pool.opts.h2;
    const rx = this.conn?.bytesReceived ?? 0;
    if (rx !== this.rxBytes) {
      this.rxBytes = rx;
      this.rxAt = now;
      // Bytes arriving while a PING is out prove the peer alive (the ack may sit behind DATA).
      if (this.pingSentAt !== 0) this.pingSentAt = now;
    }
    if (this.pingSentAt !== 0) {
      if (now - this.pingSentAt >= h2.pingTimeoutMs) {
        this.pool.pingTimeouts++;
        this.checkAt = 0;
        this.drain();
        // Dead: its streams end with the connection (upstream_reset for their exchanges).
        this.conn?.destroy();
        return;
      }
      this.checkAt = this.pingSentAt + h2.pingTimeoutMs;
      return;
    }
    if (now - this.rxAt >= h2.pingIntervalMs) {
      this.pingSentAt = now;
      this.checkAt = now + h2.pingTimeoutMs;
      this.conn?.ping(PING_PAYLOAD);
      return;
    }
    // The byte counter only tells that something arrived since the last look, not when: look again
    // well before the interval ends so a ping goes out at most a quarter interval late.
    this.checkAt = Math.min(this.rxAt + h2.pingIntervalMs, now + h2.pingIntervalMs / 4);
  }
}

/** Limits on an upstream's control frames: generous (it is ours to trust more), but bounded. */
export const UPSTREAM_FLOODS = {
  intervalMs: 10_000,
  maxResets: Number.MAX_SAFE_INTEGER,
  resetIntervalMs: 10_000,
  maxSettings: 1000,
  maxPings: 1000,
  maxEmptyFrames: 10_000,
  maxWindowUpdates: 1_000_000,
  maxPriority: 10_000,
};

function noop(): void {}
