import { performance } from 'node:perf_hooks';
import http2, { type ServerHttp2Session } from 'node:http2';
import { unmapIPv4 } from '../core/cidr.ts';
import type { ListenerContext } from './listener-context.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

export interface ResetGuard {
  maxResets: number;
  intervalMs: number;
}

/**
 * One downstream HTTP/2 connection: who the peer is (decided once, like an HTTP/1.1 session) and the
 * rapid-reset guard. A client that resets (or abandons) more than `maxResets` streams within
 * `intervalMs` is flooding (CVE-2023-44487: every open+reset costs the server a request while the
 * client pays nothing): the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed.
 */
export class H2Connection {
  readonly session: ServerHttp2Session;
  readonly ctx: ListenerContext;
  readonly peer: string;
  readonly trusted: boolean;
  private readonly guard: ResetGuard;
  private resets = 0;
  private windowStart = 0;
  calmedDown = false;
  /** Streams not yet closed. */
  openStreams = 0;

  constructor(session: ServerHttp2Session, ctx: ListenerContext, guard: ResetGuard) {
    this.session = session;
    this.ctx = ctx;
    this.guard = guard;
    this.peer = unmapIPv4(session.socket?.remoteAddress ?? '');
    this.trusted = ctx.trusted.has(this.peer);
  }

  onClientReset(): void {
    if (this.calmedDown) return;
    const now = performance.now();
    if (now - this.windowStart > this.guard.intervalMs) {
      this.windowStart = now;
      this.resets = 0;
    }
    if (++this.resets <= this.guard.maxResets) return;
    this.calmedDown = true;
    this.ctx.stats.recordError('rapid_reset');
    this.ctx.log.warn(
      { listener: this.ctx.name, client: this.peer, resets: this.resets, interval_ms: this.guard.intervalMs },
      'HTTP/2 stream reset flood: GOAWAY ENHANCE_YOUR_CALM',
    );
    const session = this.session;
    if (session.destroyed) return;
    // GOAWAY first, then close once it is flushed: destroying at once could drop the frame.
    session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    setImmediate(() => {
      if (!session.destroyed) session.destroy();
    });
  }
}
