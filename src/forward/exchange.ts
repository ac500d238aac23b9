import { clockNow } from '../core/clock.ts';
import { deadlineIn } from '../core/sweeper.ts';
import { Buffer } from 'node:buffer';
import type { Endpoint } from '../cluster/endpoint.ts';
import { ERRORS, type ErrorCode, retryWhen } from '../core/errors.ts';
import { isLent } from '../core/direct-io.ts';
import { WriteBatch } from '../core/write-batch.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import { forgetHeadBytes, ownHeadBytes, type RequestHead } from '../http1/request-head.ts';
import type { Downstream } from './downstream.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';
import type { ResponseTap } from './response-tap.ts';
import { CacheUse } from '../cache/cache-use.ts';
import { BackgroundDownstream } from './background-downstream.ts';
import { LocalAnswer } from './local-answer.ts';
import { IdempotentRun } from '../admission/idempotent-run.ts';
import type { RouteIdempotency } from '../admission/route-idempotency.ts';
import type { RouteRateLimit } from '../admission/route-rate-limit.ts';
import type { StoredResponse } from '../idempotency/idempotency-store.ts';
import { fingerprint } from '../idempotency/fingerprint.ts';
import type { RateDecision } from '../limits/rate-limit-store.ts';
import type { H2UpstreamConnection } from '../pool/h2-upstream-connection.ts';
import type { PoolWaiter } from '../pool/pool-waiter.ts';
import type { H1UpstreamConnection, UpstreamUser } from '../pool/h1-upstream-connection.ts';
import type { Route } from '../router/route.ts';
import type { RetryOn } from '../config/retry.ts';
import { errorResponse, fieldLines } from './error-response.ts';
import { ExchangeRetries } from './exchange-retries.ts';
import { H2Leg } from './h2-leg.ts';
import { ResponseRelay } from './response-relay.ts';
import { buildUpstreamHead } from './upstream-head.ts';

const upstreamBatch = new WriteBatch();

/** Body bytes held while waiting for an upstream connection, before the client is paused. */
const PENDING_BODY_LIMIT = 64 * 1024;
/** begin() of a request with no bytes after its head (a background revalidation). */
const NO_BYTES = Buffer.alloc(0);

/** Methods that may be sent twice (RFC 9110 §9.2.2): only these are retried after a keep-alive race. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Refusals of a well-formed request: the connection stays usable once the request is read whole. */
const IN_SYNC: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'no_route',
  'rate_limited',
  'idempotency_in_flight',
  'idempotency_key_reused',
]);

/** Failures of the endpoint itself (not of the client, the pool's queue or the port budget): they count towards ejecting it. */
const GATEWAY_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'upstream_reset',
  'upstream_timeout',
  'upstream_protocol_error',
]);

/**
 * One request/response exchange: picks an endpoint, waits for a pooled connection, streams the
 * request head and body upstream, and lets the ResponseRelay stream the response back. It is the
 * pool's waiter while queued and the connection's user while leased. Every path ends in exactly one
 * of `complete`, `fail` (nothing sent downstream yet: answer with an error) or `abort` (a response
 * is half-sent: the only honest signal left is to drop the downstream connection).
 */
export class Exchange implements PoolWaiter, UpstreamUser {
  // PoolWaiter links (owned by the pool's queue).
  queuedAt = 0;
  queuePrev: PoolWaiter | null = null;
  queueNext: PoolWaiter | null = null;
  queued = false;
  queueOwner: object | null = null;

  /** The client side; replaced by a sink when the client leaves a cache fill others wait on. */
  session: Downstream;
  readonly head: RequestHead;
  readonly route: Route | null;
  readonly path: string;
  /** Close the downstream connection after this exchange. */
  closeDownstream: boolean;
  endpoint: Endpoint | null = null;
  conn: H1UpstreamConnection | null = null;
  /** The upstream side when the endpoint speaks HTTP/2 (then `conn` stays null). */
  leg: H2Leg | null = null;
  /** An HTTP/2 client sent "te: trailers": ask an HTTP/2 upstream for trailers too. */
  teTrailers = false;
  private upstreamHead: Buffer | null = null;
  private hashKey: string | undefined = undefined;

