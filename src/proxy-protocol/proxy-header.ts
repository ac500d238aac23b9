/**
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt, versions 1 and 2): a header a load balancer
 * puts before a connection's first byte to pass on the client's addresses, which the server would
 * otherwise see as the balancer's. This file holds what both directions share (the header as a
 * value, TLV types, address text <-> bytes, CRC32C) and the encoders; proxy-header-parser.ts reads.
 *
 * The encoders take addresses as Node gives them: IPv4-mapped IPv6 (::ffff:a.b.c.d, what a
 * dual-stack socket reports for an IPv4 peer) is sent as IPv4 when both ends are IPv4; when one end
 * is really IPv6, the IPv4 one is sent mapped, as IPv6 (the header has one family for both). A
 * scope id (fe80::1%eth0) is dropped: the header has no room for it. The encoders speak TCP only;
 * they throw on bad input (their caller's bug), unlike the parser.
 */
import { Buffer } from 'node:buffer';

export interface ProxyAddress {
  /** IPv4 dotted quad, IPv6 in Node's canonical form, or for 'unix' the socket path (port 0). */
  address: string;
  port: number;
}

/** A v2 type-length-value extension, as it came (value copied out of the read buffer). */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/**
 * A decoded header. `source` and `destination` are both null exactly when family is 'unknown': v1
 * UNKNOWN, v2 AF_UNSPEC or an UNSPEC transport, and every v2 LOCAL header, whatever family it
 * names. For 'unix', `address` is the sun_path up to its first NUL (an abstract name keeps its
 * leading NUL, trailing NULs dropped) and `port` is 0. v1 always says command 'proxy', no TLVs.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: 'proxy' | 'local';
  family: 'tcp4' | 'tcp6' | 'udp4' | 'udp6' | 'unix' | 'unknown';
  source: ProxyAddress | null;
  destination: ProxyAddress | null;
  tlvs: ProxyTlv[];
}

/** The v2 signature (12 bytes, latin1): CR LF CR LF NUL CR LF "QUIT" LF. */
export const PROXY_V2_SIGNATURE = '\r\n\r\n\0\r\nQUIT\n';
/** Fixed part of a v2 header: signature, version/command, family/transport, length. */
export const PROXY_V2_FIXED_BYTES = 16;

/** Registered v2 TLV types (§2.2). */
export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_NOOP = 0x04;
export const PP2_TYPE_UNIQUE_ID = 0x05;
export const PP2_TYPE_SSL = 0x20;
export const PP2_TYPE_NETNS = 0x30;

// ---------------------------------------------------------------------------------------------
// Encoders

/** `PROXY TCP4|TCP6 src dst sport dport\r\n`. */
export function encodeProxyHeaderV1(src: ProxyAddress, dst: ProxyAddress): Buffer {
  const s = Buffer.alloc(16);
  const d = Buffer.alloc(16);
  const v4 = addressPair(src, dst, s, d);
  const line = v4
    ? `PROXY TCP4 ${formatIPv4(s, 12)} ${formatIPv4(d, 12)} ${src.port} ${dst.port}\r\n`
    : `PROXY TCP6 ${formatIPv6(s, 0)} ${formatIPv6(d, 0)} ${src.port} ${dst.port}\r\n`;
  return Buffer.from(line, 'latin1');
}

/** `PROXY UNKNOWN\r\n`: the sender cannot tell the addresses; the receiver uses the real ones. */
export function encodeProxyHeaderV1Unknown(): Buffer {
  return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
}

export interface ProxyHeaderV2Options {
  command: 'proxy' | 'local';
  /** Both or neither. Ignored for LOCAL; a PROXY without them is sent as AF_UNSPEC. */
  source?: ProxyAddress;
  destination?: ProxyAddress;
  tlvs?: readonly ProxyTlv[];
  /** Append a PP2_TYPE_CRC32C TLV holding the checksum of the whole header. */
  crc32c?: boolean;
}

