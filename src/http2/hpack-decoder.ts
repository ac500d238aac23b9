import { Buffer } from 'node:buffer';
import { latin1Slice } from '../http1/latin1.ts';
import { NAME_OK, syntaxFlags, VALUE_OK } from './field-syntax.ts';
import { huffmanDecode } from './hpack-huffman.ts';
import { STATIC_COUNT, STATIC_NAMES, STATIC_VALUES } from './hpack-static-table.ts';

export type HpackError = 'compression' | 'too_large';

/** RFC 7541 §4.1: an entry's size counts 32 octets of overhead besides its name and value. */
const ENTRY_OVERHEAD = 32;
/** Integers above this are refused: no legitimate index, length or table size comes near it. */
const INT_MAX = 0x7fffffff;

/** Every static entry's name and value pass the field rules (they do: checked once here, not assumed). */
const STATIC_CLEAN = STATIC_NAMES.every(
  (n, i) => i === 0 || ((syntaxFlags(n) & NAME_OK) !== 0 && (syntaxFlags(STATIC_VALUES[i]!) & VALUE_OK) !== 0),
);

function entryClean(name: string, value: string): boolean {
  return (syntaxFlags(name) & NAME_OK) !== 0 && (syntaxFlags(value) & VALUE_OK) !== 0;
}

/**
 * The decoding side of an HPACK context (RFC 7541): the peer's encoder drives our copy of the
 * dynamic table, so every block must be processed in order and in full.
 */
export class HpackDecoder {
  /** Our advertised SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for. */
  private maxAllowed: number;
  /** The table's current maximum size, as last set by the peer's size update. */
  private capacity: number;
  private readonly maxListSize: number;
  /** Our setting went below `capacity`: the next block must start with a size update at most `requiredMax`. */
  private updateRequired = false;
  private requiredMax = 0;

  // The dynamic table as a ring: entry k (1 = newest) is at slot (tail - k) & mask, its name at
  // ring[2 * slot] and its value after it. One array, made at the first insert: every idle
  // connection keeps its decoder.
  private ring: string[] | null = null;
  private mask = -1;
  private tail = 0;
  private count = 0;
  private size = 0;

  /** Read position in the current block; a field so that integer reads can advance it. */
  private p = 0;

  /**
   * Every field of the last block decoded passes the character rules of RFC 9113 §8.2.1
   * (field-syntax.ts), so its owner need not scan them again; false: not known, the owner checks.
   * Known per string as it is decoded (and kept with memoised strings), so a block of strings seen
   * before costs no scan at all.
   */
  clean = true;
  /** Dynamic table entries that break those rules: while any is in the table, its references are not known clean. */
  private dirty = 0;
  /** syntaxFlags of the string readString last returned. */
  private strFlags = 0;

  /** Decoded short literals by their encoded octets (see `memoString`); null when not enabled. */
  private memo: StringMemo | null = null;

  /** Bumped by every change to the table (an insert, an eviction, a size update). */
  private changes = 0;
  // What the block being decoded did: whether it referred to the dynamic table, whether it updated its
  // size, and where in the list are the fields it inserted (~position when the field is not clean).
  private refsTable = false;
  private sizeUpdated = false;
  private insertAt: number[] = [];
  private inserts = 0;
  // The last header block kept whole (with the memo enabled): its octets, the list they made and
  // the fields they inserted. Equal octets make the same list again when the block did not refer to
  // the table (literals and static references: nginx's blocks), or when the table has not changed
  // since; `decodeList` then hands out the same list (read-only for everyone) and makes the same
  // inserts. A backend answers one resource with the same block response after response (nginx's
  // Date changes once a second).
  private blockOctets: Uint8Array | null = null;
  /** 0: nothing kept. */
  private blockLength = 0;
  private blockList: readonly string[] = [];
  private blockClean = true;
  private blockRefsTable = false;
  /** `changes` after the kept block: it answers again only then when it referred to the table. */
  private blockChanges = -1;
  private blockInsertAt: number[] = [];
  /** Blocks decoded since the kept one last answered: past BLOCK_TRIES, one in BLOCK_RETRY is kept. */
  private blockMisses = 0;