  // Request body state.
  requestDone = true;
  private reqRemaining = 0;
  private reqScanner: ChunkedScanner | null = null;
  private pendingBody: Buffer[] | null = null;
  private pendingBytes = 0;

  private relay: ResponseRelay;
  private done = false;
  private connectAttempts = 0;
  private retried = false;
  private countsActive = false;
  upstreamPaused = false;

  /** The route's `retry:` at work for this request (null: the route has none; see tryRetry). */
  private retries: ExchangeRetries | null = null;
  /** The request carries an Idempotency-Key on a route with idempotency on: retried like an idempotent method. */
  keyed = false;
  /**
   * Keeps a copy of the response: the first request with an Idempotency-Key (its lock, and its response
   * for the store), or a cache miss filling its zone.
   */
  tap: ResponseTap | null = null;
  /** The route's cache at work for this request (null: the route has none, or not looked yet). */
  cache: CacheUse | null = null;
  /** Field lines added to the upstream request head (a cache revalidation's conditionals). */
  extraUpstreamFields = '';
  /** Admission waits for the whole request body (an Idempotency-Key's fingerprint covers it). */
  private onBodyDone: (() => void) | null = null;

  // Accounting for the access log and stats.
  private readonly startedAt = clockNow();
  private poolStartedAt = 0;
  private poolWaitMs = 0;
  /** True while begin() asks the pool: a connection handed over then comes synchronously. */
  private beginning = false;
  bytesIn: number;
  bytesOut = 0;
  status = 0;
  error: ErrorCode | null = null;

  constructor(session: Downstream, head: RequestHead, route: Route | null, path: string, last: boolean) {
    this.session = session;
    this.head = head;
    this.route = route;
    this.path = path;
    this.closeDownstream = last;
    this.bytesIn = head.headBytes;
    this.relay = new ResponseRelay(this);
  }

  /**
   * Start forwarding; `buf[start, end)` are bytes received after the head. Returns how many were body.
   * `lent`: `buf` (and the head, when parsed from it) is valid only during the call (see onRequestBody).
   */
  begin(buf: Buffer, start: number, end: number, lent = false): number {
    const head = this.head;
    if (head.chunked) {
      this.requestDone = false;
      this.reqScanner = new ChunkedScanner(this.session.ctx.limits.maxHeaderBytes);
    } else if (head.contentLength > 0) {
      this.requestDone = false;
      this.reqRemaining = head.contentLength;
    }
    const route = this.route;
    if (route === null) {
      this.fail('no_route');
      return 0;
    }
    const policy = route.retry;
    if (policy !== null)
      this.retries = new ExchangeRetries(policy, route.cluster, this.requestDone, head.contentLength);
    let used = 0;
    if (!this.requestDone && end > start) {
      // Held as views for now even when lent: if the pool has a connection at hand, the head and
      // these bytes leave in one write from the shared scratch (one copy, no allocation).
      used = this.onRequestBody(buf, start, end, false);
      if (used < 0) return 0;
    }
    this.beginning = true;
    if (route.rateLimit !== null || route.idempotency !== null) this.admit(route.rateLimit, route.idempotency);
    else this.dispatch();
    this.beginning = false;
    if (lent) {
      // What is held must outlive this call. The head was parsed in place from the lent read (see
      // H1DownstreamConnection.parseLoop) and is needed again if no HTTP/1.1 connection took it at once:
      // to build the upstream head or an HTTP/2 stream's fields once a connection comes.
      const pending = this.pendingBody;
      if (pending !== null) for (let i = 0; i < pending.length; i++) pending[i] = Buffer.from(pending[i]!);
      if (isLent(head.buf) && (this.conn === null || this.leg !== null)) {
        // An HTTP/2 stream took the head as a field list, which its replays reuse (H2Leg.start). Only a
        // route's retries (perhaps to another endpoint, scheme or protocol) or the cache (Vary,
        // conditions, revalidation) read the head's fields later; without them its bytes are not
        // copied, and the head forgets them: nothing can read the next client's bytes in their place.
        if (this.leg === null || this.retries !== null || this.cache !== null) ownHeadBytes(head);
        else forgetHeadBytes(head);
      }
    }
    return used;
  }

