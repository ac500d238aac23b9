/**
 * QUIC variable-length integers (RFC 9000 §16): the two high bits of the first byte give the length
 * (00 → 1, 01 → 2, 10 → 4, 11 → 8 bytes), the remaining bits the value in network byte order, so
 * 6, 14, 30 and 62 bits of value. Encodings need not be minimal: 0x4025 decodes to 37 like 0x25.
 *
 * The number API is what the data plane uses and never allocates: `readVarint` returns the value, or
 * one of two negative sentinels, and `varintSizeAt` says how many bytes that value took. JavaScript
 * numbers are exact only up to 2^53-1, so an 8-byte value above that is not rounded but reported as
 * VARINT_UNSAFE; the bigint pair covers the full 62-bit range for the rare caller that needs it.
 */
import { Buffer } from 'node:buffer';

/** `readVarint` result: the buffer ends before the varint does; feed more bytes and read again. */
export const VARINT_NEED_MORE = -1;
/** `readVarint` result: a complete varint whose value is above Number.MAX_SAFE_INTEGER. */
export const VARINT_UNSAFE = -2;
/** The largest value a varint can carry, 2^62-1. */
export const VARINT_MAX = (1n << 62n) - 1n;

const TWO_32 = 0x1_0000_0000;
/** The high 32-bit word of 2^53-1: above it an 8-byte value is no longer an exact number. */
const SAFE_HIGH_WORD = 0x1f_ffff;

/** The byte length of the varint whose first byte is `buf[offset]` (which must exist). */
export function varintSizeAt(buf: Uint8Array, offset: number): 1 | 2 | 4 | 8 {
  return (1 << (buf[offset]! >> 6)) as 1 | 2 | 4 | 8;
}

/**
 * Decodes the varint at `buf[offset]`, reading no further than `end` (default: the buffer's end, a
 * smaller one lets a caller read a partly filled scratch buffer without slicing it). Returns the value
 * (≥ 0), VARINT_NEED_MORE if the varint runs past `end`, or VARINT_UNSAFE; on a value or VARINT_UNSAFE
 * the varint took `varintSizeAt(buf, offset)` bytes.
 */
export function readVarint(buf: Uint8Array, offset: number, end: number = buf.length): number {
  if (offset >= end) return VARINT_NEED_MORE;
  const first = buf[offset]!;
  const size = 1 << (first >> 6);
  if (offset + size > end) return VARINT_NEED_MORE;
  const b0 = first & 0x3f;
  switch (size) {
    case 1:
      return b0;
    case 2:
      return (b0 << 8) | buf[offset + 1]!;
    case 4:
      // b0 < 64, so b0 * 2^24 stays a positive number where `b0 << 24` would not need to.
      return b0 * 0x100_0000 + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!);
    default: {
      const high = b0 * 0x100_0000 + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!);
      if (high > SAFE_HIGH_WORD) return VARINT_UNSAFE;
      // `>>> 0` keeps the low word unsigned when its top bit is set.
      const low =
        ((buf[offset + 4]! << 24) | (buf[offset + 5]! << 16) | (buf[offset + 6]! << 8) | buf[offset + 7]!) >>> 0;
      return high * TWO_32 + low;
    }
  }
}

/** The minimal encoded length of `value`; throws RangeError unless it is an integer in [0, 2^53-1]. */
export function varintLength(value: number): 1 | 2 | 4 | 8 {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`varint value must be an integer in [0, 2^53-1], got ${value}`);
  }
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x4000_0000) return 4;
  return 8;
}

/**
 * Writes `value` minimally encoded at `buf[offset]` and returns the offset just past it. The caller
 * sizes the buffer with `varintLength`; throws RangeError as `varintLength` does.
 */
export function writeVarint(buf: Uint8Array, offset: number, value: number): number {
  const size = varintLength(value);
  switch (size) {
    case 1:
      buf[offset] = value;
      break;
    case 2:
      buf[offset] = 0x40 | (value >> 8);
      buf[offset + 1] = value & 0xff;
      break;
    case 4:
      buf[offset] = 0x80 | (value >>> 24);
      buf[offset + 1] = (value >>> 16) & 0xff;
      buf[offset + 2] = (value >>> 8) & 0xff;
      buf[offset + 3] = value & 0xff;
      break;
    default: {
      // Bit operators work on 32 bits: split the value into two words first.
      const high = Math.floor(value / TWO_32);
      const low = value >>> 0;
      buf[offset] = 0xc0 | (high >>> 24);
      buf[offset + 1] = (high >>> 16) & 0xff;
      buf[offset + 2] = (high >>> 8) & 0xff;
      buf[offset + 3] = high & 0xff;
      buf[offset + 4] = low >>> 24;
      buf[offset + 5] = (low >>> 16) & 0xff;
      buf[offset + 6] = (low >>> 8) & 0xff;
      buf[offset + 7] = low & 0xff;
    }
  }
  return offset + size;
}

/** `value` minimally encoded in a new buffer. */
export function encodeVarint(value: number): Buffer {
  const buf = Buffer.allocUnsafe(varintLength(value));
  writeVarint(buf, 0, value);
  return buf;
}

/** Decodes the varint at `buf[offset]` over the full 62-bit range; null if the buffer ends first. */
export function readVarintBigInt(buf: Uint8Array, offset: number, end: number = buf.length): bigint | null {
  if (offset >= end) return null;
  const size = varintSizeAt(buf, offset);
  if (offset + size > end) return null;
  let value = BigInt(buf[offset]! & 0x3f);
  for (let i = 1; i < size; i++) value = (value << 8n) | BigInt(buf[offset + i]!);
  return value;
}

/** `value` minimally encoded in a new buffer; throws RangeError outside [0, 2^62-1]. */
export function encodeVarintBigInt(value: bigint): Buffer {
  if (value < 0n || value > VARINT_MAX) throw new RangeError(`varint value must be in [0, 2^62-1], got ${value}`);
  const size = value < 0x40n ? 1 : value < 0x4000n ? 2 : value < 0x4000_0000n ? 4 : 8;
  const buf = Buffer.allocUnsafe(size);
  let rest = value;
  for (let i = size - 1; i >= 0; i--) {
    buf[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  buf[0] = buf[0]! | ((size === 1 ? 0 : size === 2 ? 1 : size === 4 ? 2 : 3) << 6);
  return buf;
}
