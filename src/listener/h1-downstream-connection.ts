import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { unmapIPv4 } from '../core/cidr.ts';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import {
  type DrainSink,
  detachDirect,
  isLent,
  pauseDirect,
  type ReadSink,
  readDirect,
  resumeDirect,
  writeDirectTo,
} from '../core/direct-io.ts';
import { type Expirable, sweeper, deadlineIn } from '../core/sweeper.ts';
import type { WriteBatch } from '../core/write-batch.ts';
import { errorResponse, fieldLines } from '../forward/error-response.ts';
import { Exchange } from '../forward/exchange.ts';
import { BARE_LF, findHeadEnd, NEED_MORE, resumeFrom } from '../http1/head-end.ts';
import { ownHeadBytes, parseRequestHead, type RequestHead } from '../http1/request-head.ts';
import { forwardingFields } from '../forward/forwarding-cache.ts';
import { pathOf } from '../router/router.ts';
import { H1TunnelDownstream } from '../tunnel/tunnel-downstream.ts';
import { planH1Tunnel, startTunnel } from '../tunnel/tunnel-entry.ts';
import type { Downstream } from '../forward/downstream.ts';
import { giveBackBatch, scheduleFlush, takeBatch } from '../core/flush-queue.ts';
import type { ListenerContext } from './listener-context.ts';
import type { MemberList } from '../core/member-list.ts';
import { type ClientOrigin, socketOrigin } from '../proxy-protocol/client-origin.ts';

const HEAD = 0; // waiting for / reading a request head
const EXCHANGE = 1; // a request is being forwarded
const CLOSING = 2; // the last response is written; waiting for the socket to go
const TUNNEL = 3; // the socket was handed to a tunnel (Upgrade, CONNECT); the session only counts it

/** Bytes of pipelined requests held while one is in flight, before reading pauses. */
const PIPELINE_BUFFER = 64 * 1024;

/**
 * One downstream HTTP/1.1 connection: reads request heads, hands each request to an Exchange, and
 * serves pipelined requests strictly one after another so responses leave in request order.
 * Bytes that arrive while an exchange is running belong to its body until the body ends; anything
 * after that is the next request and waits in `buf`.
 */
export class H1DownstreamConnection implements Expirable, Downstream, ReadSink, DrainSink {
  readonly socket: Socket;
  readonly h2 = false;
  readonly ctx: ListenerContext;
  readonly peer: string;
  /** From a PROXY header, or the socket's ends once asked for. */
  private givenOrigin: ClientOrigin | undefined;
  readonly trusted: boolean;
  private state = HEAD;
  /** Unconsumed input: buf[bufStart, bufEnd). */
  private buf: Buffer | null = null;
  private bufStart = 0;
  private bufEnd = 0;
  private scanned = 0;
  exchange: Exchange | null = null;
  deadline = 0;
  sweepSlot = -1;
  private headStarted = false;
  private requests = 0;
  /** Classified by the preface sniff of a `protocol: auto` listener. */
  private sniffed = false;
  private readPausedForBody = false;
  private readPausedForPipeline = false;
  /** The client half-closed: finish the current response, then close. */
  private clientEnded = false;
  /** Output of the current event, written once the event is handled (see queue); null when nothing is queued. */
  private out: WriteBatch | null = null;
  private readonly sessions: MemberList<H1DownstreamConnection>;
  memberSlot = -1;
  /** True while processInput runs, so an exchange finishing synchronously does not re-enter it. */
  private processing = false;
  /**
   * Plain TCP: reads arrive through `onDirectRead` rather than 'data' events, and writes go straight
   * to the handle, draining through `onDirectDrain` (see core/direct-io.ts).
   */
  private readonly direct: boolean;
  /** The chunk being handled is lent (a view of the shared read buffer): copy what outlives the call. */
  private lent = false;

  // Per-connection memos: a client usually sends the same Host on every request.
  /** The last forwarding block and what it was built for (see forwarding-cache.ts). */
  fwdHost: string | null = null;
  fwdVersion = '';
  fwdFields = '';

  /** `sessions` is the listener's set of open sessions; the session leaves it when its socket closes. */
  /** `origin`: the client as a PROXY header named it (default: the socket's ends). */
  constructor(
    socket: Socket,
    ctx: ListenerContext,
    sessions: MemberList<H1DownstreamConnection>,
    origin?: ClientOrigin,
  ) {
    this.socket = socket;
    this.ctx = ctx;
    this.sessions = sessions;
    sessions.add(this);
    this.givenOrigin = origin;
    this.peer = origin?.client ?? unmapIPv4(socket.remoteAddress ?? '');
    this.trusted = ctx.trusted.has(this.peer);
    socket.setNoDelay(true);
    ctx.stats.connectionsOpen++;
    ctx.stats.connectionsTotal++;
    this.deadline = deadlineIn(ctx.limits.idleTimeoutMs);
    sweeper.add(this);
    // Shared handlers find the session through the socket: no closures per connection.
    (socket as SessionSocket)[kSession] = this;
    this.direct = ctx.directIo && readDirect(socket, this) && writeDirectTo(socket, this);
    if (!this.direct) {
      socket.on('data', onSocketData);
      socket.on('drain', onSocketDrain);
    }
    socket.on('end', onSocketEnd);
    socket.on('error', ignore);
    socket.on('close', onSocketClose);
  }