  /**
   * Sends the request on its way: the cluster's breakers, an endpoint, then the pool. Called from begin()
   * (then `beginning` is set and an idle connection at hand takes the request synchronously), or later
   * when admission had to wait for a store or the request body.
   */
  private dispatch(): void {
    if (this.done) return;
    const route = this.route!;
    if (route.cache !== null && this.cache === null) {
      this.cache = new CacheUse(route.cache, this, this.session.ctx.proto);
      if (this.cache.intercept()) return;
    }
    const cluster = route.cluster;
    if (!cluster.admit()) {
      this.fail('circuit_open');
      return;
    }
    this.hashKey = cluster.hashKeyOf(this.head, this.session.peer);
    const endpoint = cluster.pick(this.hashKey);
    if (endpoint === undefined) {
      this.fail('no_healthy_endpoint');
      return;
    }
    this.useEndpoint(endpoint);
    cluster.requests++;
    // Within begin() the exchange was made a moment ago (see the constructor): its clock reading serves.
    this.poolStartedAt = this.beginning ? this.startedAt : clockNow();
    this.acquireOn(endpoint);
  }

  // --- admission: rate limit, then Idempotency-Key ---

  private admit(rl: RouteRateLimit | null, idem: RouteIdempotency | null): void {
    if (rl !== null) {
      const key = rl.keyOf(this.head, this.session.peer);
      const store = rl.store;
      if (store.sync) {
        if (this.rateDecided(rl, store.take(key, rl.rule))) this.admitKeyed(idem);
        return;
      }
      store.take(key, rl.rule).then(
        (d) => {
          if (this.rateDecided(rl, d)) this.admitKeyed(idem);
        },
        () => {
          if (this.done) return;
          if (rl.failOpen) this.admitKeyed(idem);
          else this.fail('rate_limit_store_unavailable');
        },
      );
      return;
    }
    this.admitKeyed(idem);
  }

  /** False (answered 429 with Retry-After and the RateLimit fields) when the bucket is empty. */
  private rateDecided(rl: RouteRateLimit, d: RateDecision): boolean {
    if (this.done) return false;
    if (d.allowed) return true;
    this.fail('rate_limited', rl.refusalFields(d));
    return false;
  }

  /** With an Idempotency-Key on a route with idempotency: read the whole body, then ask the store. */
  private admitKeyed(idem: RouteIdempotency | null): void {
    if (this.done) return;
    const key = idem === null ? undefined : idem.keyOf(this.head);
    if (idem === null || key === undefined) {
      this.dispatch();
      return;
    }
    if (key === null) {
      this.fail('invalid_idempotency_key');
      return;
    }
    if (this.head.contentLength > idem.maxRequestBytes || this.pendingBytes > idem.maxRequestBytes) {
      this.fail('idempotency_body_too_large');
      return;
    }
    if (this.requestDone) {
      this.keyedBegin(idem, key);
      return;
    }
    // The body is held whole (bounded by max_request_bytes), so reading goes on past the usual hold.
    this.onBodyDone = () => this.keyedBegin(idem, key);
    this.session.resumeForBody();
  }

  private keyedBegin(idem: RouteIdempotency, key: string): void {
    this.onBodyDone = null;
    if (this.done) return;
    const head = this.head;
    const scope = idem.scopeOf(head, key);
    idem.store.begin(scope, fingerprint(head.method, head.target, this.pendingBody ?? [])).then(
      (r) => {
        if (this.done) {
          if (r.kind === 'run') idem.store.release(scope, r.token).catch(() => {});
          return;
        }
        if (r.kind === 'run') {
          this.keyed = true;
          this.tap = new IdempotentRun(idem, scope, r.token, this.session.ctx.log);
          this.dispatch();
        } else if (r.kind === 'replay') this.replayStored(r.response);
        else this.fail(r.kind === 'in_flight' ? 'idempotency_in_flight' : 'idempotency_key_reused');
      },
      () => {
        if (this.done) return;
        // fail_open: forwarded as if it had no key (and so not retried unless its method allows).
        if (idem.failOpen) this.dispatch();
        else this.fail('idempotency_store_unavailable');
      },
    );
  }

