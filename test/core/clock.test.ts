/**
 * The clock read once per callback: one reading throughout a synchronous stretch, a new one in every
 * later callback (timer, immediate, I/O, a microtask after the flush), never older than the previous
 * callback's end, and the other flushes queued in the same microtask still run.
 */
import assert from 'node:assert/strict';
import { setImmediate as immediate } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { clockNow } from '../../src/core/clock.ts';
import { scheduleFlush } from '../../src/core/flush-queue.ts';

function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: the real clock moves on
  }
}

describe('clockNow', () => {
  it('gives one reading for a whole synchronous stretch', () => {
    const a = clockNow();
    spin(3);
    assert.equal(clockNow(), a);
  });

  it('reads afresh in the next callback, and never gives a time before the previous callback ended', async () => {
    for (let round = 0; round < 20; round++) {
      const a = clockNow();
      spin(1);
      const endOfStretch = performance.now();
      await immediate();
      const b = clockNow();
      assert.ok(b >= endOfStretch, `round ${round}: ${b} is before the previous callback's end ${endOfStretch}`);
      assert.ok(b > a);
    }
    const c = clockNow();
    await new Promise((resolve) => setTimeout(resolve, 2));
    assert.ok(clockNow() > c);
  });

  it('forgets its reading in the flush microtask, with the other flushes still made', async () => {
    const flushed: string[] = [];
    const a = clockNow();
    scheduleFlush({ flush: () => flushed.push('first') });
    spin(1);
    scheduleFlush({
      // a flush that reads the clock after the reading was forgotten gets a new one
      flush: () => flushed.push(clockNow() > a ? 'second saw a new reading' : 'second saw the old one'),
    });
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(flushed, ['first', 'second saw a new reading']);
  });
});
