import { performance } from 'node:perf_hooks';
import http2 from 'node:http2';
import type net from 'node:net';
import type tls from 'node:tls';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import type { Dial, DialFailure, DialHandler } from '../ports/dialer.ts';
import type { H2Pool } from './h2-pool.ts';
import { secureUpstream } from './upstream-tls.ts';

const { NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Dialling, TLS, or waiting for the peer's first SETTINGS. */
export const CONNECTING = 0;
/** Takes new streams (while it has room). */
export const READY = 1;
/** Takes no new streams (GOAWAY either way, request budget spent, session error); finishing its own. */
export const DRAINING = 2;
export const CLOSED = 3;

/** Largest SETTINGS_MAX_CONCURRENT_STREAMS: what a peer that sends none allows. */
const UNLIMITED = 0xffffffff;

/**
 * Streams whose response headers arrived. Such a stream was processed by the peer, so it is never
 * "refused" whatever it closed with. A WeakSet fed by one shared listener: no closure per stream.
 */
const responded = new WeakSet<http2.ClientHttp2Stream>();
function markResponded(this: http2.ClientHttp2Stream): void {
  responded.add(this);
}

/** PING keepalive failure: the session is destroyed with this, so its streams error with it. */
class PingTimeoutError extends Error {
  readonly code = 'ERR_MUXGATE_PING_TIMEOUT';
}

/**
 * One HTTP/2 connection to an endpoint, owned by its H2Pool, carrying many streams at once.
 *
 * Slots: the pool reserves a slot (`active++`) before it calls the waiter, and the waiter opens its
 * stream right away with `request` (or gives the slot back with `releaseSlot`). The slot returns
 * when the stream closes. The session counts as connected only once the peer's SETTINGS arrived:
 * that is when its concurrent-stream limit is known.
 *
 * Timers: one sweeper deadline covers connect (dial + TLS + SETTINGS), idle close, and PING
 * keepalive. Keepalive needs "no frames received for a while": Node has no per-frame event, so the
 * socket's byte counter is sampled instead (it counts everything the session read).
 */
export class H2Session implements Expirable, DialHandler {
  readonly pool: H2Pool;
  state = CONNECTING;
  /** Streams reserved or open on this session. */
  active = 0;
  /** Slots handed out over the session's life (for max_requests_per_connection). */
  requests = 0;
  /** min(local cap, peer's SETTINGS_MAX_CONCURRENT_STREAMS), from the peer's latest SETTINGS. */
  cap = 0;
  deadline = 0;
  private readonly dial: Dial;
  /** The dialled TCP socket: its close frees the source port, its byte counter feeds keepalive. */
  private raw: net.Socket | null = null;
  private tlsSocket: tls.TLSSocket | null = null;
  private session: http2.ClientHttp2Session | null = null;
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
    this.deadline = performance.now() + pool.opts.connectTimeoutMs;
    sweeper.add(this);
    this.dial = pool.dialer.dial(pool.address, pool.port, { noDelay: true, keepAlive: true }, this);
  }

  /** Streams this session may still carry: 0 unless READY (and Node has not given up on it). */
  get capacity(): number {
    if (this.state !== READY) return 0;
    const s = this.session;
    // Node destroys a session (socket closed, protocol error) before it emits 'close'.
    if (s === null || s.closed || s.destroyed) return 0;
    return this.cap;
  }

  /** The peer sent SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): extended CONNECT streams are allowed. */
  get connectProtocol(): boolean {
    return this.session?.remoteSettings.enableConnectProtocol === true;
  }

  /** Open the stream for the slot the pool reserved (call synchronously from onSessionReady). */
  request(headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = (this.session as http2.ClientHttp2Session).request(headers, { endStream });
    } catch (err) {
      this.freeSlot();
      throw err;
    }
    this.pool.streamsTotal++;
    // `on`, not `once`: each fires once per stream anyway, and `once` allocates a wrapper.
    stream.on('response', markResponded);
    // Added before the caller's listeners: the slot is back before the caller reacts to the close
    // (a retry with `avoid` then sees the true state). The one closure per stream.
    stream.on('close', () => this.streamClosed(stream));
    return stream;
  }

  /** The waiter got a slot but will not use it (client went away): give it back. */
  releaseSlot(): void {
    this.freeSlot();
  }

  /**
   * True if the peer never processed `stream`, so any request (even a POST) may go again elsewhere:
   * no response headers came, and it was reset with REFUSED_STREAM or lies above the last-stream-id
   * of a GOAWAY the peer sent. The id test matters: on a NO_ERROR GOAWAY Node closes the streams
   * above it with rstCode REFUSED_STREAM, but on a GOAWAY with an error code it destroys the whole
   * session and every stream closes with that code (ERR_HTTP2_SESSION_ERROR).
   */
  wasRefused(stream: http2.ClientHttp2Stream): boolean {
    if (responded.has(stream)) return false;
    if (stream.rstCode === NGHTTP2_REFUSED_STREAM) return true;
    const id = stream.id;
    // No id: the HEADERS never left.
    return id === undefined || (this.goawayLast !== -1 && id > this.goawayLast);
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
      this.session?.close();
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
    const pool = this.pool;
    const o = pool.opts;
    try {
      const session = http2.connect(pool.authority, {
        createConnection: () => socket,
        settings: { initialWindowSize: o.h2.initialWindowSize, enablePush: false },
        maxSessionMemory: o.h2.maxSessionMemoryMb,
      });
      this.session = session;
      session.on('error', this.onSessionError);
      session.on('close', this.onSessionClose);
      session.on('goaway', this.onGoaway);
      session.on('remoteSettings', this.onRemoteSettings);
      // The connection window is not a SETTINGS parameter (it moves by WINDOW_UPDATE): without this
      // every stream shares 64 KiB and a large body crawls at one window per round trip.
      if (o.h2.connectionWindowSize > 65_535) session.setLocalWindowSize(o.h2.connectionWindowSize);
    } catch {
      this.fail('upstream_connect_failed'); // e.g. a host name node:http2 cannot put in a URL
    }
  }

  private fail(code: DialFailure): void {
    if (this.state !== CONNECTING) return;
    this.abort();
    this.pool.connectFailed(this, code);
  }

  private teardown(): void {
    this.session?.destroy();
    this.tlsSocket?.destroy();
    this.dial.cancel(); // destroys the raw socket, which frees the source port
  }

  // --- session events (closures made once per session) ---

  private readonly onRemoteSettings = (settings: http2.Settings): void => {
    this.cap = Math.min(this.pool.opts.h2.maxConcurrentStreams, settings.maxConcurrentStreams ?? UNLIMITED);
    if (this.state === CONNECTING) {
      const now = performance.now();
      this.state = READY;
      this.rxBytes = this.raw?.bytesRead ?? 0;
      this.rxAt = now;
      this.checkAt = this.pool.opts.h2.pingIntervalMs > 0 ? now + this.pool.opts.h2.pingIntervalMs : 0;
      this.pool.sessionReady(this);
      if (this.active === 0 && this.state === READY) this.setIdle(now);
      else this.rearm();
    } else if (this.state === READY) {
      // A later SETTINGS may raise or lower the limit; a lower one applies to new streams only.
      this.pool.capacityChanged(this);
    }
  };

  private readonly onGoaway = (_code: number, lastStreamID: number): void => {
    // Node emits 'goaway' for every GOAWAY frame; a graceful shutdown often sends two.
    if (this.goawayLast === -1 && !this.closing) this.pool.goaways++;
    if (this.goawayLast === -1 || lastStreamID < this.goawayLast) this.goawayLast = lastStreamID;
    // Node closes the session itself (gracefully for NO_ERROR, destroyed otherwise).
    this.drain();
  };

  private readonly onSessionError = (): void => {
    // Node destroys the session after this; 'close' follows. Take no new streams meanwhile.
    this.drain();
  };

  private readonly onSessionClose = (): void => {
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
  };

  // --- slots ---

  private streamClosed(stream: http2.ClientHttp2Stream): void {
    if (this.wasRefused(stream)) this.pool.refusedStreams++;
    this.freeSlot();
  }

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
    const rx = this.raw?.bytesRead ?? 0;
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
        this.session?.destroy(new PingTimeoutError('no HTTP/2 PING ack from the upstream'));
        return;
      }
      this.checkAt = this.pingSentAt + h2.pingTimeoutMs;
      return;
    }
    if (now - this.rxAt >= h2.pingIntervalMs) {
      this.pingSentAt = now;
      this.checkAt = now + h2.pingTimeoutMs;
      try {
        this.session?.ping(this.onPingAck);
      } catch {
        // Closing session: its 'close' ends the keepalive.
      }
      return;
    }
    // The byte counter only tells that something arrived since the last look, not when: look again
    // well before the interval ends so a ping goes out at most a quarter interval late.
    this.checkAt = Math.min(this.rxAt + h2.pingIntervalMs, now + h2.pingIntervalMs / 4);
  }

  private readonly onPingAck = (err: Error | null): void => {
    if (err !== null || this.state === CLOSED) return;
    const now = performance.now();
    this.pingSentAt = 0;
    this.rxAt = now;
    this.rxBytes = this.raw?.bytesRead ?? 0;
    this.checkAt = now + this.pool.opts.h2.pingIntervalMs;
    this.rearm();
  };
}

function noop(): void {}
