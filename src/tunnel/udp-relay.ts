import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import type { Duplex } from 'node:stream';
import { CapsuleParser, type CapsuleErrorCode, encodeDatagramCapsule } from './capsule.ts';

export interface UdpRelayOptions {
  /** The relay ends when no datagram has passed either way for this long. */
  idleTimeoutMs: number;
  /** The largest capsule value accepted from the client; default DEFAULT_MAX_CAPSULE_BYTES. */
  maxCapsuleBytes?: number;
  /**
   * Bytes of the tunnel stream already read by whoever accepted it (the `head` of an HTTP/1.1
   * upgrade): a client may send capsules right behind its request, before the response.
   */
  head?: Buffer;
}

export type UdpRelayReason =
  | 'client_closed'
  | 'idle_timeout'
  | 'udp_error'
  | 'malformed_capsule'
  | 'capsule_too_large'
  | 'closed';

export interface UdpRelayResult {
  reason: UdpRelayReason;
  /** Datagrams (and their payload bytes) handed to the UDP socket: client → target. */
  datagramsIn: number;
  bytesIn: number;
  /** Datagrams (and their payload bytes) written to the tunnel stream: target → client. */
  datagramsOut: number;
  bytesOut: number;
  /** Datagrams lost on purpose or refused by the kernel, either way (see UdpRelay). */
  dropped: number;
}

export interface UdpTarget {
  address: string;
  port: number;
  family: 4 | 6;
}

/** Datagrams held while the UDP socket connects, and queued in it at most before we drop. */
const MAX_QUEUED = 64;
/** After a graceful end, how long the client has to close its side before the stream is destroyed. */
const LINGER_MS = 2000;
/**
 * ICMP errors reported on a connected UDP socket (ECONNREFUSED: nothing listens on the port yet).
 * They say one earlier datagram was lost, not that the tunnel is broken: UDP peers restart, routes
 * flap, and the idle timeout ends a tunnel that really is dead.
 */
const SOFT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOBUFS', 'EMSGSIZE']);

/**
 * The CONNECT-UDP (RFC 9298) data plane for one accepted tunnel: DATAGRAM capsules read from the
 * stream (an HTTP/2 stream, or the socket of an HTTP/1.1 upgrade) are sent as UDP datagrams to the
 * target, and UDP datagrams from the target are written back as DATAGRAM capsules.
 *
 * The UDP socket is connected, so the kernel discards datagrams from anyone but the target.
 *
 * Nothing is buffered without bound, because UDP is lossy by design and its senders expect loss:
 * - target → client: while the stream is backpressured (its last write returned false, until
 *   'drain'), datagrams from the target are dropped rather than queued behind a slow client;
 * - client → target: up to MAX_QUEUED datagrams wait for the socket to connect, and a datagram that
 *   would go beyond MAX_QUEUED sends queued in the socket is dropped;
 * all of them count in `dropped`, as do datagrams for a context other than 0, and sends the kernel
 * refuses (these were already counted in datagramsIn).
 *
 * The relay owns the stream and the socket. It ends when the client ends or closes the stream
 * (client_closed; a stream that ends inside a capsule is malformed_capsule), on a capsule error (the
 * stream is destroyed: the message is malformed, RFC 9297 §3.3), on a UDP socket error other than an
 * ICMP report (udp_error), when idle for idleTimeoutMs (idle_timeout), or on close() (closed).
 * Graceful ends end the stream and destroy it if the client has not closed within LINGER_MS.
 * `onDone` is called exactly once: synchronously when the relay ends, but never from within the
 * constructor (an end found there, such as a bad port or an already destroyed stream, is reported on
 * the next tick).
 */
export class UdpRelay {
  private readonly stream: Duplex;
  private readonly socket: dgram.Socket;
  private readonly parser: CapsuleParser;
  private readonly idleTimeoutMs: number;
  private readonly onDone: (r: UdpRelayResult) => void;
  /** Datagrams from the client waiting for the socket to connect; null once it has. */
  private pending: Buffer[] | null = [];
  private timer: NodeJS.Timeout;
  private lastActive = performance.now();
  private done = false;
  private constructing = true;
  private datagramsIn = 0;
  private bytesIn = 0;
  private datagramsOut = 0;
  private bytesOut = 0;
  private dropped = 0;