  /** A repeat of a completed keyed request: the stored response, marked `idempotent-replayed: true`. */
  private replayStored(res: StoredResponse): void {
    const a = new LocalAnswer(this, res.status, [...res.headers, ['idempotent-replayed', 'true']], res.body.length);
    a.chunk(res.body);
    a.end();
  }

  // --- request body (from the session) ---

  /**
   * Consume request body bytes from buf[start, end). Returns bytes used, or -1 if the body is malformed.
   * `lent`: `buf` is a view of a shared read buffer, valid only during the call: what is held for later
   * (waiting for a connection, an HTTP/2 stream's queue, a write the kernel did not take) is copied.
   */
  onRequestBody(buf: Buffer, start: number, end: number, lent = false): number {
    let take: number;
    if (this.reqScanner !== null) {
      take = this.reqScanner.feed(buf, start, end);
      if (take < 0) {
        this.requestDone = true; // nothing more of it will be read: the connection closes
        if (this.relay.headSent) this.abort('invalid_chunk');
        else this.fail('invalid_chunk');
        return -1;
      }
      if (this.reqScanner.done) this.requestDone = true;
    } else {
      take = Math.min(end - start, this.reqRemaining);
      this.reqRemaining -= take;
      if (this.reqRemaining === 0) this.requestDone = true;
    }
    this.bytesIn += take;
    if (take === 0 || this.done) return take;
    const slice = take === buf.length ? buf : buf.subarray(start, start + take);
    if (this.retries !== null) this.retries.keep(slice);
    const conn = this.conn;
    const leg = this.leg;
    if (conn !== null) {
      conn.deadline = deadlineIn(this.responseTimeoutMs());
      if (!conn.write(slice, lent)) this.session.pauseForBody();
    } else if (leg !== null && leg.stream !== null) {
      if (!leg.write(lent ? Buffer.from(slice) : slice)) this.session.pauseForBody();
      if (this.requestDone) leg.endBody();
    } else {
      (this.pendingBody ??= []).push(lent ? Buffer.from(slice) : slice);
      this.pendingBytes += take;
      const bodyDone = this.onBodyDone;
      if (bodyDone !== null) {
        if (this.pendingBytes > this.route!.idempotency!.maxRequestBytes) this.fail('idempotency_body_too_large');
        else if (this.requestDone) bodyDone();
      } else if (this.pendingBytes > PENDING_BODY_LIMIT) this.session.pauseForBody();
    }
    return take;
  }

  // --- PoolWaiter ---

  onPoolReady(conn: H1UpstreamConnection): void {
    conn.user = this;
    if (this.done) {
      conn.pool.release(conn, true);
      return;
    }
    // An endpoint whose ALPN said http/1.1 sends its HTTP/2 waiters here: they go as HTTP/1.1.
    this.leg = null;
    this.upstreamHead ??= buildUpstreamHead(this.head, this.route!, this.upstreamFields());
    this.conn = conn;
    // Inside begin() (an idle connection was at hand) the exchange's start time is still current.
    const now = this.beginning ? this.startedAt : clockNow();
    this.poolWaitMs = now - this.poolStartedAt;
    this.endpoint?.poolWait.observe(this.poolWaitMs);
    conn.deadline = Math.ceil(now + this.responseTimeoutMs());
    // Head and held body in one write (flushed here, so one shared batch serves every exchange).
    upstreamBatch.add(this.upstreamHead!);
    const pending = this.pendingBody;
    if (pending !== null) {
      for (const b of pending) upstreamBatch.add(b);
      this.pendingBody = null;
      this.pendingBytes = 0;
    }
    const ok = upstreamBatch.flush(conn.socket, conn.direct);
    if (ok) this.session.resumeForBody();
  }

