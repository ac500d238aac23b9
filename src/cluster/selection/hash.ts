/**
 * MurmurHash3 x86_32 over the UTF-8 bytes of a string. Hash-based selectors hash every request's
 * key, so this encodes UTF-8 on the fly from UTF-16 code units instead of allocating a Buffer: the
 * output equals murmur3_32(Buffer.from(str, 'utf8'), seed), so it matches other implementations
 * (and their published test vectors) byte for byte. Lone surrogates hash as U+FFFD, like
 * TextEncoder and Buffer.from do.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function scramble(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** Mixes one full little-endian 4-byte block into the running state. */
function mixBlock(h: number, k: number): number {
  h ^= scramble(k);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Murmur3's finalizer: a cheap full-avalanche 32-bit mixer, also useful to derive rehashes. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Returns an unsigned 32-bit hash. */
export function murmur3(str: string, seed = 0): number {
  let h = seed | 0;
  // Bytes not yet forming a full block, packed little-endian into `k` (`shift` = 8 * their count).
  let k = 0;
  let shift = 0;
  let byteLength = 0;
  const n = str.length;
  for (let i = 0; i < n; i++) {
    let cp = str.charCodeAt(i);
    // Encode the code point into `bytes` (first byte lowest) and `count`, then feed them below.
    let bytes: number;
    let count: number;
    if (cp < 0x80) {
      bytes = cp;
      count = 1;
    } else if (cp < 0x800) {
      bytes = 0xc0 | (cp >>> 6) | ((0x80 | (cp & 0x3f)) << 8);
      count = 2;
    } else {
      if (cp >= 0xd800 && cp <= 0xdfff) {
        const next = i + 1 < n ? str.charCodeAt(i + 1) : 0;
        if (cp <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
          i++;
        } else {
          cp = 0xfffd;
        }
      }
      if (cp < 0x10000) {
        bytes = 0xe0 | (cp >>> 12) | ((0x80 | ((cp >>> 6) & 0x3f)) << 8) | ((0x80 | (cp & 0x3f)) << 16);
        count = 3;
      } else {
        bytes =
          0xf0 |
          (cp >>> 18) |
          ((0x80 | ((cp >>> 12) & 0x3f)) << 8) |
          ((0x80 | ((cp >>> 6) & 0x3f)) << 16) |
          ((0x80 | (cp & 0x3f)) << 24);
        count = 4;
      }
    }
    byteLength += count;
    for (let b = 0; b < count; b++) {
      k |= ((bytes >>> (b * 8)) & 0xff) << shift;
      shift += 8;
      if (shift === 32) {
        h = mixBlock(h, k);
        k = 0;
        shift = 0;
      }
    }
  }
  if (shift !== 0) h ^= scramble(k);
  return fmix32(h ^ byteLength);
}
