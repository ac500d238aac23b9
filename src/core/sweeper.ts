/**
 * One coarse timer for every deadline in the process (header reads, keep-alive idle, upstream
 * connect/response, pooled-connection idle). Each tracked object carries a `deadline` (ms on
 * `performance.now()`'s clock, 0 = none) and is checked on every tick. This costs a few
 * microseconds per tick for thousands of connections and no timer object or closure per connection,
 * where a `setTimeout` per connection would allocate and re-arm on every request.
 */
import { performance } from 'node:perf_hooks';
export interface Expirable {
  deadline: number;
  expire(now: number): void;
}

export class Sweeper {
  private readonly items = new Set<Expirable>();
  private timer: NodeJS.Timeout | null = null;
  private readonly tickMs: number;

  constructor(tickMs = 100) {
    this.tickMs = tickMs;
  }

  add(item: Expirable): void {
    this.items.add(item);
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.tickMs);
      this.timer.unref();
    }
  }

  delete(item: Expirable): void {
    this.items.delete(item);
    if (this.items.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  get size(): number {
    return this.items.size;
  }

  sweep(): void {
    const now = performance.now();
    for (const item of this.items) {
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
 * A deadline `ms` from now, in whole milliseconds (rounded up: never early). A small integer is stored
 * in the object as it is; a fractional one is a boxed number that the sweeper's reads copy, ten times
 * a second for every tracked object.
 */
export function deadlineIn(ms: number): number {
  return Math.ceil(performance.now() + ms);
}
