/**
 * One coarse timer for every deadline in the process (header reads, keep-alive idle, upstream
 * connect/response, pooled-connection idle). Each tracked object carries a `deadline` (ms on
 * `performance.now()`'s clock, 0 = none) and is checked on every tick. This costs a few
 * microseconds per tick for thousands of connections and no timer object or closure per connection,
 * where a `setTimeout` per connection would allocate and re-arm on every request.
 */
import { clockNow } from './clock.ts';
import { performance } from 'node:perf_hooks';
export interface Expirable {
  deadline: number;
  /**
   * The sweeper's bookkeeping: this item's index in its list, -1 while not tracked. Each
   * implementation starts it at -1 and never writes it.
   */
  sweepSlot: number;
  expire(now: number): void;
}

/**
 * The tracked items live in a plain array, each knowing its index (removal swaps the last item into
 * the hole), rather than in a `Set`. The sweeper lives as long as the process, so its Set sat in
 * V8's old generation; one add and one delete per request rehashed it every few dozen requests, and
 * V8 links each replaced hash table to its successor without clearing its entries. Through that
 * chain, starting at a dead table in old space, the scavenger kept every tracked request alive and
 * promoted it until the next major GC (see http2/stream-table.ts, which measured it).
 */
export class Sweeper {
  private readonly items: Expirable[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly tickMs: number;

  constructor(tickMs = 100) {
    this.tickMs = tickMs;
  }

  add(item: Expirable): void {
    if (item.sweepSlot >= 0) return;
    item.sweepSlot = this.items.length;
    this.items.push(item);
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.tickMs);
      this.timer.unref();
    }
  }

  delete(item: Expirable): void {
    const i = item.sweepSlot;
    const items = this.items;
    // Not tracked (or by another sweeper, as in tests): nothing to do.
    if (i < 0 || items[i] !== item) return;
    item.sweepSlot = -1;
    const last = items.pop()!;
    if (last !== item) {
      items[i] = last;
      last.sweepSlot = i;
    }
    if (items.length === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  has(item: Expirable): boolean {
    const i = item.sweepSlot;
    return i >= 0 && this.items[i] === item;
  }

  get size(): number {
    return this.items.length;
  }

  /**
   * Walks from the end: an `expire` that removes items swaps already-visited ones (from the end)
   * into the holes, so every item not yet visited still is, once (a revisit only re-reads a deadline).
   */
  sweep(): void {
    const now = performance.now();
    const items = this.items;
    for (let i = items.length - 1; i >= 0; i--) {
      if (i >= items.length) {
        i = items.length;
        continue;
      }
      const item = items[i]!;
      if (item.deadline !== 0 && item.deadline <= now) {
        item.deadline = 0;
        item.expire(now);
      }
    }
  }
}

/** The process-wide sweeper. */
export const sweeper = new Sweeper();

/**
 * A deadline `ms` from now, "now" being the current callback's clock reading (core/clock.ts: at most
 * that callback's own run time ago), in whole milliseconds (rounded up). A small integer is stored
 * in the object as it is; a fractional one is a boxed number that the sweeper's reads copy, ten times
 * a second for every tracked object.
 */
export function deadlineIn(ms: number): number {
  return Math.ceil(clockNow() + ms);
}
