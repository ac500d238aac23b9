import { performance } from 'node:perf_hooks';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import { CONNECT_ERROR, NO_ERROR } from '../http2/frame.ts';
import { H2StreamDuplex } from '../http2/stream-duplex.ts';

/** Why a spliced tunnel ended. */
export type SpliceEnd = 'closed' | 'client_reset' | 'upstream_reset' | 'idle_timeout' | 'shutting_down';

export interface SpliceResult {
  end: SpliceEnd;
  /** Client -> upstream bytes. */
  bytesIn: number;
  /** Upstream -> client bytes. */
  bytesOut: number;
  /** Which side closed first. */
  closedFirst: 'client' | 'upstream' | null;
}

/**
 * Two byte streams joined both ways once a tunnel is accepted: a client side (a TCP socket after
 * 101/200, or an HTTP/2 stream) and an upstream side (a TCP socket or an HTTP/2 stream).
 *
 * - Backpressure is `pipe`'s: a side that cannot write pauses the other's reads, so a slow reader
 *   holds back a fast writer instead of the proxy buffering without bound.
 * - Half-close passes through: an end of input (FIN, END_STREAM) ends the other side's output only;
 *   sockets are switched to allowHalfOpen so Node does not close them on the peer's FIN.
 * - A reset passes through as a reset: a TCP RST or an error destroys the other side abruptly (an
 *   HTTP/2 stream gets RST_STREAM CONNECT_ERROR, RFC 9113 §8.5), so neither peer mistakes a broken
 *   tunnel for a clean end.
 * - Idle: no byte either way for `idleMs` closes both (one sweeper deadline, no timer per tunnel).
 */
export class Splice implements Expirable {
  private readonly down: Duplex;
  private readonly up: Duplex;
  private readonly idleMs: number;
  private readonly onDone: (r: SpliceResult) => void;
  deadline: number;
  private lastActive: number;
  bytesIn = 0;
  bytesOut = 0;
  private downClosed = false;
  private upClosed = false;
  private closedFirst: 'client' | 'upstream' | null = null;
  private end: SpliceEnd = 'closed';
  private finished = false;

  /**
   * `halfClose`: an end of input ends only the other side's output (CONNECT, raw TCP). False for
   * WebSockets, whose protocol has its own closing handshake: once either side's input ends, both
   * sides are closed whole (an HTTP/2 stream with END_STREAM, then RST_STREAM NO_ERROR if the peer
   * is still open: browsers do not end their side of an RFC 8441 stream after the handshake).
   */
  constructor(down: Duplex, up: Duplex, idleMs: number, onDone: (r: SpliceResult) => void, halfClose = true) {
    this.down = down;
    this.up = up;
    this.idleMs = idleMs;
    this.onDone = onDone;
    this.lastActive = performance.now();
    this.deadline = this.lastActive + idleMs;
    for (const s of [down, up]) if (s instanceof Socket) s.allowHalfOpen = true;
    down.on('data', (c: Buffer) => {
      this.bytesIn += c.length;
      this.lastActive = performance.now();
    });
    up.on('data', (c: Buffer) => {
      this.bytesOut += c.length;
      this.lastActive = performance.now();
    });
    down.on('error', noop);
    up.on('error', noop);
    down.on('close', () => this.closed(true));
    up.on('close', () => this.closed(false));
    sweeper.add(this);
    if (!halfClose) {
      for (const side of [down, up]) {
        if (side instanceof H2StreamDuplex) side.closeOnEnd = true;
        // Its input ended: its own output ends too (the other side's is ended by pipe).
        side.once('end', () => {
          if (!side.writableEnded && !side.destroyed) side.end();
        });
      }
    }
    if (down.destroyed || up.destroyed) {
      // One side went away while the tunnel was being set up: its 'close' may already have fired.
      queueMicrotask(() => {
        if (down.destroyed) this.closed(true);
        if (up.destroyed) this.closed(false);
      });
    }
    down.pipe(up);
    up.pipe(down);
  }

  /** Cut both sides (shutdown, or the owner gave up). */
  destroy(end: SpliceEnd): void {
    if (this.closedFirst === null) this.end = end;
    reset(this.down);
    reset(this.up);
  }

  expire(now: number): void {
    const idleAt = this.lastActive + this.idleMs;
    if (now < idleAt) {
      this.deadline = idleAt;
      return;
    }
    this.destroy('idle_timeout');
  }

  private closed(isDown: boolean): void {
    if (isDown ? this.downClosed : this.upClosed) return;
    if (isDown) this.downClosed = true;
    else this.upClosed = true;
    const side = isDown ? this.down : this.up;
    const other = isDown ? this.up : this.down;
    if (this.closedFirst === null) {
      this.closedFirst = isDown ? 'client' : 'upstream';
      if (abrupt(side) && this.end === 'closed') this.end = isDown ? 'client_reset' : 'upstream_reset';
    }
    if (!(isDown ? this.upClosed : this.downClosed)) {
      // A clean close already ended the other side's output through pipe; it closes once its own
      // input ends. An abrupt one is passed on as abrupt.
      if (abrupt(side)) reset(other);
      else {
        if (!other.writableEnded) other.end();
        // Its pipe into the closed side is gone, which paused it: let it read to its own end
        // (nothing is left to deliver it to), or it would never close.
        other.resume();
      }
      return;
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    sweeper.delete(this);
    this.onDone({ end: this.end, bytesIn: this.bytesIn, bytesOut: this.bytesOut, closedFirst: this.closedFirst });
  }
}

/**
 * Closed without both directions ending cleanly: a reset, an error, or an RST_STREAM with a code. A
 * stream reset with NO_ERROR before its END_STREAM counts as a reset too: its input did not end (the
 * peer said "stop", not "done"), and waiting for the other side to finish would hold the tunnel open.
 */
function abrupt(s: Duplex): boolean {
  if (isH2Stream(s)) return s.rstCode !== undefined && (s.rstCode !== NO_ERROR || !s.readableEnded);
  return s.errored !== null || !s.readableEnded;
}

function reset(s: Duplex): void {
  if (s.destroyed) return;
  if (isH2Stream(s)) {
    s.close(CONNECT_ERROR);
    return;
  }
  if (s instanceof Socket && !s.connecting) {
    s.resetAndDestroy();
    return;
  }
  s.destroy();
}

/** An HTTP/2 stream as a Duplex (H2StreamDuplex): it has a reset code. */
function isH2Stream(s: Duplex): s is Duplex & { rstCode: number | undefined; close(code: number): void } {
  return 'rstCode' in s;
}

function noop(): void {}
