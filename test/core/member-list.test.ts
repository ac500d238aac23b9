/**
 * A listener's member list: O(1) add and delete from anywhere, no double membership, deleting what
 * is not a member (or a member of another list) changes nothing, and a snapshot stays valid while
 * members leave.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Member, MemberList } from '../../src/core/member-list.ts';

class Conn implements Member {
  memberSlot = -1;
  readonly n: number;
  constructor(n: number) {
    this.n = n;
  }
}

describe('MemberList', () => {
  it('adds once, deletes from the middle and the ends, and knows its members', () => {
    const list = new MemberList<Conn>();
    const all = Array.from({ length: 20 }, (_, i) => new Conn(i));
    for (const c of all) list.add(c);
    list.add(all[5]!);
    assert.equal(list.size, 20);
    for (const i of [0, 19, 7, 8, 13]) assert.equal(list.delete(all[i]!), true, `delete ${i}`);
    assert.equal(list.delete(all[7]!), false, 'twice');
    assert.equal(list.size, 15);
    for (const [i, c] of all.entries()) assert.equal(list.has(c), ![0, 19, 7, 8, 13].includes(i), `member ${i}`);
    assert.deepEqual(
      list
        .snapshot()
        .map((c) => c.n)
        .sort((a, b) => a - b),
      all.map((c) => c.n).filter((n) => ![0, 19, 7, 8, 13].includes(n)),
    );
  });

  it("leaves another list's member alone", () => {
    const a = new MemberList<Conn>();
    const b = new MemberList<Conn>();
    const x = new Conn(1);
    const y = new Conn(2);
    a.add(x);
    b.add(y);
    assert.equal(a.delete(y), false);
    assert.equal(b.has(y), true);
    assert.equal(a.has(x), true);
  });

  it('can be walked through a snapshot while every member leaves', () => {
    const list = new MemberList<Conn>();
    for (let i = 0; i < 50; i++) list.add(new Conn(i));
    const seen: number[] = [];
    for (const c of list.snapshot()) {
      seen.push(c.n);
      list.delete(c);
    }
    assert.equal(seen.length, 50);
    assert.equal(list.size, 0);
  });
});