  onSessionReady(session: H2UpstreamConnection): void {
    if (this.done) {
      session.releaseSlot();
      return;
    }
    const now = clockNow();
    this.poolWaitMs = now - this.poolStartedAt;
    this.endpoint?.poolWait.observe(this.poolWaitMs);
    const held = this.pendingBody;
    this.pendingBody = null;
    // An HTTP/2 stream queues what it is given: views of a shared read buffer are copied first.
    if (held !== null) for (let i = 0; i < held.length; i++) if (isLent(held[i]!)) held[i] = Buffer.from(held[i]!);
    this.pendingBytes = 0;
    (this.leg ??= new H2Leg(this)).start(session, held);
    this.session.resumeForBody();
  }

  /** The upstream refused the stream without processing it: send the request again elsewhere. */
  retryH2(refusedBy: H2UpstreamConnection): void {
    this.poolStartedAt = clockNow();
    this.endpoint!.h2!.acquire(this, refusedBy);
  }

  /** Ask the endpoint's pool for capacity: an HTTP/2 stream slot or an HTTP/1.1 connection. */
  private acquireOn(endpoint: Endpoint): void {
    endpoint.upstream.acquire(this);
  }

  /** The fields this hop adds to the upstream request: forwarding (X-Forwarded-*, Forwarded, Via), a revalidation's. */
  upstreamFields(): string {
    const f = this.session.forwardingFields(this.head);
    return this.extraUpstreamFields === '' ? f : f + this.extraUpstreamFields;
  }

  // --- the cache (cache/cache-use.ts) ---

  /**
   * stale-while-revalidate: this request was answered from a stale object; a copy of it, with no
   * client, goes upstream to refresh the object.
   */
  revalidateInBackground(): void {
    const head: RequestHead = { ...this.head, fields: this.head.fields.slice() };
    ownHeadBytes(head);
    const down = new BackgroundDownstream(this.session, this.session.forwardingFields(this.head));
    new Exchange(down, head, this.route, this.path, true).begin(NO_BYTES, 0, 0);
  }

  /** A coalesced request the other's answer will not serve: it goes upstream itself. */
  goUpstream(): void {
    this.dispatch();
  }

  /**
   * The upstream's final head, before any of it reaches the client: the cache may answer instead (a
   * 304 to its revalidation, a 5xx while stale-if-error allows the stale object). Then the upstream
   * side is let go and true returned.
   */
  cacheTakesOver(status: number, flat: () => string[], reusable = false): boolean {
    const c = this.cache;
    if (c === null) return false;
    c.sawHead(flat);
    if (!c.takesOver(status)) return false;
    const fields = flat();
    // A 304 that was all of the read leaves its HTTP/1.1 connection in step: back to the pool.
    this.dropAttempt(reusable && this.requestDone);
    c.answer(status, fields);
    return true;
  }

  /** The Cache-Status field line of a relayed response ('' without a cache). */
  cacheStatusLine(): string {
    return this.cache === null ? '' : `cache-status: ${this.cache.relayedStatus()}\r\n`;
  }

  /** An answer muxgate wrote itself (a cache hit, an idempotent replay) is complete: the bookkeeping of a finished exchange. */
  answeredLocally(status: number): void {
    if (this.done) return;
    this.status = status;
    this.done = true;
    this.retries?.leave();
    this.releaseEndpoint();
    this.logAccess(this.recordDuration());
    this.session.onExchangeDone(!this.closeDownstream);
  }

  /** For a pool that sends PROXY headers: the client connection this request came on. */
  clientOrigin(): ClientOrigin {
    return this.session.origin();
  }

  onPoolError(code: ErrorCode): void {
    if (this.done) return;
    const endpoint = this.endpoint!;
    // A refused or timed-out connect sent nothing: any method may go again, to another endpoint: as
    // often as the route's retry: allows, else once.
    if (retryWhen(code) === 'unsent' && this.route!.retry !== null) {
      endpoint.errors++;
      if (this.tryRetry('connect-failure', code)) return;
      this.fail(code);
      return;
    }
    if (retryWhen(code) === 'unsent' && ++this.connectAttempts < 2) {
      const next = this.route!.cluster.pick(this.hashKey);
      if (next !== undefined) {
        this.releaseEndpoint();
        this.useEndpoint(next);
        this.acquireOn(next);
        return;
      }
    }
    endpoint.errors++;
    this.fail(code);
  }