  /**
   * maxTableSize is also the table's starting maximum, so a value below the protocol default of
   * 4096 is only right once the peer is known to use it; otherwise construct with 4096 and call
   * setMaxTableSize when the lower setting is acknowledged.
   *
   * `memoStrings`: remember short decoded literals by their encoded octets. For upstream connections:
   * a backend sends the same literals response after response (nginx: Date, Last-Modified, ETag,
   * Content-Length, as literals not indexed), each otherwise Huffman-decoded into a new string every
   * time. Per decoder, so one connection's values never answer for another's.
   */
  constructor(maxTableSize: number, maxListSize: number, memoStrings = false) {
    this.maxAllowed = maxTableSize;
    this.capacity = maxTableSize;
    this.maxListSize = maxListSize;
    if (memoStrings) this.memo = new StringMemo();
  }

  /** Current dynamic table size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** Number of entries in the dynamic table. */
  get entryCount(): number {
    return this.count;
  }

  /** Dynamic table entry k (1 = newest) as [name, value], for inspection. */
  entryAt(k: number): [string, string] | undefined {
    if (k < 1 || k > this.count) return undefined;
    const at = ((this.tail - k) & this.mask) * 2;
    return [this.ring![at]!, this.ring![at + 1]!];
  }

  setMaxTableSize(n: number): void {
    this.maxAllowed = n;
    // RFC 7541 §4.2: the encoder must then shrink its table in the next block. A raised limit needs
    // no update: the peer may keep its smaller table.
    if (n < this.capacity) {
      this.requiredMax = this.updateRequired ? Math.min(this.requiredMax, n) : n;
      this.updateRequired = true;
    }
  }

  /**
   * The fields of block[start, end) as a flat [name, value, ...] list, never to be changed by its
   * receiver: with the memo enabled, a block equal to the last one kept is answered with that list.
   */
  decodeList(block: Buffer, start: number, end: number): readonly string[] | HpackError {
    const len = end - start;
    // Past BLOCK_TRIES misses in a row, only the block right after a kept one is compared.
    const misses = this.blockMisses;
    if (
      (misses < BLOCK_TRIES || misses % BLOCK_RETRY === 1) &&
      len === this.blockLength &&
      (!this.blockRefsTable || this.changes === this.blockChanges) &&
      !this.updateRequired &&
      sameOctets(this.blockOctets!, block, start, len)
    ) {
      return this.again();
    }
    const out: string[] = [];
    const err = this.decode(block, start, end, out);
    if (err !== null) return err;
    if (
      this.memo !== null &&
      len <= BLOCK_MAX_OCTETS &&
      len > 0 &&
      !this.sizeUpdated &&
      (!this.refsTable || this.inserts === 0)
    ) {
      const misses = this.blockMisses++;
      if (misses < BLOCK_TRIES || misses % BLOCK_RETRY === 0) this.keepBlock(block, start, len, out);
    }
    return out;
  }

  /** The kept block once more: its inserts made again, its list handed out. */
  private again(): readonly string[] {
    const list = this.blockList;
    const at = this.blockInsertAt;
    for (let k = 0; k < at.length; k++) {
      const p = at[k]!;
      if (p >= 0) this.insert(list[p]!, list[p + 1]!, true);
      else this.insert(list[~p]!, list[~p + 1]!, false);
    }
    // (blockChanges stays: it only matters for a block that refers to the table, which is never kept with inserts.)
    this.blockMisses = 0;
    this.clean = this.blockClean;
    return list;
  }

