import { Buffer } from 'node:buffer';

/** Node's per-encoding Buffer methods (on every Buffer, undocumented): `write` and `toString` minus the encoding lookup. */
interface Latin1Methods {
  latin1Write(s: string, offset: number, length: number): number;
  latin1Slice(start: number, end: number): string;
}

const direct = typeof (Buffer.prototype as unknown as Partial<Latin1Methods>).latin1Write === 'function';

/**
 * A copy of a latin1 string as one sequential string. Why: strings built with `+` or a template
 * are rope ("cons") strings in V8, and Node's Buffer write takes its fast path only for sequential
 * one-byte strings; a rope is flattened on every write instead (measured: ~40 ns against ~16 ns for
 * a 20-byte field line). For strings the hot path builds once and writes on every request: status
 * lines, the Via line, forwarding blocks, Host lines.
 */
export function sequential(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/** buf[start, end) as a latin1 string. */
export function latin1Slice(buf: Buffer, start: number, end: number): string {
  return direct ? (buf as unknown as Latin1Methods).latin1Slice(start, end) : buf.toString('latin1', start, end);
}

/** Strings of at most this many bytes are looked up in the memo below; longer ones are always sliced. */
const RECENT_MAX = 128;
/** Slots of the memo (a power of two). */
const RECENT_SLOTS = 64;
/** Recently made strings, placed by their length and first and last bytes. */
const recent: string[] = new Array<string>(RECENT_SLOTS).fill('');
/** Each slot's string as bytes (RECENT_MAX per slot): compared byte to byte, cheaper than charCodeAt. */
const recentBytes = new Uint8Array(RECENT_SLOTS * RECENT_MAX);

/**
 * buf[start, end) as a latin1 string, answered from the strings lately made when one has these
 * bytes. Why: the same Host, request targets and field values come request after request, and a
 * slice is a call into C++ that costs as much as comparing ~100 bytes here (measured under callgrind:
 * ~700 instructions per call). A string is given back only when every byte compares equal, so a
 * collision costs a slice, never a wrong value; the strings are immutable, so sharing them between
 * connections is safe.
 */
export function latin1Recent(buf: Buffer, start: number, end: number): string {
  const len = end - start;
  if (len <= 0) return '';
  if (len > RECENT_MAX) return latin1Slice(buf, start, end);
  const slot = (len * 31 + buf[start]! * 7 + buf[end - 1]!) & (RECENT_SLOTS - 1);
  const s = recent[slot]!;
  const at = slot * RECENT_MAX;
  if (s.length === len) {
    let i = 0;
    while (i < len && recentBytes[at + i] === buf[start + i]) i++;
    if (i === len) return s;
  }
  const made = latin1Slice(buf, start, end);
  recent[slot] = made;
  for (let i = 0; i < len; i++) recentBytes[at + i] = buf[start + i]!;
  return made;
}

/** Writes latin1 `s` into `out` at `off`; returns the offset after it. */
export function putLatin1(out: Buffer, off: number, s: string): number {
  return off + (direct ? (out as unknown as Latin1Methods).latin1Write(s, off, s.length) : out.write(s, off, 'latin1'));
}

/**
 * The field line last made from a key, as a sequential string: most requests repeat the previous
 * one's Host, Content-Length or status, so the line is built (and made sequential) only on a change.
 */
export class LineMemo<K> {
  private key: K | undefined = undefined;
  private line = '';
  private readonly render: (key: K) => string;

  constructor(render: (key: K) => string) {
    this.render = render;
  }

  get(key: K): string {
    if (key !== this.key) {
      this.key = key;
      this.line = sequential(this.render(key));
    }
    return this.line;
  }
}
