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
/** Blocks longer than this are never kept for repeating (see HpackEncoder.keptFields). */
const KEEP_MAX_OCTETS = 128;
/** Blocks kept one after another without being repeated, before keeping only one in KEEP_RETRY. */
const KEEP_TRIES = 8;
const KEEP_RETRY = 64;
/** Up to this many entries a name is found by scanning the ring; past it, through a map. */
const SCAN_MAX = 8;

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

  // The dynamic table as a ring of entries, each known by its insertion sequence number; entry k
  // (1 = newest) has sequence inserted - k and lives at slot (inserted - k) & mask. One array holds
  // every slot's name, value and the sequence of the previous entry with the same name (-1: none),
  // allocated at the first insert: every idle connection keeps its encoder, and one array and one map
  // (not three arrays and a map of maps) is about 1 KB less per connection.
  private ring: (string | number)[] | null = null;
  private mask = -1;
  private inserted = 0;
  private count = 0;
  private size = 0;
  // Look-ups by name, then along that name's entries (newest first; as many as the table holds of
  // that name, usually one or two), rather than by one "name\0value" key: a key built per field is a
  // new string to flatten and hash on every look-up (measured: most of the encoding time), while the
  // fields' own strings cache their hashes. A small table (most connections') is scanned for the
  // name: as quick as a map look-up, and no map to keep.
  /** name -> sequence of the newest entry with that name, once the table held more than SCAN_MAX. */
  private byName: Map<string, number> | null = null;

  // The last block that changed nothing in the table (every field found in it, or sent without
  // indexing), as its fields and octets: while the table stays as it was (no insert, no eviction, no
  // size update), the same fields encode to the same octets, which `repeatLength`/`writeKept` give
  // again without a look-up per field. Requests through one upstream connection repeat their fields
  // (the method, scheme, authority, often the path, the forwarding fields of one client).
  private keptFields: string[] | null = null;
  private keptOctets: Uint8Array | null = null;
  /** 0: nothing kept. */
  private keptLength = 0;
  private keptInserted = -1;
  private keptCount = -1;
  /** Blocks encoded since the kept one was last given again: past KEEP_TRIES, one in KEEP_RETRY is kept. */
  private keepMisses = 0;

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
    const start = pos;
    const inserted = this.inserted;
    const updates = this.updatePending;
    if (updates) pos = this.writeUpdates(buf, pos);
    for (let i = 0; i + 1 < fields.length; i += 2) pos = this.encodeField(fields[i]!, fields[i + 1]!, buf, pos);
    if (!updates && this.inserted === inserted && pos - start <= KEEP_MAX_OCTETS) {
      const misses = this.keepMisses++;
      if (misses < KEEP_TRIES || misses % KEEP_RETRY === 0) this.keep(fields, buf, start, pos);
    }
    return pos;
  }

  /**
   * The length of the block `fields` would encode to when it is the kept one again (same fields, the
   * table unchanged since), else -1. Then `writeKept` writes it.
   */
  repeatLength(fields: readonly string[]): number {
    const kept = this.keptFields;
    // Past KEEP_TRIES misses in a row, only the block right after a kept one is compared.
    const misses = this.keepMisses;
    if (
      (misses >= KEEP_TRIES && misses % KEEP_RETRY !== 1) ||
      kept === null ||
      this.keptLength === 0 ||
      this.updatePending ||
      this.inserted !== this.keptInserted ||
      this.count !== this.keptCount ||
      fields.length !== kept.length
    )
      return -1;
    for (let i = 0; i < fields.length; i++) if (fields[i] !== kept[i]) return -1;
    return this.keptLength;
  }

  /** Writes the kept block at out[pos] (after repeatLength said it applies); returns the position after it. */
  writeKept(out: Uint8Array, pos: number): number {
    const octets = this.keptOctets!;
    const n = this.keptLength;
    for (let i = 0; i < n; i++) out[pos + i] = octets[i]!;
    this.keepMisses = 0;
    return pos + n;
  }

  private keep(fields: readonly string[], buf: Uint8Array, start: number, end: number): void {
    // A copy of the list: the caller may reuse or change its array.
    const kept = (this.keptFields ??= []);
    kept.length = 0;
    for (let i = 0; i < fields.length; i++) kept.push(fields[i]!);
    const octets = (this.keptOctets ??= new Uint8Array(KEEP_MAX_OCTETS));
    for (let i = start; i < end; i++) octets[i - start] = buf[i]!;
    this.keptLength = end - start;
    this.keptInserted = this.inserted;
    this.keptCount = this.count;
  }

  encode(fields: readonly string[]): Buffer {
    const buf = Buffer.allocUnsafe(this.bound(fields));
    return buf.subarray(0, this.encodeInto(fields, buf, 0));
  }

  /** The most bytes the block of `fields` can take (each field's name and value raw, plus integer overheads). */
  bound(fields: readonly string[]): number {
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
    const newest = this.newestOf(name);
    if (newest >= 0) {
      // The newest entry with this name and value, along the chain of entries with this name.
      const ring = this.ring!;
      const oldest = this.inserted - this.count;
      for (let seq = newest; seq >= oldest; ) {
        const at = (seq & this.mask) * 3;
        if (ring[at + 1] === value) return writeInt(out, pos, 0x80, 0x7f, STATIC_COUNT + this.inserted - seq);
        seq = ring[at + 2] as number;
      }
    }

    let nameIndex = staticNameIndex(name);
    if (nameIndex === 0 && newest >= 0) nameIndex = STATIC_COUNT + this.inserted - newest;
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

  /** The sequence of the newest entry named `name`, or -1. */
  private newestOf(name: string): number {
    if (this.byName !== null) return this.byName.get(name) ?? -1;
    const ring = this.ring;
    for (let seq = this.inserted - 1; seq >= this.inserted - this.count; seq--) {
      if (ring![(seq & this.mask) * 3] === name) return seq;
    }
    return -1;
  }

  private insert(name: string, value: string, entrySize: number): void {
    this.evictTo(this.capacity - entrySize);
    if (this.count === this.mask + 1) this.grow();
    const prev = this.newestOf(name);
    const seq = this.inserted++;
    const at = (seq & this.mask) * 3;
    const ring = this.ring!;
    ring[at] = name;
    ring[at + 1] = value;
    ring[at + 2] = prev;
    this.count++;
    this.size += entrySize;
    if (this.byName !== null) this.byName.set(name, seq);
    else if (this.count > SCAN_MAX) {
      // Oldest first: each name ends up with its newest sequence.
      const byName = new Map<string, number>();
      for (let q = this.inserted - this.count; q < this.inserted; q++)
        byName.set(ring[(q & this.mask) * 3] as string, q);
      this.byName = byName;
    }
  }

  private evictTo(limit: number): void {
    const ring = this.ring;
    while (this.size > limit) {
      const seq = this.inserted - this.count;
      const at = (seq & this.mask) * 3;
      const name = ring![at] as string;
      const value = ring![at + 1] as string;
      // The oldest entry: when it is also the newest of its name, the name leaves the map. (Newer
      // entries of the name stop their chain at the oldest sequence still in the table.)
      if (this.byName !== null && this.byName.get(name) === seq) this.byName.delete(name);
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      ring![at] = '';
      ring![at + 1] = '';
      this.count--;
    }
  }

  /** Doubles the ring (4 entries at first); slots are sequence numbers masked, so entries move to their new slots. */
  private grow(): void {
    const cap = this.ring === null ? 4 : (this.mask + 1) * 2;
    // Exactly sized (an array grown by push keeps spare room).
    const ring = new Array<string | number>(cap * 3);
    for (let i = 0; i < ring.length; i += 3) {
      ring[i] = '';
      ring[i + 1] = '';
      ring[i + 2] = -1;
    }
    const mask = cap - 1;
    for (let seq = this.inserted - this.count; seq < this.inserted; seq++) {
      const from = (seq & this.mask) * 3;
      const to = (seq & mask) * 3;
      ring[to] = this.ring![from]!;
      ring[to + 1] = this.ring![from + 1]!;
      ring[to + 2] = this.ring![from + 2]!;
    }
    this.ring = ring;
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