  private keepBlock(block: Buffer, start: number, len: number, list: readonly string[]): void {
    const octets = (this.blockOctets ??= new Uint8Array(BLOCK_MAX_OCTETS));
    for (let i = 0; i < len; i++) octets[i] = block[start + i]!;
    this.blockLength = len;
    this.blockList = list;
    this.blockClean = this.clean;
    this.blockRefsTable = this.refsTable;
    this.blockChanges = this.changes;
    const at = this.blockInsertAt;
    at.length = this.inserts;
    for (let k = 0; k < this.inserts; k++) at[k] = this.insertAt[k]!;
  }

  decode(block: Uint8Array, start: number, end: number, out: string[]): HpackError | null {
    const buf = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    this.p = start;
    let listSize = 0;
    let tooLarge = false;
    let fieldSeen = false;
    let smallestUpdate = INT_MAX;
    let clean = true;
    this.refsTable = false;
    this.sizeUpdated = false;
    this.inserts = 0;
    while (this.p < end) {
      const b = buf[this.p]!;
      if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field.
        if (fieldSeen) return 'compression';
        const n = this.readInt(buf, end, 0x1f);
        if (n < 0 || n > this.maxAllowed) return 'compression';
        if (n < smallestUpdate) smallestUpdate = n;
        this.changes++;
        this.sizeUpdated = true;
        this.capacity = n;
        this.evictTo(n);
        continue;
      }
      if (!fieldSeen) {
        if (this.updateRequired && smallestUpdate > this.requiredMax) return 'compression';
        this.updateRequired = false;
        fieldSeen = true;
      }
      let name: string;
      let value: string;
      let index = false;
      if (b & 0x80) {
        const i = this.readInt(buf, end, 0x7f);
        if (i <= 0) return 'compression';
        if (i <= STATIC_COUNT) {
          name = STATIC_NAMES[i]!;
          value = STATIC_VALUES[i]!;
          if (!STATIC_CLEAN) clean = false;
        } else {
          const k = i - STATIC_COUNT;
          if (k > this.count) return 'compression';
          this.refsTable = true;
          const at = ((this.tail - k) & this.mask) * 2;
          name = this.ring![at]!;
          value = this.ring![at + 1]!;
          if (this.dirty !== 0) clean = false;
        }
      } else {
        // Literal (§6.2): with incremental indexing has a 6-bit name index, without indexing and
        // never indexed a 4-bit one; the latter two decode alike.
        index = (b & 0x40) !== 0;
        const i = this.readInt(buf, end, index ? 0x3f : 0x0f);
        if (i < 0) return 'compression';
        let nameClean = STATIC_CLEAN;
        if (i === 0) {
          const s = this.readString(buf, end);
          if (s === null) return 'compression';
          name = s;
          nameClean = (this.strFlags & NAME_OK) !== 0;
        } else if (i <= STATIC_COUNT) {
          name = STATIC_NAMES[i]!;
        } else {
          const k = i - STATIC_COUNT;
          if (k > this.count) return 'compression';
          this.refsTable = true;
          name = this.ring![((this.tail - k) & this.mask) * 2]!;
          nameClean = this.dirty === 0 || (syntaxFlags(name) & NAME_OK) !== 0;
        }
        const s = this.readString(buf, end, i);
        if (s === null) return 'compression';
        value = s;
        const fieldClean = nameClean && (this.strFlags & VALUE_OK) !== 0;
        if (!fieldClean) clean = false;
        if (index) {
          this.insertAt[this.inserts++] = fieldClean ? out.length : ~out.length;
          this.insert(name, value, fieldClean);
        }
      }
      if (!tooLarge) {
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        // Past the limit the block is still decoded, to keep the table in step, but not kept.
        if (listSize > this.maxListSize) tooLarge = true;
        else out.push(name, value);
      }
    }
    if (!fieldSeen) {
      // A block of only size updates (or an empty one) still owes a required update.
      if (this.updateRequired && smallestUpdate > this.requiredMax) return 'compression';
      this.updateRequired = false;
    }
    this.clean = clean;
    return tooLarge ? 'too_large' : null;
  }

  /**
   * The integer (§5.1) at this.p whose prefix is the low bits given by `mask`; -1 if it is
   * truncated or above INT_MAX.
   */
  private readInt(buf: Buffer, end: number, mask: number): number {
    let n = buf[this.p++]! & mask;
    if (n < mask) return n;
    let shift = 0;
    for (;;) {
      if (this.p >= end || shift > 28) return -1;
      const b = buf[this.p++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (n > INT_MAX) return -1;
      if ((b & 0x80) === 0) return n;
      shift += 7;
    }
  }

  /**
   * The string literal (§5.2) at this.p, or null if truncated or badly Huffman-coded. `nameIndex`: a
   * value's field name by index (0: a literal name, or this is the name), which places it in the memo.
   */
  private readString(buf: Buffer, end: number, nameIndex = 0): string | null {
    if (this.p >= end) return null;
    const huffman = (buf[this.p]! & 0x80) !== 0;
    const len = this.readInt(buf, end, 0x7f);
    if (len < 0 || len > end - this.p) return null;
    const s = this.p;
    this.p += len;
    if (len === 0) {
      this.strFlags = VALUE_OK; // an empty value is fine, an empty name is not
      return '';
    }
    const memo = this.memo;
    if (memo !== null && len <= MEMO_MAX_OCTETS) {
      const v = memo.get(buf, s, len, huffman, nameIndex);
      this.strFlags = memo.flags;
      return v;
    }
    const v = huffman ? huffmanDecode(buf, s, s + len) : latin1Slice(buf, s, s + len);
    if (v !== null) this.strFlags = syntaxFlags(v);
    return v;
  }

  private insert(name: string, value: string, clean: boolean): void {
    this.changes++;
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    // §4.4: an entry larger than the table empties it and is not added.
    if (entrySize > this.capacity) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.capacity - entrySize);
    if (!clean) this.dirty++;
    if (this.count === this.mask + 1) this.grow();
    const at = (this.tail & this.mask) * 2;
    this.ring![at] = name;
    this.ring![at + 1] = value;
    this.tail = (this.tail + 1) & this.mask;
    this.count++;
    this.size += entrySize;
  }

  /** Drops oldest entries until the table holds at most `limit` octets. */
  private evictTo(limit: number): void {
    const ring = this.ring;
    while (this.size > limit) {
      const at = ((this.tail - this.count) & this.mask) * 2;
      this.size -= ring![at]!.length + ring![at + 1]!.length + ENTRY_OVERHEAD;
      if (this.dirty !== 0 && !entryClean(ring![at]!, ring![at + 1]!)) this.dirty--;
      // Release the strings: a connection's table can outlive many requests.
      ring![at] = '';
      ring![at + 1] = '';
      this.count--;
    }
  }

  /** Doubles the ring (4 entries at first), laying the entries out oldest first from slot 0. */
  private grow(): void {
    const cap = this.ring === null ? 4 : (this.mask + 1) * 2;
    // Exactly sized (an array grown by push keeps spare room).
    const ring = new Array<string>(cap * 2).fill('');
    for (let k = this.count; k >= 1; k--) {
      const at = ((this.tail - k) & this.mask) * 2;
      const to = (this.count - k) * 2;
      ring[to] = this.ring![at]!;
      ring[to + 1] = this.ring![at + 1]!;
    }
    this.ring = ring;
    this.mask = cap - 1;
    this.tail = this.count;
  }
}