  // --- UpstreamUser ---

  onUpstreamData(chunk: Buffer, end: number): void {
    if (this.done) return;
    const conn = this.conn!;
    this.relay.onData(chunk, end);
    // The response timeout restarts with every read; a response that completed here needs none.
    if (!this.done && this.conn === conn) conn.deadline = deadlineIn(this.responseTimeoutMs());
  }

  onUpstreamClose(hadError: boolean): void {
    if (this.done) return;
    // A clean close (FIN) ends a close-delimited body; a reset truncates it, which is aborted below.
    if (!hadError && this.relay.onUpstreamEnd()) return;
    if (!this.relay.gotBytes && this.canRetry()) {
      // Keep-alive race: the upstream closed a reused connection just as we sent on it. Nothing was
      // processed (no response byte came back) and the request has no body: send it once more, fresh.
      this.retried = true;
      const conn = this.conn!;
      this.conn = null;
      conn.pool.release(conn, false);
      this.poolStartedAt = clockNow();
      this.endpoint!.pool.acquire(this, true);
      return;
    }
    if (this.relay.headSent) this.abort('upstream_reset');
    else if (!this.tryRetry('reset', 'upstream_reset')) this.fail('upstream_reset');
  }

  onUpstreamDrain(): void {
    this.session.resumeForBody();
  }

  onUpstreamTimeout(): void {
    if (this.done) return;
    if (this.relay.headSent || (this.leg?.headSent ?? false)) this.abort('upstream_timeout');
    else if (!this.tryRetry('reset', 'upstream_timeout')) this.fail('upstream_timeout');
  }

  /** An HTTP/2 upstream reset the stream (or its connection went) before the response head. */
  onUpstreamReset(): void {
    if (!this.tryRetry('reset', 'upstream_reset')) this.fail('upstream_reset');
  }

  /**
   * The upstream's final response head is in, nothing of it sent downstream yet: true when the route
   * retries this status and a retry was started (the caller drops the response).
   */
  retriesStatus(status: number): boolean {
    const p = this.route?.retry;
    if (p === undefined || p === null || !p.statuses.has(status)) return false;
    return this.tryRetry('status', null, status);
  }

  /** Whether an HTTP/2 stream the upstream refused unprocessed may be sent again (the route may say no). */
  retriesRefused(): boolean {
    const p = this.route?.retry;
    return p === undefined || p === null || p.retries('refused-stream');
  }

  // --- retries (a route's retry:, counted by ExchangeRetries) ---

  /**
   * The current attempt failed (`why`: a connect failure, a reset or timeout before the response head,
   * or a retried status). If the route's retry: allows another and the request may be sent twice, drops
   * the attempt (its endpoint hears about the failure), waits the backoff and sends the request to
   * another endpoint; returns true. Otherwise records why not (access log, /stats) and returns false.
   */
  private tryRetry(why: RetryOn | 'status', code: ErrorCode | null, status = 0): boolean {
    if (this.done) return false;
    const r = this.retries;
    if (r === null || (why !== 'status' && !r.policy.retries(why))) return false;
    const cluster = this.route!.cluster;
    const skip = r.blocker(why, this.keyed || IDEMPOTENT.has(this.head.method), this.requestDone);
    if (skip !== null) {
      r.skipped = skip;
      cluster.recordRetrySkipped(skip);
      return false;
    }
    const prev = this.endpoint!;
    // The failed attempt counts towards ejecting its endpoint, as a final failure would.
    if (why === 'status') prev.outlier.responded(prev, status);
    else if (code !== null && GATEWAY_ERRORS.has(code)) prev.outlier.gatewayError(prev);
    // (a failed connect was already told by the pool)
    const next = cluster.pickOther(this.hashKey, prev);
    if (next === undefined) return false;
    r.count();
    this.dropAttempt();
    // After a failed connect the body was never sent: it is still held (pendingBody).
    const body = why === 'connect-failure' ? null : r.replayBody();
    if (body !== null) {
      this.pendingBody = body;
      this.pendingBytes = r.replayLength;
    }
    this.releaseEndpoint();
    this.useEndpoint(next);
    r.afterBackoff(() => {
      if (this.done) return;
      this.poolStartedAt = clockNow();
      this.acquireOn(next);
    });
    return true;
  }

