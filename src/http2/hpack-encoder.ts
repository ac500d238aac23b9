import { Buffer } from 'node:buffer';
import { putLatin1 } from '../http1/latin1.ts';
import { huffmanEncodedLength, huffmanEncodeInto } from './hpack-huffman.ts';
import { STATIC_COUNT, staticFieldIndex, staticNameIndex } from './hpack-static-table.ts';

const ENTRY_OVERHEAD = 32;
/** The protocol's initial SETTINGS_HEADER_TABLE_SIZE, which the peer's decoder starts with. */
const DEFAULT_TABLE_SIZE = 4096;
/** Worst case of one prefixed integer below 2^32: the prefix octet and five continuation octets. */
const INT_BOUND = 6;

/** Values an attacker who can add requests to the connection must not be able to probe (RFC 7541 §7.1.3). */
const SENSITIVE = new Set(['authorization', 'proxy-authorization', 'set-cookie']);
/** Short cookies are guessable by the compression side channel; long ones are worth indexing. */
const COOKIE_INDEX_MIN = 20;
/**
 * Fields whose values change from one message to the next: indexing them only evicts useful entries.
 * (Date is not one: responses within the same second share it, and indexing it saves ~13 % on the
 * hpack-test-case corpus.)
 */
const UNIQUE = new Set([
  'content-length',
  'etag',
  'last-modified',
  'if-none-match',
  'if-modified-since',
  'x-request-id',
  'age',
]);
/** Short paths ("/", "/api/health") repeat; long ones carry query strings that rarely do. */
const PATH_INDEX_MAX = 48;

/**
 * The encoding side of an HPACK context (RFC 7541): chooses representations and mirrors the
 * peer decoder's dynamic table.
 */
export class HpackEncoder {
  /** Our own limit on the table, whatever the peer allows. */
  private readonly ownCap: number;
  private capacity = DEFAULT_TABLE_SIZE;
  /** A size update is owed at the start of the next block: the smallest size since the last one, then the final. */
  private updatePending = false;
  private updateMin = 0;

  // The dynamic table as a ring of entries, each known by its insertion sequence number;
  // entry k (1 = newest) has sequence inserted - k and lives at slot (inserted - k) & mask.
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  private sizes: number[] = new Array<number>(16).fill(0);
  private mask = 15;
  private inserted = 0;
  private count = 0;
  private size = 0;
  // Look-ups by name, then value, rather than by one "name\0value" key: a key built per field is a
  // new string to flatten and hash on every look-up (measured: most of the encoding time), while
  // the fields' own strings cache their hashes.
  /** name -> value -> sequence of the newest entry with that name and value. */
  private readonly byField = new Map<string, Map<string, number>>();
  /** name -> sequence of the newest entry with that name. */
  private readonly byName = new Map<string, number>();

  constructor(maxTableSize = DEFAULT_TABLE_SIZE) {
    this.ownCap = maxTableSize;
    this.setMaxTableSize(DEFAULT_TABLE_SIZE);
  }

  /** Current dynamic table size in octets. */
  get tableSize(): number {
    return this.size;
  }

  setMaxTableSize(n: number): void {
    const next = Math.min(n, this.ownCap);
    if (next === this.capacity && !this.updatePending) return;
    // Only sizes set since the last block count towards the dip, not the size before them.
    this.updateMin = this.updatePending ? Math.min(this.updateMin, next) : next;
    this.capacity = next;
    this.updatePending = true;
  }

  /**
   * Writes the block at out[pos]; returns the position after it, or -1 without writing anything
   * or changing state when the room left is below the block's worst-case size (each field's
   * name and value raw, plus integer overheads), so the caller can retry with a bigger buffer.
   */
  encodeInto(fields: readonly string[], out: Uint8Array, pos: number): number {
    if (out.length - pos < this.bound(fields)) return -1;
    const buf = Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    if (this.updatePending) pos = this.writeUpdates(buf, pos);
    for (let i = 0; i + 1 < fields.length; i += 2) pos = this.encodeField(fields[i]!, fields[i + 1]!, buf, pos);
    return pos;
  }

  encode(fields: readonly string[]): Buffer {
    const buf = Buffer.allocUnsafe(this.bound(fields));
    return buf.subarray(0, this.encodeInto(fields, buf, 0));
  }

  private bound(fields: readonly string[]): number {
    let n = 2 * INT_BOUND;
    for (let i = 0; i < fields.length; i++) n += fields[i]!.length + INT_BOUND;
    return n + (fields.length >> 1) * INT_BOUND;
  }

