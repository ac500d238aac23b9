import { Buffer } from 'node:buffer';
import type { Cluster } from '../cluster/cluster.ts';
import type { RetryOn } from '../config/retry.ts';
import type { RetryPolicy, RetrySkip } from '../router/retry-policy.ts';

/**
 * The retries of one request on a route with `retry:`: its place in the route's retry budget and the
 * cluster's retry count, the attempts made, the request body kept for a replay, the backoff timer, and
 * why a retry was not made (for the access log). The exchange decides that an attempt failed and moves
 * the request to another endpoint; this says whether it may, and keeps the counts straight.
 *
 * Made when the exchange begins, which counts the request in the route's budget; `leave` (once the
 * exchange ends, however it ends) takes it out again.
 */
export class ExchangeRetries {
  readonly policy: RetryPolicy;
  private readonly cluster: Cluster;
  /** Tries made so far, this one included. */
  attempt = 1;
  /** Why the last failed attempt was not retried; null when none was refused. */
  skipped: RetrySkip | null = null;
  private inBudget = true;
  /** Counted as retrying in the route's budget and the cluster's max_retries (from the first retry on). */
  private retrying = false;
  /** The request body as received, kept for a replay; null when there is none or it outgrew retry_buffer_bytes. */
  private replay: Buffer[] | null = null;
  private replayBytes = 0;
  private replayDropped = false;
  private timer: NodeJS.Timeout | null = null;

  /** `bodyLength`: the request's Content-Length (-1 when chunked); `requestDone`: no body to come. */
  constructor(policy: RetryPolicy, cluster: Cluster, requestDone: boolean, bodyLength: number) {
    this.policy = policy;
    this.cluster = cluster;
    policy.requestsActive++;
    if (requestDone) return;
    if (bodyLength > policy.bufferBytes) this.replayDropped = true;
    else this.replay = [];
  }

  /** A piece of the request body as it arrives: copied, since it may be a view of a shared read buffer or be queued on a socket. */
  keep(slice: Buffer): void {
    if (this.replay === null) return;
    this.replayBytes += slice.length;
    if (this.replayBytes > this.policy.bufferBytes) {
      this.replay = null;
      this.replayDropped = true;
      return;
    }
    this.replay.push(Buffer.from(slice));
  }

  /**
   * Why another attempt may not be made after a failure of kind `why`, or null when it may. `idempotent`:
   * the request may be sent twice (its method, or an Idempotency-Key); `requestDone`: its body is all in.
   */
  blocker(why: RetryOn | 'status', idempotent: boolean, requestDone: boolean): RetrySkip | null {
    const p = this.policy;
    if (this.attempt >= p.attempts) return 'attempts';
    // A failed connect sent nothing, so any method may go again, its body still held by the exchange.
    if (why !== 'connect-failure') {
      if (!idempotent) return 'not_idempotent';
      if (!requestDone) return 'body_incomplete';
      if (this.replayDropped) return 'body_too_large';
    }
    if (!this.retrying && !p.budgetAllows()) return 'budget';
    if (!this.retrying && !this.cluster.admitRetry()) return 'circuit_open';
    return null;
  }

  /** Another attempt is made: counted in the cluster's retries and, from the first, as retrying in both budgets. */
  count(): void {
    this.attempt++;
    this.cluster.retries++;
    if (!this.retrying) {
      this.retrying = true;
      this.policy.retriesActive++;
      this.cluster.retriesActive++;
    }
  }

  /** The body to send again, in a new array (the pieces are shared, never written to); null when none was kept. */
  replayBody(): Buffer[] | null {
    return this.replay !== null && this.replay.length > 0 ? this.replay.slice() : null;
  }

  get replayLength(): number {
    return this.replayBytes;
  }

  /** Runs `next` after the backoff for this attempt (full jitter, see RetryPolicy.backoffMs). */
  afterBackoff(next: () => void): void {
    this.timer = setTimeout(
      () => {
        this.timer = null;
        next();
      },
      this.policy.backoffMs(this.attempt - 1),
    );
  }

  /** The exchange is over: it leaves the route's retry budget and the cluster's retry count. Idempotent. */
  leave(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (!this.inBudget) return;
    this.inBudget = false;
    this.policy.requestsActive--;
    if (this.retrying) {
      this.retrying = false;
      this.policy.retriesActive--;
      this.cluster.retriesActive--;
    }
  }
}
