/**
 * The connection's stream table (open addressing, backward-shift deletion) checked against a Map as
 * the model: random interleavings of opens and closes, ids that collide on purpose (same slot after
 * the mask), growth, shrinking after a burst, and emptiness giving its array back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Http2Stream } from '../../src/http2/stream.ts';
import { StreamTable } from '../../src/http2/stream-table.ts';
import { prng } from '../helpers/prng.ts';

/** Only the id matters to the table. */
const stream = (id: number): Http2Stream => ({ id }) as Http2Stream;

function assertSame(table: StreamTable, model: Map<number, Http2Stream>, probeIds: Iterable<number>): void {
  assert.equal(table.size, model.size);
  for (const id of probeIds) assert.equal(table.get(id), model.get(id), `id ${id}`);
  const ids = table
    .values()
    .map((s) => s.id)
    .sort((a, b) => a - b);
  assert.deepEqual(
    ids,
    [...model.keys()].sort((a, b) => a - b),
  );
}

describe('StreamTable', () => {
  it('finds, adds and deletes like a Map under random opens and closes', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = prng(seed);
      const table = new StreamTable();
      const model = new Map<number, Http2Stream>();
      let next = 1;
      const seen: number[] = [];
      for (let step = 0; step < 3000; step++) {
        const open = model.size === 0 || rand() < 0.55;
        if (open) {
          // Mostly consecutive odd ids; sometimes a jump (the peer skips ids) of up to 10,000.
          next += rand() < 0.1 ? 2 * Math.floor(rand() * 5000) + 2 : 2;
          const s = stream(next);
          table.add(s);
          model.set(next, s);
          seen.push(next);
        } else {
          const ids = [...model.keys()];
          const id = ids[Math.floor(rand() * ids.length)]!;
          assert.equal(table.delete(id), true);
          model.delete(id);
        }
        if (step % 97 === 0) assertSame(table, model, seen.slice(-200));
      }
      assertSame(table, model, seen);
      assert.equal(table.delete(next + 2), false, 'an id never added');
    }
  });

  it('keeps probe runs intact when ids collide on one slot and the middle one leaves', () => {
    const table = new StreamTable();
    // Capacity 8 (mask 7): ids 1, 17, 33 all map to slot 0 ((id >>> 1) & 7), 3 to slot 1.
    for (const id of [1, 17, 33, 3]) table.add(stream(id));
    assert.equal(table.delete(17), true);
    assert.equal(table.get(1)?.id, 1);
    assert.equal(table.get(33)?.id, 33);
    assert.equal(table.get(3)?.id, 3);
    assert.equal(table.get(17), undefined);
    assert.equal(table.delete(1), true);
    assert.equal(table.get(33)?.id, 33);
    assert.equal(table.get(3)?.id, 3);
  });

  it('wraps probe runs around the end of the array', () => {
    const table = new StreamTable();
    // Slot 7 of 8: ids 15, 31, 47 all map there; the run wraps into slots 0 and 1.
    for (const id of [15, 31, 47]) table.add(stream(id));
    table.add(stream(1)); // home slot 0, taken by 31: lands after the run
    assert.equal(table.delete(15), true);
    for (const id of [31, 47, 1]) assert.equal(table.get(id)?.id, id, `id ${id}`);
    assert.equal(table.delete(31), true);
    for (const id of [47, 1]) assert.equal(table.get(id)?.id, id, `id ${id}`);
  });

  it('grows for a burst, shrinks after it, and holds nothing once empty', () => {
    const table = new StreamTable();
    const slotsOf = (t: StreamTable): number => (t as unknown as { slots: unknown[] }).slots.length;
    assert.equal(slotsOf(table), 0);
    for (let id = 1; id < 2000; id += 2) table.add(stream(id));
    assert.equal(table.size, 1000);
    assert.ok(slotsOf(table) >= 1334, `room for 1,000 streams at 3/4 load: ${slotsOf(table)}`);
    for (let id = 1; id < 1990; id += 2) table.delete(id);
    assert.equal(table.size, 5);
    assert.ok(slotsOf(table) <= 64, `gave the room back: ${slotsOf(table)}`);
    for (let id = 1991; id < 2000; id += 2) assert.equal(table.get(id)?.id, id);
    const all = table.clear();
    assert.equal(all.length, 5);
    assert.equal(table.size, 0);
    assert.equal(slotsOf(table), 0);
    assert.equal(table.get(1991), undefined);
  });
});