/** Blocks longer than this are never kept whole (a response head with cookies or long values rarely repeats). */
const BLOCK_MAX_OCTETS = 256;
/** Blocks kept one after another without an answer, before keeping only one in BLOCK_RETRY. */
const BLOCK_TRIES = 8;
const BLOCK_RETRY = 64;

function sameOctets(kept: Uint8Array, buf: Buffer, start: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (kept[i] !== buf[start + i]) return false;
  return true;
}

/** Literals longer than this (encoded) are decoded every time. */
const MEMO_MAX_OCTETS = 48;
/** Slots of a memo (a power of two). */
const MEMO_SLOTS = 32;
/** A string's first slot is the top bits of a 32-bit hash (32 - log2(MEMO_SLOTS)), its second the five below. */
const MEMO_SHIFT = 27;

/**
 * Decoded strings by their encoded octets (and whether Huffman-coded). Each string has two slots
 * (from one hash) and takes the one used less recently: two of a response's values landing on one
 * slot (with 7 values in 32 slots, as likely as not) would otherwise evict each other on every
 * response. A slot answers only when the octets compare equal, so a collision costs a decode, never
 * a wrong value. Memory: about 2 KiB per decoder that has one (upstream connections only).
 */
class StringMemo {
  private readonly octets = new Uint8Array(MEMO_SLOTS * MEMO_MAX_OCTETS);
  /** Encoded length + 1 (0: empty), with bit 8 set for Huffman. */
  private readonly keys = new Uint16Array(MEMO_SLOTS);
  private readonly values: string[] = new Array<string>(MEMO_SLOTS).fill('');
  /** syntaxFlags of each slot's string, computed once when it is decoded. */
  private readonly slotFlags = new Uint8Array(MEMO_SLOTS);
  /**
   * When each slot last answered or was filled (a count of look-ups, kept a small integer: it wraps
   * after 2^31, which at worst makes one choice of a slot to replace the wrong one).
   */
  private readonly used = new Int32Array(MEMO_SLOTS);
  private tick = 0;
  /** syntaxFlags of the string get() last returned. */
  flags = 0;

