/**
 * The time on `performance.now()`'s clock, read once per callback. A request reads the time ~7
 * times (its start, deadlines, pool wait, its end) and each read costs ~50 ns here (a call into C++
 * and the clock itself), ~3 % of the HTTP/2 upstream path's user time; within one I/O callback the
 * readings would differ by microseconds. The first reading in a callback is kept and forgotten when
 * the callback's microtasks run (with its output's flush, core/flush-queue.ts), so a later callback
 * (or timer) reads the clock afresh.
 *
 * Use it where a reading that is as old as the current callback is right: deadlines, durations of
 * requests and pool waits. Not for timing work done within one synchronous stretch.
 */
import { performance } from 'node:perf_hooks';
import { type Flushable, scheduleFlush } from './flush-queue.ts';

let reading = 0;
let fresh = false;
/** Forgets the reading from the microtask that flushes the callback's output (one microtask for both). */
const forget: Flushable = {
  flush(): void {
    fresh = false;
  },
};

export function clockNow(): number {
  if (fresh) return reading;
  fresh = true;
  scheduleFlush(forget);
  reading = performance.now();
  return reading;
}
