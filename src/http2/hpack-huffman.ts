import { Buffer } from 'node:buffer';
import { latin1Slice } from '../http1/latin1.ts';

// The static Huffman code of RFC 7541 Appendix B: symbol i (0-255 octets, 256 = EOS) is the low
// HUFFMAN_LENGTHS[i] bits of HUFFMAN_CODES[i], most significant bit first on the wire.
// biome-ignore format: rows of the RFC table
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff,
];

// biome-ignore format: rows of the RFC table
export const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const LENGTHS = Uint8Array.from(HUFFMAN_LENGTHS);
const CODES = Uint32Array.from(HUFFMAN_CODES);

// Decoding walks the code tree a nibble at a time: one table look-up per 4 input bits instead of a
// branch per bit. A state is an internal node of the tree (a complete code with 257 leaves has 256),
// so a transition packs into one number: next state (bits 0-7), emitted octet (8-15), flags (16-18).
// No code is shorter than 5 bits, so a nibble completes at most one symbol.
const EMIT = 1 << 16;
/** The bits consumed since the last symbol are a valid end of string: at most 7 of them, all ones (EOS's prefix). */
const ACCEPT = 1 << 17;
const FAIL = 1 << 18;

const DECODE = buildDecodeTable();

function buildDecodeTable(): Uint32Array {
  // The tree as child links; a leaf is stored as -(symbol + 1), an internal node by its number.
  const child = new Int32Array(256 * 2);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = LENGTHS[sym]!;
    const code = CODES[sym]!;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const slot = node * 2 + ((code >>> i) & 1);
      if (child[slot] === 0) child[slot] = nodes++;
      node = child[slot]!;
    }
    child[node * 2 + (code & 1)] = -(sym + 1);
  }
  // The all-ones path from the root: nodes at depth 0-7 on it may end a string.
  const accepting = new Uint8Array(256);
  for (let node = 0, depth = 0; depth <= 7; depth++) {
    accepting[node] = 1;
    node = child[node * 2 + 1]!;
  }
  const table = new Uint32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[node * 2 + ((nibble >>> i) & 1)]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === EOS) {
          entry = FAIL;
          break;
        }
        entry = EMIT | (sym << 8);
        node = 0;
      }
      if (entry !== FAIL) entry |= node | (accepting[node] ? ACCEPT : 0);
      table[state * 16 + nibble] = entry;
    }
  }
  return table;
}

let scratch = Buffer.allocUnsafe(256);

/**
 * The Huffman-coded string src[start, end) as a latin1 string, or null if it is not a valid
 * encoding (RFC 7541 §5.2: EOS inside, padding longer than 7 bits or not all ones).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string | null {
  // 8 bits per input octet, at least 5 per symbol.
  const most = (((end - start) * 8) / 5) | 0;
  if (scratch.length < most) scratch = Buffer.allocUnsafe(Math.max(most, scratch.length * 2));
  const dst = scratch;
  let n = 0;
  let state = 0;
  let accept = ACCEPT;
  for (let i = start; i < end; i++) {
    const octet = src[i]!;
    let t = DECODE[state * 16 + (octet >>> 4)]!;
    if (t & FAIL) return null;
    if (t & EMIT) dst[n++] = (t >>> 8) & 0xff;
    state = t & 0xff;
    t = DECODE[state * 16 + (octet & 0xf)]!;
    if (t & FAIL) return null;
    if (t & EMIT) dst[n++] = (t >>> 8) & 0xff;
    state = t & 0xff;
    accept = t & ACCEPT;
  }
  if (accept === 0) return null;
  return n === 0 ? '' : latin1Slice(dst, 0, n);
}

/** Octets `s` takes Huffman-coded (characters above 0xff count as their low octet, as latin1 writes do). */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff]!;
  return (bits + 7) >>> 3;
}

/**
 * Writes `s` Huffman-coded at out[pos]; returns the position after it. The caller has checked
 * the room (huffmanEncodedLength).
 */
export function huffmanEncodeInto(s: string, out: Uint8Array, pos: number): number {
  // Pending bits live in the low `n` bits of `acc`, n < 8 between symbols; codes longer than 24
  // bits are added in two parts so that acc never needs more than 31 bits.
  let acc = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    let len = LENGTHS[sym]!;
    const code = CODES[sym]!;
    if (len > 24) {
      const high = len - 16;
      acc = (acc << high) | (code >>> 16);
      n += high;
      while (n >= 8) {
        n -= 8;
        out[pos++] = acc >>> n;
      }
      acc &= (1 << n) - 1;
      len = 16;
      acc = (acc << 16) | (code & 0xffff);
    } else {
      acc = (acc << len) | code;
    }
    n += len;
    while (n >= 8) {
      n -= 8;
      out[pos++] = acc >>> n;
    }
    acc &= (1 << n) - 1;
  }
  // Pad with the most significant bits of EOS, i.e. ones.
  if (n > 0) out[pos++] = (acc << (8 - n)) | (0xff >>> n);
  return pos;
}