  onDirectRead(chunk: Buffer, length: number): void {
    this.lent = true;
    try {
      this.onData(chunk, length);
    } finally {
      this.lent = false;
    }
    // Input kept for later (a partial head, pipelined requests) must not point into the shared buffer.
    const buf = this.buf;
    if (buf !== null && isLent(buf)) {
      this.buf = this.bufStart < this.bufEnd ? Buffer.from(buf.subarray(this.bufStart, this.bufEnd)) : null;
      this.bufEnd = this.buf === null ? 0 : this.buf.length;
      this.scanned = Math.max(0, this.scanned - this.bufStart);
      this.bufStart = 0;
    }
  }

  onDirectDrain(): void {
    this.exchange?.onDownstreamDrain();
  }

  /**
   * Start reading after a protocol sniff: bytes the socket buffered past `first` are handed over in
   * order, then reading resumes.
   */
  startAfterSniff(first: Buffer): void {
    this.sniffed = true;
    this.startWith(first);
  }

  /**
   * Starts with `first` (owned), bytes already read by someone else (the sniffer, a PROXY header
   * reader), and reads on, whether the socket was read directly or as a (paused) stream.
   */
  startWith(first: Buffer): void {
    this.onData(first, first.length);
    if (!this.direct) {
      this.socket.resume();
      return;
    }
    // Stop if the socket went to a tunnel: what it buffered is the tunnel's.
    while (this.state !== TUNNEL && !this.socket.destroyed) {
      const c = this.socket.read() as Buffer | null;
      if (c === null) break;
      this.onData(c, c.length);
    }
    if (this.state !== TUNNEL) this.maybeResume();
  }

  /** Input bytes `chunk[0, end)`. */
  onData(chunk: Buffer, end: number): void {
    this.ctx.stats.bytesIn += end;
    const ex = this.exchange;
    if (ex !== null && !ex.requestDone) {
      const used = ex.onRequestBody(chunk, 0, end, this.lent);
      if (used < 0 || used === end) return;
      this.stash(chunk, used, end);
      return;
    }
    this.stash(chunk, 0, end);
    if (this.state === HEAD) this.processInput();
  }

  /** Append `chunk[start, end)` to the input; pause reading if a pipelining client runs too far ahead. */
  private stash(chunk: Buffer, start: number, end: number): void {
    if (this.buf === null || this.bufStart === this.bufEnd) {
      this.buf = chunk;
      this.bufStart = start;
      this.bufEnd = end;
      this.scanned = start;
    } else {
      const rest = this.buf.subarray(this.bufStart, this.bufEnd);
      this.scanned -= this.bufStart;
      this.buf = Buffer.concat([rest, chunk.subarray(start, end)]);
      this.bufStart = 0;
      this.bufEnd = this.buf.length;
    }
    if (this.state !== HEAD && this.bufEnd - this.bufStart > PIPELINE_BUFFER && !this.readPausedForPipeline) {
      this.readPausedForPipeline = true;
      this.pauseReading();
    }
  }