  /**
   * The string of these octets. `nameIndex` > 0: a value of the field with that name index, placed
   * by that index and its length (a backend's Date or ETag keeps its place while its octets change,
   * and no pass over the octets to hash them); 0: placed by a hash of the octets.
   */
  get(buf: Buffer, start: number, len: number, huffman: boolean, nameIndex: number): string | null {
    let h: number;
    if (nameIndex > 0) h = Math.imul(nameIndex ^ (len << 8) ^ (huffman ? 0x10000 : 0), 0x9e3779b1);
    else {
      h = huffman ? 0x811c9dc5 : 0x050c5d1f;
      for (let i = start; i < start + len; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
      h ^= h << 15;
    }
    const first = h >>> MEMO_SHIFT;
    let second = (h >>> (MEMO_SHIFT - 5)) & (MEMO_SLOTS - 1);
    if (second === first) second ^= 1;
    const key = (len + 1) | (huffman ? 0x100 : 0);
    const tick = (this.tick = (this.tick + 1) | 0);
    if (this.holds(first, key, buf, start, len)) return this.hit(first, tick);
    if (this.holds(second, key, buf, start, len)) return this.hit(second, tick);
    const value = huffman ? huffmanDecode(buf, start, start + len) : latin1Slice(buf, start, start + len);
    if (value === null) return null;
    const slot = this.used[first]! <= this.used[second]! ? first : second;
    this.used[slot] = tick;
    this.octets.set(buf.subarray(start, start + len), slot * MEMO_MAX_OCTETS);
    this.keys[slot] = key;
    this.values[slot] = value;
    this.flags = this.slotFlags[slot] = syntaxFlags(value);
    return value;
  }

  private holds(slot: number, key: number, buf: Buffer, start: number, len: number): boolean {
    if (this.keys[slot] !== key) return false;
    const octets = this.octets;
    const at = slot * MEMO_MAX_OCTETS;
    for (let i = 0; i < len; i++) if (octets[at + i] !== buf[start + i]) return false;
    return true;
  }

  private hit(slot: number, tick: number): string {
    this.used[slot] = tick;
    this.flags = this.slotFlags[slot]!;
    return this.values[slot]!;
  }
}
