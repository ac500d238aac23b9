import type { ErrorCode } from '../core/errors.ts';
import { type Expirable, sweeper } from '../core/sweeper.ts';
import type { PoolWaiter } from './pool-waiter.ts';

/**
 * The FIFO of waiters of one pool, as an intrusive doubly-linked list: push/shift/remove are O(1)
 * and allocation-free. It also keeps the wait bound: its sweeper deadline follows the head's arrival,
 * and waiters past `timeoutMs` are taken out and handed to `onTimeout`.
 * A waiter records which queue holds it, so removing it through another pool's queue (an endpoint has
 * an HTTP/1.1 and an HTTP/2 pool) is a no-op instead of corrupting both lists.
 */
export class PendingQueue implements Expirable {
  head: PoolWaiter | null = null;
  private tail: PoolWaiter | null = null;
  length = 0;
  deadline = 0;
  sweepSlot = -1;
  private readonly timeoutMs: number;
  private readonly onTimeout: (w: PoolWaiter) => void;

  /** `timeoutMs` 0: no wait bound. */
  constructor(timeoutMs = 0, onTimeout: (w: PoolWaiter) => void = noop) {
    this.timeoutMs = timeoutMs;
    this.onTimeout = onTimeout;
  }

  push(w: PoolWaiter, now: number): void {
    w.queuedAt = now;
    w.queued = true;
    w.queueOwner = this;
    w.queueNext = null;
    w.queuePrev = this.tail;
    if (this.tail === null) this.head = w;
    else this.tail.queueNext = w;
    this.tail = w;
    this.length++;
    if (this.length === 1) this.arm();
  }

  shift(): PoolWaiter | null {
    const w = this.head;
    if (w !== null) this.remove(w);
    return w;
  }

  remove(w: PoolWaiter): void {
    if (!w.queued || w.queueOwner !== this) return;
    const wasHead = w === this.head;
    if (w.queuePrev === null) this.head = w.queueNext;
    else w.queuePrev.queueNext = w.queueNext;
    if (w.queueNext === null) this.tail = w.queuePrev;
    else w.queueNext.queuePrev = w.queuePrev;
    w.queuePrev = null;
    w.queueNext = null;
    w.queued = false;
    w.queueOwner = null;
    this.length--;
    if (wasHead) this.arm();
  }

  /** Every waiter gets `code` (the pool is closing or cannot serve them). */
  failAll(code: ErrorCode): void {
    for (let w = this.shift(); w !== null; w = this.shift()) w.onPoolError(code);
  }

  /** Sweeper callback: the head (and whoever queued with it) waited too long. */
  expire(now: number): void {
    const limit = now - this.timeoutMs;
    let w = this.head;
    while (w !== null && w.queuedAt <= limit) {
      this.remove(w);
      this.onTimeout(w);
      w = this.head;
    }
  }

  /** The deadline is the head's: it waited longest. */
  private arm(): void {
    if (this.timeoutMs <= 0) return;
    const head = this.head;
    if (head === null) {
      if (this.deadline !== 0) {
        this.deadline = 0;
        sweeper.delete(this);
      }
      return;
    }
    this.deadline = head.queuedAt + this.timeoutMs;
    sweeper.add(this);
  }
}

function noop(): void {}
