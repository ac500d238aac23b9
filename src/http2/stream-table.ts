import type { Http2Stream } from './stream.ts';

/**
 * A connection's open streams by id: an open-addressing table (linear probing, backward-shift
 * deletion) over one plain array, instead of a `Map`.
 *
 * Why not a Map: a connection lives long, so its Map ends up in V8's old generation, and a Map that
 * sees one insertion and one deletion per request rehashes every few dozen requests. V8 links each
 * replaced (obsolete) hash table to its successor for live iterators and leaves its entries in
 * place; the first obsolete table in old space is dead but the scavenger cannot know it, so every
 * later table, every stream in them and everything those streams reach (the request's leg, fields,
 * response head) survives each scavenge and is promoted, until a major GC. Measured on h2-upstream:
 * about 1.8 MB promoted per scavenge (4-13 ms pauses, the p99) against ~20 KB for the HTTP/1.1 pool.
 * A plain array has no such link: a slot cleared on deletion holds nothing.
 *
 * Stream ids of one connection share a parity and mostly rise one by one, so `id >>> 1` spreads them
 * over consecutive slots and probes are rare.
 */
export class StreamTable {
  /** Power of two; 0 while no stream is open (an idle connection holds no array). */
  private slots: (Http2Stream | null)[] = NO_SLOTS;
  private mask = -1;
  size = 0;

  get(id: number): Http2Stream | undefined {
    const slots = this.slots;
    if (this.size === 0) return undefined;
    const mask = this.mask;
    for (let i = (id >>> 1) & mask; ; i = (i + 1) & mask) {
      const s = slots[i];
      if (s === null || s === undefined) return undefined;
      if (s.id === id) return s;
    }
  }

  /** Adds `s` (its id must not be in the table). */
  add(s: Http2Stream): void {
    if (this.slots === NO_SLOTS) this.resize(MIN_CAPACITY);
    else if ((this.size + 1) * 4 > this.slots.length * 3) this.resize(this.slots.length * 2);
    this.place(s);
    this.size++;
  }

  /** Removes the stream with `id`; false when it is not there. */
  delete(id: number): boolean {
    const slots = this.slots;
    if (this.size === 0) return false;
    const mask = this.mask;
    let i = (id >>> 1) & mask;
    for (;;) {
      const s = slots[i];
      if (s === null || s === undefined) return false;
      if (s.id === id) break;
      i = (i + 1) & mask;
    }
    // Backward shift: pull later members of the probe run into the hole so lookups need no tombstones.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const s = slots[j];
      if (s === null || s === undefined) break;
      const home = (s.id >>> 1) & mask;
      // `s` may move to the hole when its home is not in the cyclic range (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        slots[hole] = s;
        hole = j;
      }
    }
    slots[hole] = null;
    this.size--;
    if (this.size === 0) {
      this.slots = NO_SLOTS;
      this.mask = -1;
    } else if (this.slots.length > MIN_CAPACITY && this.size * 8 < this.slots.length) {
      // After a burst: give the room back.
      this.resize(this.slots.length / 2);
    }
    return true;
  }

  /** The open streams, in a new array (safe to close them while walking it). */
  values(): Http2Stream[] {
    const out: Http2Stream[] = [];
    if (this.size === 0) return out;
    for (const s of this.slots) if (s !== null && s !== undefined) out.push(s);
    return out;
  }

  /** Drops every stream at once; returns them. */
  clear(): Http2Stream[] {
    const all = this.values();
    this.slots = NO_SLOTS;
    this.mask = -1;
    this.size = 0;
    return all;
  }

  private place(s: Http2Stream): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = (s.id >>> 1) & mask;
    while (slots[i] !== null) i = (i + 1) & mask;
    slots[i] = s;
  }

  private resize(capacity: number): void {
    const old = this.slots;
    this.slots = new Array<Http2Stream | null>(capacity).fill(null);
    this.mask = capacity - 1;
    for (const s of old) if (s !== null && s !== undefined) this.place(s);
  }
}

const MIN_CAPACITY = 8;
/** The slots of every empty table: shared, never written. */
const NO_SLOTS: (Http2Stream | null)[] = [];