  /**
   * Lets go of the current attempt's upstream side: an HTTP/1.1 connection is closed (or, `reusable`,
   * returned to its pool), a stream cancelled unless it already ended.
   */
  private dropAttempt(reusable = false): void {
    const conn = this.conn;
    if (conn !== null) {
      this.conn = null;
      conn.deadline = 0;
      if (this.upstreamPaused) {
        this.upstreamPaused = false;
        if (reusable) conn.resumeReading();
      }
      conn.pool.release(conn, reusable);
    }
    const leg = this.leg;
    if (leg !== null) {
      this.leg = null;
      leg.release();
    }
    this.relay = new ResponseRelay(this);
  }

  // --- from the session ---

  /** The client reads slower than the upstream sends: stop reading the upstream until 'drain'. */
  onDownstreamBlocked(): void {
    if (!this.upstreamPaused && this.conn !== null) {
      this.upstreamPaused = true;
      this.conn.pauseReading();
    }
    this.leg?.pause();
  }

  onDownstreamDrain(): void {
    if (this.upstreamPaused && this.conn !== null) {
      this.upstreamPaused = false;
      this.conn.resumeReading();
    }
    this.leg?.resume();
  }

  /**
   * The client half-closed. Mid-body that is an abort; after the request it means "close after", unless
   * `pipelined` requests are already read and wait their turn: the session closes after the last of them.
   */
  onDownstreamEnd(pipelined = false): void {
    if (this.done) return;
    if (!this.requestDone) {
      this.abort('downstream_closed');
      return;
    }
    if (!pipelined) this.closeDownstream = true;
  }

  onDownstreamClose(): void {
    if (this.done) return;
    // A cache fill other requests wait on goes on without its client: what it would have got is dropped.
    if (this.cache?.fillHasWaiters() === true && this.requestDone) {
      this.session = new BackgroundDownstream(this.session, '');
      this.closeDownstream = true;
      this.onDownstreamDrain();
      return;
    }
    this.finishWith('downstream_closed', false);
  }

  // --- endings ---

  /** The response was fully relayed. `upstreamReusable` is the relay's verdict on the connection. */
  complete(upstreamReusable: boolean): void {
    if (this.done) return;
    this.done = true;
    const conn = this.conn;
    if (conn !== null) {
      this.conn = null;
      if (this.upstreamPaused) {
        this.upstreamPaused = false;
        conn.resumeReading();
      }
      conn.deadline = 0;
      conn.pool.release(conn, upstreamReusable && this.requestDone);
    }
    this.leg?.release();
    if (this.retries !== null) this.retries.leave();
    if (this.tap !== null) this.tap.finish(true);
    if (this.cache !== null) this.cache.completed(this.status);
    if (!this.requestDone) this.closeDownstream = true;
    const ep = this.endpoint;
    // The upstream's own answer: 5xx and 502-504 count towards ejecting the endpoint, anything else resets.
    if (ep !== null) ep.outlier.responded(ep, this.status);
    this.releaseEndpoint();
    this.logAccess(this.recordDuration());
    this.session.onExchangeDone(!this.closeDownstream);
  }