  private writeUpdates(out: Buffer, pos: number): number {
    // RFC 7541 §4.2: if the size dipped below its final value since the last block, the dip is
    // signalled first so that the decoder evicts as the setting required.
    if (this.updateMin < this.capacity) {
      pos = writeInt(out, pos, 0x20, 0x1f, this.updateMin);
      this.evictTo(this.updateMin);
    }
    pos = writeInt(out, pos, 0x20, 0x1f, this.capacity);
    this.evictTo(this.capacity);
    this.updatePending = false;
    return pos;
  }

  private encodeField(name: string, value: string, out: Buffer, pos: number): number {
    const s = staticFieldIndex(name, value);
    if (s !== 0) return writeInt(out, pos, 0x80, 0x7f, s);
    const seq = this.byField.get(name)?.get(value);
    if (seq !== undefined) return writeInt(out, pos, 0x80, 0x7f, STATIC_COUNT + this.inserted - seq);

    let nameIndex = staticNameIndex(name);
    if (nameIndex === 0) {
      const n = this.byName.get(name);
      if (n !== undefined) nameIndex = STATIC_COUNT + this.inserted - n;
    }
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (SENSITIVE.has(name) || (name === 'cookie' && value.length < COOKIE_INDEX_MIN)) {
      // Never indexed (§6.2.3): the representation also tells intermediaries not to index it.
      pos = writeInt(out, pos, 0x10, 0x0f, nameIndex);
    } else if (
      UNIQUE.has(name) ||
      (name === ':path' && value.length > PATH_INDEX_MAX) ||
      entrySize * 2 > this.capacity
    ) {
      pos = writeInt(out, pos, 0x00, 0x0f, nameIndex);
    } else {
      // The name index is taken before insert() renumbers the table.
      pos = writeInt(out, pos, 0x40, 0x3f, nameIndex);
      this.insert(name, value, entrySize);
    }
    if (nameIndex === 0) pos = writeString(out, pos, name);
    return writeString(out, pos, value);
  }

  private insert(name: string, value: string, entrySize: number): void {
    this.evictTo(this.capacity - entrySize);
    if (this.count === this.names.length) this.grow();
    const seq = this.inserted++;
    const slot = seq & this.mask;
    this.names[slot] = name;
    this.values[slot] = value;
    this.sizes[slot] = entrySize;
    this.count++;
    this.size += entrySize;
    const byValue = this.byField.get(name);
    if (byValue === undefined) this.byField.set(name, new Map([[value, seq]]));
    else byValue.set(value, seq);
    this.byName.set(name, seq);
  }

  private evictTo(limit: number): void {
    while (this.size > limit) {
      const seq = this.inserted - this.count;
      const slot = seq & this.mask;
      const name = this.names[slot]!;
      const value = this.values[slot]!;
      // A newer duplicate owns the map entry by now; only the newest entry's own mapping goes.
      const byValue = this.byField.get(name)!;
      if (byValue.get(value) === seq) {
        byValue.delete(value);
        if (byValue.size === 0) this.byField.delete(name);
      }
      if (this.byName.get(name) === seq) this.byName.delete(name);
      this.size -= this.sizes[slot]!;
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }

  /** Doubles the ring; slots are sequence numbers masked, so entries move to their new slots. */
  private grow(): void {
    const cap = this.names.length * 2;
    const names = new Array<string>(cap).fill('');
    const values = new Array<string>(cap).fill('');
    const sizes = new Array<number>(cap).fill(0);
    const mask = cap - 1;
    for (let seq = this.inserted - this.count; seq < this.inserted; seq++) {
      names[seq & mask] = this.names[seq & this.mask]!;
      values[seq & mask] = this.values[seq & this.mask]!;
      sizes[seq & mask] = this.sizes[seq & this.mask]!;
    }
    this.names = names;
    this.values = values;
    this.sizes = sizes;
    this.mask = mask;
  }
}

/** A prefixed integer (§5.1): `flags` in the bits above the prefix `mask`. */
function writeInt(out: Uint8Array, pos: number, flags: number, mask: number, n: number): number {
  if (n < mask) {
    out[pos++] = flags | n;
    return pos;
  }
  out[pos++] = flags | mask;
  n -= mask;
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[pos++] = n;
  return pos;
}

/** A string literal (§5.2), Huffman-coded only when that is strictly shorter. */
function writeString(out: Buffer, pos: number, s: string): number {
  const h = huffmanEncodedLength(s);
  if (h < s.length) {
    pos = writeInt(out, pos, 0x80, 0x7f, h);
    return huffmanEncodeInto(s, out, pos);
  }
  pos = writeInt(out, pos, 0x00, 0x7f, s.length);
  if (s.length < 16) {
    for (let i = 0; i < s.length; i++) out[pos++] = s.charCodeAt(i);
    return pos;
  }
  return putLatin1(out, pos, s);
}