export function encodeProxyHeaderV2(opts: ProxyHeaderV2Options): Buffer {
  const { source, destination } = opts;
  if ((source === undefined) !== (destination === undefined)) {
    throw new TypeError('PROXY v2: give both source and destination, or neither');
  }
  const s = Buffer.alloc(16);
  const d = Buffer.alloc(16);
  let fam = 0x00;
  let addrLen = 0;
  if (opts.command === 'proxy' && source !== undefined && destination !== undefined) {
    const v4 = addressPair(source, destination, s, d);
    fam = v4 ? 0x11 : 0x21;
    addrLen = v4 ? 12 : 36;
  }
  const tlvs = opts.tlvs ?? [];
  let len = addrLen;
  for (const t of tlvs) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) throw new RangeError(`PROXY v2: TLV type ${t.type}`);
    if (t.value.length > 0xffff) throw new RangeError(`PROXY v2: TLV value of ${t.value.length} bytes`);
    if (opts.crc32c && t.type === PP2_TYPE_CRC32C) throw new TypeError('PROXY v2: crc32c option with a CRC32C TLV');
    len += 3 + t.value.length;
  }
  if (opts.crc32c) len += 7;
  if (len > 0xffff) throw new RangeError(`PROXY v2: header body of ${len} bytes (max 65535)`);

  const b = Buffer.alloc(PROXY_V2_FIXED_BYTES + len);
  b.write(PROXY_V2_SIGNATURE, 0, 'latin1');
  b[12] = opts.command === 'proxy' ? 0x21 : 0x20;
  b[13] = fam;
  b.writeUInt16BE(len, 14);
  let p = PROXY_V2_FIXED_BYTES;
  if (addrLen === 12) {
    s.copy(b, p, 12, 16);
    d.copy(b, p + 4, 12, 16);
    p += 8;
  } else if (addrLen === 36) {
    s.copy(b, p);
    d.copy(b, p + 16);
    p += 32;
  }
  if (addrLen > 0) {
    b.writeUInt16BE(source!.port, p);
    b.writeUInt16BE(destination!.port, p + 2);
    p += 4;
  }
  for (const t of tlvs) {
    b[p] = t.type;
    b.writeUInt16BE(t.value.length, p + 1);
    b.set(t.value, p + 3);
    p += 3 + t.value.length;
  }
  if (opts.crc32c) {
    b[p] = PP2_TYPE_CRC32C;
    b.writeUInt16BE(4, p + 1);
    b.writeUInt32BE(crc32c(b), p + 3); // computed with the field still zero, as §2.2.3 asks
  }
  return b;
}

/**
 * Both addresses as 16 IPv6 bytes into s and d (IPv4 mapped); true when both are IPv4 (or mapped),
 * to be sent as IPv4 from bytes 12..16.
 */
function addressPair(src: ProxyAddress, dst: ProxyAddress, s: Buffer, d: Buffer): boolean {
  checkPort(src.port);
  checkPort(dst.port);
  toIPv6Bytes(src.address, s);
  toIPv6Bytes(dst.address, d);
  return isMapped(s) && isMapped(d);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`PROXY: bad port ${port}`);
}

function toIPv6Bytes(address: string, out: Buffer): void {
  const v4 = parseIPv4(address, 0, address.length);
  if (v4 >= 0) {
    out.fill(0, 0, 10);
    out[10] = out[11] = 0xff;
    out.writeUInt32BE(v4, 12);
    return;
  }
  const pct = address.indexOf('%');
  if (!parseIPv6Into(pct < 0 ? address : address.slice(0, pct), out, 0)) {
    throw new TypeError(`PROXY: not an IP address: ${JSON.stringify(address)}`);
  }
}

/** ::ffff:0:0/96. */
function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

// ---------------------------------------------------------------------------------------------
// Address text (strict: what the v1 spec allows, which is what inet_pton takes)

