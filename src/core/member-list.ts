/**
 * The open connections (or tunnels) of one listener: a plain array where each member keeps its own
 * index, so adding and removing are O(1) and allocate nothing.
 *
 * Not a `Set`, for the reason docs/ARCHITECTURE.md gives under "Memory rules": a listener lives in
 * V8's old generation, and a Set there that sees one add and one delete per connection rehashes every
 * few dozen connections, each replaced table linked to the next and still holding its entries; the
 * scavenger then keeps every closed connection (its socket, its buffers) alive until a major GC.
 * Measured with `wrk -H "Connection: close"` through an HTTP/1.1 listener: ~660 KB promoted per
 * scavenge, 4 ms mean pauses, with the Set.
 */
export interface Member {
  /** Index in its MemberList, -1 while in none. Start it at -1; only the list writes it. */
  memberSlot: number;
}

export class MemberList<T extends Member> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  add(item: T): void {
    if (item.memberSlot >= 0 && this.items[item.memberSlot] === item) return;
    item.memberSlot = this.items.length;
    this.items.push(item);
  }

  /** False when `item` is not a member. */
  delete(item: T): boolean {
    const i = item.memberSlot;
    const items = this.items;
    if (i < 0 || items[i] !== item) return false;
    item.memberSlot = -1;
    const last = items.pop()!;
    if (last !== item) {
      items[i] = last;
      last.memberSlot = i;
    }
    return true;
  }

  has(item: T): boolean {
    const i = item.memberSlot;
    return i >= 0 && this.items[i] === item;
  }

  /** The members now, in a new array: safe to walk while they leave. */
  snapshot(): T[] {
    return this.items.slice();
  }
}