  /** Nothing was sent downstream yet: answer with the error's status. */
  fail(code: ErrorCode, extra?: readonly string[]): void {
    if (this.done) return;
    const c = this.cache;
    if (c?.servesStaleFor(code)) {
      this.dropAttempt();
      this.releaseEndpoint();
      c.serveStaleFor(code);
      return;
    }
    const info = ERRORS[code];
    // A downstream error means the connection cannot be trusted, except refusals of a well-formed
    // request (no route, a rate limit, a key in use): when requestDone it was fully read, so the
    // connection is still in sync.
    const close = this.closeDownstream || !this.requestDone || (info.source === 'downstream' && !IN_SYNC.has(code));
    const headOnly = this.head.method === 'HEAD';
    // the access log line counts the error response
    this.bytesOut += (
      extra === undefined
        ? errorResponse(code, close, headOnly)
        : errorResponse(code, close, headOnly, fieldLines(extra), false)
    ).length;
    this.finishWith(code, true);
    this.session.sendError(code, close, headOnly, extra);
    this.session.onExchangeDone(!close);
  }

  /** A response is partly sent: drop the downstream connection so the client sees a truncated message. */
  abort(code: ErrorCode): void {
    if (this.done) return;
    this.finishWith(code, false);
    this.session.destroy();
  }

  private finishWith(code: ErrorCode, answered: boolean): void {
    this.done = true;
    this.error = code;
    if (answered || this.status === 0) this.status = ERRORS[code].status;
    if (this.queued) this.endpoint?.cancel(this);
    const conn = this.conn;
    if (conn !== null) {
      this.conn = null;
      conn.pool.release(conn, false);
    }
    this.leg?.release();
    this.retries?.leave();
    if (this.tap !== null) this.tap.finish(false);
    this.cache?.ended();
    const ctx = this.session.ctx;
    ctx.stats.recordError(code);
    if (ERRORS[code].source === 'upstream') this.route?.cluster.recordError(code);
    const ep = this.endpoint;
    if (ep !== null && GATEWAY_ERRORS.has(code)) ep.outlier.gatewayError(ep);
    this.releaseEndpoint();
    this.logAccess(this.recordDuration());
  }

  /** The upstream's time to answer; a route's per_try_timeout bounds each attempt until the response head. */
  responseTimeoutMs(): number {
    const route = this.route!;
    const p = route.retry;
    if (p !== null && p.perTryTimeoutMs > 0 && !this.relay.headSent && !(this.leg?.headSent ?? false)) {
      return Math.min(p.perTryTimeoutMs, route.responseTimeoutMs);
    }
    return route.responseTimeoutMs;
  }

  /** The keep-alive race: the reused connection closed before any response byte (upstream_reset). */
  private canRetry(): boolean {
    const conn = this.conn;
    return (
      !this.retried &&
      conn !== null &&
      conn.requests > 1 &&
      retryWhen('upstream_reset') === 'idempotent' &&
      IDEMPOTENT.has(this.head.method) &&
      this.head.contentLength <= 0 &&
      !this.head.chunked
    );
  }

  private useEndpoint(e: Endpoint): void {
    this.endpoint = e;
    this.countsActive = true;
    e.active++;
    e.requests++;
  }

  /** Ends this exchange's share of the endpoint's in-flight count (read by least_request). */
  private releaseEndpoint(): void {
    if (!this.countsActive) return;
    this.countsActive = false;
    this.endpoint!.active--;
  }

  /** The request's duration into the listener's histogram (one clock read, shared with the access log). */
  private recordDuration(): number {
    const ms = clockNow() - this.startedAt;
    this.session.ctx.stats.requestDuration.observe(ms);
    return ms;
  }

  private logAccess(durationMs: number): void {
    const log = this.session.ctx.accessLog;
    if (log === null) return;
    const head = this.head;
    log.request({
      listener: this.session.ctx.name,
      client: this.session.peer,
      protocol: this.session.h2 ? 'HTTP/2' : head.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0',
      method: head.method,
      host: head.host,
      path: this.path,
      status: this.status,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      durationMs,
      upstream: this.endpoint?.key,
      upstreamProtocol: this.leg !== null ? 'HTTP/2' : undefined,
      poolWaitMs: this.poolWaitMs,
      error: this.error,
      attempts: this.retries?.attempt ?? 1,
      retrySkipped: this.retries?.skipped ?? null,
      cache: this.cache?.logged,
    });
  }
}