  constructor(stream: Duplex, target: UdpTarget, opts: UdpRelayOptions, onDone: (r: UdpRelayResult) => void) {
    this.stream = stream;
    this.idleTimeoutMs = opts.idleTimeoutMs;
    this.onDone = onDone;
    this.parser = new CapsuleParser({
      onDatagram: (payload) => this.fromClient(payload),
      onError: (code) => this.finish(code),
      maxCapsuleBytes: opts.maxCapsuleBytes,
    });
    // One timer for the relay's whole life: activity only moves lastActive, and the timer, when it
    // fires, either ends the relay or sleeps for what is left of the idle time.
    this.timer = setTimeout(() => this.onTimer(), this.idleTimeoutMs).unref();

    this.socket = dgram.createSocket(target.family === 6 ? 'udp6' : 'udp4');
    this.socket.on('message', (msg) => this.fromTarget(msg));
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!SOFT_ERRORS.has(err.code ?? '')) this.finish('udp_error');
    });
    try {
      this.socket.connect(target.port, target.address, (err?: Error) => {
        if (err) this.finish('udp_error');
        else this.flushPending();
      });
    } catch {
      // A bad port throws at once.
      this.finish('udp_error');
    }

    // Before the 'data' listener: buffered stream data flows only from the next tick, after the head.
    if (opts.head !== undefined && opts.head.length > 0) this.parser.feed(opts.head);
    stream.on('data', (chunk: Buffer) => this.parser.feed(chunk));
    // A 'data' listener does not start a stream that was paused explicitly, and tunnel streams are
    // handed over paused (nothing is read before the tunnel is up): without this, no capsule is read.
    stream.resume();
    stream.on('end', () => this.finish(this.parser.atBoundary ? 'client_closed' : 'malformed_capsule'));
    stream.on('error', () => this.finish('client_closed'));
    stream.on('close', () => {
      this.finish('client_closed');
      // Graceful ends leave the linger timer armed until the client closes.
      clearTimeout(this.timer);
    });
    if (stream.destroyed) this.finish('client_closed');
    this.constructing = false;
  }

  /** Ends the tunnel (stream ended, socket closed) and reports 'closed', unless it already ended. */
  close(): void {
    this.finish('closed');
  }

  private fromClient(payload: Buffer): void {
    this.lastActive = performance.now();
    if (this.pending !== null) {
      if (this.pending.length < MAX_QUEUED) this.pending.push(payload);
      else this.dropped++;
      return;
    }
    this.send(payload);
  }

  private send(payload: Buffer): void {
    // libuv queues sends the kernel cannot take at once, without limit: cap that queue ourselves.
    if (this.socket.getSendQueueCount() >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    this.datagramsIn++;
    this.bytesIn += payload.length;
    this.socket.send(payload, this.onSent);
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.dropped++;
  };

  private flushPending(): void {
    const pending = this.pending;
    this.pending = null;
    if (this.done || pending === null) return;
    for (const payload of pending) this.send(payload);
  }

  private fromTarget(msg: Buffer): void {
    // Before the connect completes the socket is already bound but still hears from anyone.
    if (this.done || this.pending !== null) return;
    this.lastActive = performance.now();
    if (this.stream.writableNeedDrain || !this.stream.writable) {
      this.dropped++;
      return;
    }
    this.datagramsOut++;
    this.bytesOut += msg.length;
    this.stream.write(encodeDatagramCapsule(msg));
  }

  private onTimer(): void {
    if (this.done) return;
    const idle = performance.now() - this.lastActive;
    if (idle >= this.idleTimeoutMs) {
      this.finish('idle_timeout');
      return;
    }
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, Math.ceil(this.idleTimeoutMs - idle))).unref();
  }

  private finish(reason: UdpRelayReason): void {
    if (this.done) return;
    this.done = true;
    this.pending = null;
    this.parser.stop();
    clearTimeout(this.timer);
    this.socket.close();
    const stream = this.stream;
    if (isCapsuleError(reason) || reason === 'udp_error') {
      stream.destroy();
    } else if (!stream.destroyed) {
      stream.end();
      this.timer = setTimeout(() => stream.destroy(), LINGER_MS).unref();
    }
    const result: UdpRelayResult = {
      reason,
      datagramsIn: this.datagramsIn,
      bytesIn: this.bytesIn,
      datagramsOut: this.datagramsOut,
      bytesOut: this.bytesOut,
      dropped: this.dropped + this.parser.droppedDatagrams,
    };
    // The caller cannot know the relay before its constructor returns.
    if (this.constructing) process.nextTick(this.onDone, result);
    else this.onDone(result);
  }
}

function isCapsuleError(reason: UdpRelayReason): reason is CapsuleErrorCode {
  return reason === 'malformed_capsule' || reason === 'capsule_too_large';
}
