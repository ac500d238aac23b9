/**
 * The sweeper's list: items removed from the middle while others stay tracked, adding twice, deleting
 * what is not tracked, and expiries that remove other items (or themselves) during a sweep: every
 * due item expires exactly once and no item is lost.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Expirable, Sweeper } from '../../src/core/sweeper.ts';

class Item implements Expirable {
  deadline = 0;
  sweepSlot = -1;
  expired = 0;
  onExpire: (() => void) | null = null;
  expire(): void {
    this.expired++;
    this.onExpire?.();
  }
}

describe('Sweeper', () => {
  it('tracks each item once and removes any of them', () => {
    const sw = new Sweeper(60_000);
    const items = Array.from({ length: 10 }, () => new Item());
    for (const it of items) sw.add(it);
    sw.add(items[3]!);
    assert.equal(sw.size, 10);
    sw.delete(items[3]!);
    sw.delete(items[3]!);
    sw.delete(items[0]!);
    assert.equal(sw.size, 8);
    for (const [i, it] of items.entries()) assert.equal(sw.has(it), i !== 3 && i !== 0, `item ${i}`);
    // An item of another sweeper is left alone.
    const other = new Sweeper(60_000);
    const foreign = new Item();
    other.add(foreign);
    sw.delete(foreign);
    assert.equal(other.has(foreign), true);
    for (const it of items) sw.delete(it);
    other.delete(foreign);
    assert.equal(sw.size, 0);
    assert.equal(other.size, 0);
  });

  it('expires every due item once, even when expiries remove other items', () => {
    const sw = new Sweeper(60_000);
    const items = Array.from({ length: 50 }, () => new Item());
    for (const it of items) sw.add(it);
    // Every item is due; each third one removes itself and two others (one before, one after it).
    for (const [i, it] of items.entries()) {
      it.deadline = 1;
      if (i % 3 === 0)
        it.onExpire = () => {
          sw.delete(it);
          const a = items[(i + 7) % 50]!;
          const b = items[(i + 41) % 50]!;
          sw.delete(a);
          sw.delete(b);
        };
    }
    sw.sweep();
    for (const [i, it] of items.entries()) {
      // A removed item may or may not have expired before its removal, but never twice; one still
      // tracked expired exactly once.
      assert.ok(it.expired <= 1, `item ${i} expired ${it.expired} times`);
      if (sw.has(it)) assert.equal(it.expired, 1, `tracked item ${i}`);
    }
    // Items not yet due stay, and expire at their time.
    const later = new Item();
    later.deadline = Number.MAX_SAFE_INTEGER;
    sw.add(later);
    sw.sweep();
    assert.equal(later.expired, 0);
    for (const it of [...items, later]) sw.delete(it);
    assert.equal(sw.size, 0);
  });
});
