import type { PoolWaiter } from './pool-waiter.ts';

/**
 * FIFO of waiters as an intrusive doubly-linked list: push/shift/remove are O(1) and allocation-free.
 * A waiter records which queue holds it, so removing it through another pool's queue (an endpoint has
 * an HTTP/1.1 and an HTTP/2 pool) is a no-op instead of corrupting both lists.
 */
export class PendingQueue {
  head: PoolWaiter | null = null;
  private tail: PoolWaiter | null = null;
  length = 0;

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
  }

  shift(): PoolWaiter | null {
    const w = this.head;
    if (w !== null) this.remove(w);
    return w;
  }

  remove(w: PoolWaiter): void {
    if (!w.queued || w.queueOwner !== this) return;
    if (w.queuePrev === null) this.head = w.queueNext;
    else w.queuePrev.queueNext = w.queueNext;
    if (w.queueNext === null) this.tail = w.queuePrev;
    else w.queueNext.queuePrev = w.queuePrev;
    w.queuePrev = null;
    w.queueNext = null;
    w.queued = false;
    w.queueOwner = null;
    this.length--;
  }
}
