import { performance } from 'node:perf_hooks';
import type { Buffer } from 'node:buffer';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import { StreamSide } from './stream-side.ts';
import type { SideEvents, TunnelSide } from './tunnel-side.ts';

/** Why a spliced tunnel ended. */
export type SpliceEnd = 'closed' | 'client_reset' | 'upstream_reset' | 'idle_timeout' | 'shutting_down';

/** Told once, when both sides are gone. */
export interface SpliceOwner {
  onSpliceDone(r: SpliceResult): void;
}

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
 * Two tunnel sides joined both ways once a tunnel is accepted: a client side (a TCP socket after
 * 101/200, or an HTTP/2 stream) and an upstream side (a TCP socket or an HTTP/2 stream). The splice
 * is the one listener of both sides (TunnelSide, not Node streams and `pipe`: an idle tunnel is two
 * sides and this object).
 *
 * - Backpressure: a write that the other side cannot take now pauses this side's reads until that
 *   side says it is writable again, so a slow reader holds back a fast writer instead of the proxy
 *   buffering without bound.
 * - Half-close passes through: an end of input (FIN, END_STREAM) ends the other side's output only.
 * - A reset passes through as a reset: a TCP RST or an error resets the other side (an HTTP/2 stream
 *   gets RST_STREAM CONNECT_ERROR, RFC 9113 §8.5), so neither peer mistakes a broken tunnel for a
 *   clean end.
 * - Idle: no byte either way for `idleMs` closes both (one sweeper deadline, no timer per tunnel).
 */
export class Splice implements Expirable, SideEvents {
  private readonly down: TunnelSide;
  private readonly up: TunnelSide;
  private readonly idleMs: number;
  private readonly halfClose: boolean;
  private readonly owner: SpliceOwner;
  deadline: number;
  sweepSlot = -1;
  /** Whole ms (rounded up, never early): a small integer is stored in the object, a fraction would be boxed. */
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
  /**
   * `gracefulIdle`: an idle (or shut down) tunnel is closed (FIN on TCP) rather than reset: raw TCP
   * tunnels, whose peers read a reset as a failure.
   */
  private readonly gracefulIdle: boolean;

  constructor(
    down: TunnelSide,
    up: TunnelSide,
    idleMs: number,
    owner: SpliceOwner,
    halfClose = true,
    gracefulIdle = false,
  ) {
    this.gracefulIdle = gracefulIdle;
    this.down = down;
    this.up = up;
    this.idleMs = idleMs;
    this.halfClose = halfClose;
    this.owner = owner;
    this.lastActive = Math.ceil(performance.now());
    this.deadline = Math.ceil(this.lastActive + idleMs);
    if (!halfClose) {
      if (down instanceof StreamSide) down.closeWhole = true;
      if (up instanceof StreamSide) up.closeWhole = true;
    }
    sweeper.add(this);
    // Upstream first: bytes the client sent early are written to it while the client side attaches.
    up.attach(this);
    down.attach(this);
    if (down.gone || up.gone) {
      // A side went away while the tunnel was being set up: it reports no more.
      queueMicrotask(() => {
        if (down.gone) this.onSideClosed(down, true);
        if (up.gone) this.onSideClosed(up, true);
      });
    }
  }

  /** Cut both sides (shutdown, or the owner gave up): reset, or closed with `gracefulIdle`. */
  destroy(end: SpliceEnd): void {
    if (this.closedFirst === null) this.end = end;
    if (this.gracefulIdle) {
      this.down.close();
      this.up.close();
      return;
    }
    this.down.reset();
    this.up.reset();
  }

  expire(now: number): void {
    const idleAt = this.lastActive + this.idleMs;
    if (now < idleAt) {
      this.deadline = idleAt;
      return;
    }
    this.destroy('idle_timeout');
  }

  // --- SideEvents ---

  onSideData(side: TunnelSide, buf: Buffer, start: number, end: number): void {
    const n = end - start;
    this.lastActive = Math.ceil(performance.now());
    const isDown = side === this.down;
    if (isDown) this.bytesIn += n;
    else this.bytesOut += n;
    const other = isDown ? this.up : this.down;
    // The other side is gone: what is still read from this one has nowhere to go.
    if (other.gone || (isDown ? this.upClosed : this.downClosed)) return;
    if (!other.write(buf, start, end)) side.pause();
  }

  onSideWritable(side: TunnelSide): void {
    (side === this.down ? this.up : this.down).resume();
  }

  onSideEnd(side: TunnelSide): void {
    const other = side === this.down ? this.up : this.down;
    if (!other.gone) other.end();
    // A WebSocket is over once either input ended: this side's output ends too.
    if (!this.halfClose) side.end();
  }

  onSideClosed(side: TunnelSide, abrupt: boolean): void {
    const isDown = side === this.down;
    if (isDown ? this.downClosed : this.upClosed) return;
    if (isDown) this.downClosed = true;
    else this.upClosed = true;
    const other = isDown ? this.up : this.down;
    if (this.closedFirst === null) {
      this.closedFirst = isDown ? 'client' : 'upstream';
      if (abrupt && this.end === 'closed') this.end = isDown ? 'client_reset' : 'upstream_reset';
    }
    if (!(isDown ? this.upClosed : this.downClosed)) {
      if (abrupt) other.reset();
      else {
        // A clean close ended the other side's output already (onSideEnd); it closes once its own
        // input ends: let it read to that end (what it reads is dropped).
        other.end();
        other.resume();
      }
      if (!other.gone) return;
      // Its reset (or end) closed it at once; it has reported, or reports now.
      if (!(isDown ? this.upClosed : this.downClosed)) return;
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    sweeper.delete(this);
    this.owner.onSpliceDone({
      end: this.end,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      closedFirst: this.closedFirst,
    });
  }
}