/** A dotted quad in s[start, end): 4 decimals 0..255 without leading zeros. The address, or -1. */
export function parseIPv4(s: string, start: number, end: number): number {
  let v = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const from = i;
    let n = 0;
    while (i < end && i - from < 4) {
      const c = s.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) break;
      n = n * 10 + c;
      i++;
    }
    const digits = i - from;
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && s.charCodeAt(from) === 0x30)) return -1;
    v = v * 256 + n;
    if (++parts < 4) {
      if (i >= end || s.charCodeAt(i) !== 0x2e) return -1;
      i++;
    }
  }
  return i === end ? v : -1;
}

/**
 * An IPv6 address (1-4 hex digits a group, at most one "::" standing for at least one group, an
 * optional dotted quad for the last 32 bits) into out[off, off + 16). False if it is not one.
 */
export function parseIPv6Into(s: string, out: Uint8Array, off: number): boolean {
  const n = s.length;
  if (n < 2 || n > 45) return false;
  const words: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 0x3a) {
    if (s.charCodeAt(1) !== 0x3a) return false;
    gap = 0;
    i = 2;
  }
  while (i < n) {
    if (words.length === 8) return false;
    let j = i;
    let v = 0;
    while (j < n && j - i < 5) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      j++;
    }
    if (j < n && s.charCodeAt(j) === 0x2e) {
      const v4 = words.length <= 6 ? parseIPv4(s, i, n) : -1;
      if (v4 < 0) return false;
      words.push(v4 >>> 16, v4 & 0xffff);
      break;
    }
    if (j === i || j - i > 4) return false;
    words.push(v);
    if (j === n) break;
    if (s.charCodeAt(j) !== 0x3a) return false;
    j++;
    if (j < n && s.charCodeAt(j) === 0x3a) {
      if (gap >= 0) return false;
      gap = words.length;
      j++;
    } else if (j === n) {
      return false; // a trailing single ':'
    }
    i = j;
  }
  if (gap < 0 ? words.length !== 8 : words.length > 7) return false;
  const zeros = 8 - words.length;
  let w = 0;
  for (let k = 0; k < 8; k++) {
    const v = gap >= 0 && k >= gap && k < gap + zeros ? 0 : words[w++]!;
    out[off + 2 * k] = v >>> 8;
    out[off + 2 * k + 1] = v & 0xff;
  }
  return true;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/** A decimal port 0..65535 without leading zeros, or -1. */
export function parsePort(s: string): number {
  const n = s.length;
  if (n === 0 || n > 5 || (n > 1 && s.charCodeAt(0) === 0x30)) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v > 0xffff ? -1 : v;
}

export function formatIPv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/**
 * b[off, off + 16) as libuv's inet_ntop writes it (so as net.SocketAddress shows it): lower-case
 * hex, the first longest run of two or more zero groups as "::", and a dotted quad for ::a.b.c.d
 * and ::ffff:a.b.c.d.
 */
export function formatIPv6(b: Uint8Array, off: number): string {
  let best = -1;
  let bestLen = 0;
  let cur = -1;
  for (let i = 0; i < 8; i++) {
    if (b[off + 2 * i] === 0 && b[off + 2 * i + 1] === 0) {
      if (cur < 0) cur = i;
      if (i + 1 - cur > bestLen) {
        best = cur;
        bestLen = i + 1 - cur;
      }
    } else {
      cur = -1;
    }
  }
  if (bestLen < 2) best = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (best >= 0 && i >= best && i < best + bestLen) {
      if (i === best) s += ':';
      continue;
    }
    if (i > 0) s += ':';
    if (i === 6 && best === 0 && (bestLen === 6 || (bestLen === 5 && b[off + 10] === 0xff && b[off + 11] === 0xff))) {
      return s + formatIPv4(b, off + 12);
    }
    s += ((b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!).toString(16);
  }
  if (best >= 0 && best + bestLen === 8) s += ':';
  return s;
}

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli, RFC 4960 appendix B), for the PP2_TYPE_CRC32C TLV

const CRC32C_TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  CRC32C_TABLE[n] = c;
}

/** CRC32C of data[start, end); pass a previous result as `crc` to continue it over more bytes. */
export function crc32c(data: Uint8Array, start = 0, end = data.length, crc = 0): number {
  let c = ~crc;
  for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