  /** Parse and start as many requests as the buffer holds (one at a time: each waits for the previous). */
  private processInput(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      this.parseLoop();
    } finally {
      this.processing = false;
    }
    // Drop a fully consumed buffer: an idle keep-alive connection should hold no input bytes.
    if (this.buf !== null && this.bufStart >= this.bufEnd) {
      this.buf = null;
      this.bufStart = 0;
      this.bufEnd = 0;
      this.scanned = 0;
    }
    // The client half-closed and what is left is not a whole request: none will follow.
    if (this.clientEnded && this.state === HEAD) this.close();
  }

  private parseLoop(): void {
    while (this.state === HEAD && this.buf !== null && this.bufStart < this.bufEnd) {
      const buf = this.buf;
      const bufEnd = this.bufEnd;
      let start = this.bufStart;
      // RFC 9112 §2.2: ignore empty lines before a request line.
      while (start + 1 < bufEnd && buf[start] === 13 && buf[start + 1] === 10) start += 2;
      this.bufStart = start;
      if (start === bufEnd) return;
      const justStarted = !this.headStarted;
      this.headStarted = true;
      const end = findHeadEnd(buf, start, resumeFrom(start, this.scanned), bufEnd);
      if (end === NEED_MORE) {
        // header_timeout runs from the head's first bytes; a head that is complete in its first read
        // (nearly all of them) never needs the deadline, so the clock is read only here.
        if (justStarted) this.deadline = deadlineIn(this.ctx.limits.headerTimeoutMs);
        this.scanned = bufEnd;
        if (bufEnd - start > this.ctx.limits.maxHeaderBytes) this.reject('header_too_large');
        return;
      }
      const head =
        end === BARE_LF
          ? 'bare_lf'
          : end - start > this.ctx.limits.maxHeaderBytes
            ? 'header_too_large'
            : // Parsed in place even from a lent read: nearly always the upstream head is built from
              // it within this read; whoever keeps it longer gives it its own bytes (ownHeadBytes).
              parseRequestHead(buf, start, end, this.ctx.limits);
      if (typeof head === 'string') {
        this.reject(head);
        return;
      }
      this.bufStart = end;
      this.scanned = end;
      this.headStarted = false;
      this.deadline = 0;
      this.requests++;
      this.ctx.stats.requests++;
      const max = this.ctx.limits.maxRequestsPerConnection;
      const last = !head.keepAlive || this.clientEnded || this.ctx.draining || (max > 0 && this.requests >= max);
      const path = pathOf(head.target);
      if (head.upgrade !== null || head.method === 'CONNECT') {
        const plan = planH1Tunnel(this.ctx, head, path);
        if (typeof plan === 'string') {
          this.reject(plan, false);
          return;
        }
        if (plan !== null) {
          // Same rule as Exchange.begin: only a head parsed from the shared read buffer needs its own bytes
          // (one parsed from input kept across reads already owns them).
          if (isLent(head.buf)) ownHeadBytes(head);
          startTunnel(this.takeOver(end), plan);
          return;
        }
      }
      const route = this.ctx.router.route(head, path);
      this.state = EXCHANGE;
      const ex = new Exchange(this, head, route, path, last);
      this.exchange = ex;
      // Body bytes already received ride along; the exchange takes what belongs to it.
      const used = ex.begin(buf, end, bufEnd, this.lent);
      if (used > 0 && this.buf === buf) this.bufStart += used;
    }
  }

  /** X-Forwarded-*, Forwarded and Via lines for a request on this connection (memoised: forwarding-cache.ts). */
  /** The client connection's two ends, as a PROXY header to an upstream names them (made on first use). */
  origin(): ClientOrigin {
    if (this.givenOrigin === undefined) this.givenOrigin = socketOrigin(this.socket);
    return this.givenOrigin;
  }

  forwardingFields(head: RequestHead): string {
    return forwardingFields(this, head, head.minor === 1 ? '1.1' : '1.0');
  }

  /** Called by the exchange when its response is complete (or it failed after answering). */
  onExchangeDone(keepAlive: boolean): void {
    this.exchange = null;
    if (this.readPausedForBody) {
      this.readPausedForBody = false;
      this.maybeResume();
    }
    if (!keepAlive || (this.clientEnded && this.bufferedBytes() === 0)) {
      this.close();
      return;
    }
    this.state = HEAD;
    this.deadline = deadlineIn(this.ctx.limits.idleTimeoutMs);
    if (this.readPausedForPipeline) {
      this.readPausedForPipeline = false;
      this.maybeResume();
    }
    if (this.bufferedBytes() > 0) this.processInput();
  }

  /** Backpressure from the upstream while relaying a request body. */
  pauseForBody(): void {
    if (!this.readPausedForBody) {
      this.readPausedForBody = true;
      this.pauseReading();
    }
  }

  resumeForBody(): void {
    if (this.readPausedForBody) {
      this.readPausedForBody = false;
      this.maybeResume();
    }
  }

  /** Answer with a proxy error when nothing of a response was sent yet. */
  sendError(code: ErrorCode, close: boolean, headOnly: boolean, extra?: readonly string[]): void {
    const b =
      extra === undefined
        ? errorResponse(code, close, headOnly)
        : errorResponse(code, close, headOnly, fieldLines(extra), false);
    this.ctx.stats.bytesOut += b.length;
    this.queue(b);
  }

  /**
   * Queue bytes for the client. Everything queued while handling one I/O event leaves in one write,
   * flushed from a microtask, which Node runs right after the event's callback and before any other
   * I/O: order is kept and a response head and its body share a syscall.
   */
  queue(data: Buffer | string): void {
    let out = this.out;
    if (out === null) {
      out = this.out = takeBatch();
      scheduleFlush(this);
    }
    out.add(data);
  }

  flush(): void {
    const out = this.out;
    if (out === null) return;
    // The batch goes back to the spares: an idle connection holds none.
    this.out = null;
    const ok = out.flush(this.socket, this.direct); // on a destroyed socket this drops the data
    giveBackBatch(out);
    if (!ok && !this.socket.destroyed) this.exchange?.onDownstreamBlocked();
  }

  expire(): void {
    if (this.state === HEAD && this.headStarted) {
      this.reject('header_timeout');
    } else {
      this.socket.destroy();
    }
  }

  /**
   * Shutdown, reload, upgrade: busy connections close after their current response (ctx.draining);
   * idle ones after drain_idle_grace unless a request arrives first, which is answered and closes.
   */
  drain(): void {
    if (this.state !== HEAD || this.headStarted) return;
    const grace = this.ctx.limits.drainIdleGraceMs;
    if (grace <= 0) {
      this.socket.destroy();
      return;
    }
    const by = deadlineIn(grace);
    if (this.deadline === 0 || by < this.deadline) this.deadline = by;
    sweeper.add(this);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Hand the socket to a tunnel: the session stops reading and parsing, and keeps only its close
   * accounting. Bytes after the request head (early tunnel data) go to the tunnel.
   */
  private takeOver(end: number): H1TunnelDownstream {
    const socket = this.socket;
    // Reads go to the socket's Readable side from now on, for the tunnel to pipe; the handle keeps
    // reading until that buffer is full, as a plain paused socket does.
    if (this.direct) {
      detachDirect(socket);
      resumeDirect(socket);
    } else {
      socket.off('data', onSocketData);
      socket.off('drain', onSocketDrain);
    }
    socket.off('end', onSocketEnd);
    // Paused at once: a 'data' event with no listener would lose bytes until the tunnel is up.
    socket.pause();
    this.state = TUNNEL;
    this.deadline = 0;
    sweeper.delete(this);
    const buf = this.buf;
    const rest =
      buf === null ? null : this.lent ? Buffer.from(buf.subarray(end, this.bufEnd)) : buf.subarray(end, this.bufEnd);
    this.buf = null;
    return new H1TunnelDownstream(this, rest);
  }

  private reject(code: ErrorCode, counted = true): void {
    if (this.sniffed && this.requests === 0 && (code === 'invalid_request_line' || code === 'unsupported_version')) {
      // On a port that speaks both protocols, a first line that is not HTTP/1.x may be an HTTP/2
      // client with a broken preface, which must see the connection close (RFC 9113 §3.4), not
      // an HTTP/1.1 answer it would read as frames. The code is still logged and counted.
      this.ctx.stats.recordError(code);
      this.ctx.accessLog?.event({ listener: this.ctx.name, client: this.peer, error: code });
      this.socket.destroy();
      return;
    }
    if (counted) this.ctx.stats.requests++;
    this.ctx.stats.recordError(code);
    this.ctx.accessLog?.event({
      listener: this.ctx.name,
      client: this.peer,
      status: ERRORS[code].status,
      error: code,
    });
    this.sendError(code, true, false);
    this.close();
  }

  private close(): void {
    this.flush();
    this.state = CLOSING;
    this.buf = null;
    // Give the client a moment to read the response and close first (it then holds the TIME_WAIT).
    this.deadline = deadlineIn(2000);
    this.socket.end();
  }

  private bufferedBytes(): number {
    return this.buf === null ? 0 : this.bufEnd - this.bufStart;
  }

  private pauseReading(): void {
    if (this.direct) pauseDirect(this.socket);
    else this.socket.pause();
  }

  private maybeResume(): void {
    if (this.readPausedForBody || this.readPausedForPipeline || this.socket.destroyed) return;
    if (this.direct) resumeDirect(this.socket);
    else this.socket.resume();
  }

  onEnd(): void {
    this.clientEnded = true;
    if (this.exchange === null) {
      // Between requests: an incomplete head is abandoned, a complete one was already dispatched.
      if (this.state !== CLOSING) this.close();
      return;
    }
    this.exchange.onDownstreamEnd(this.bufferedBytes() > 0);
  }

  onClose(): void {
    sweeper.delete(this);
    this.sessions.delete(this);
    this.ctx.stats.connectionsOpen--;
    this.state = CLOSING;
    const ex = this.exchange;
    this.exchange = null;
    ex?.onDownstreamClose();
  }
}

const kSession = Symbol('muxgate.session');
type SessionSocket = Socket & { [kSession]: H1DownstreamConnection };

function onSocketData(this: SessionSocket, chunk: Buffer): void {
  this[kSession].onData(chunk, chunk.length);
}
function onSocketEnd(this: SessionSocket): void {
  this[kSession].onEnd();
}
function onSocketDrain(this: SessionSocket): void {
  this[kSession].exchange?.onDownstreamDrain();
}
function onSocketClose(this: SessionSocket): void {
  this[kSession].onClose();
}
function ignore(): void {}
