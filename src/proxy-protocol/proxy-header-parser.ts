/**
 * Reads the PROXY protocol header (v1 text or v2 binary, see proxy-header.ts) off the start of a
 * connection, before TLS or HTTP. Stateless, for bytes that arrive in pieces: the listener keeps
 * what it has read and calls parseProxyHeader on all of it until the answer is 'done' (`consumed`
 * is the header's length; the bytes after it are the application's and are left alone) or 'error'.
 *
 * It decides as early as the bytes allow, and a decision never changes as more bytes come:
 *  - proxy_protocol_missing from the first byte that cannot begin "PROXY " or the v2 signature: a
 *    client talking HTTP or TLS straight to a PROXY listener fails on its first byte;
 *  - proxy_protocol_too_large from the 16 fixed v2 bytes, when the length field goes past
 *    maxV2Bytes (the body is not waited for);
 *  - proxy_protocol_malformed for everything else: bad v2 version, command, family, an address
 *    block or TLV that does not fit the length, a CRC32C that does not match; a v1 line with no
 *    CRLF in 107 bytes, a bare CR or LF, a byte that cannot belong to the line, or fields that are
 *    not exactly what §2.1 allows.
 * So the caller never holds more than max(107, maxV2Bytes) bytes plus one read for it.
 *
 * v2 LOCAL headers and headers of family UNSPEC (or transport UNSPEC) have null addresses; the
 * address block the family byte names is still skipped, and the TLVs after it parsed, for every
 * command (HAProxy reads a LOCAL header's TLVs right after the 16 fixed bytes instead). All TLVs
 * are returned in order, NOOP and CRC32C included, their values copied out of the caller's buffer.
 *
 * Never throws. Looks at no more than 107 bytes of a v1 line or maxV2Bytes of a v2 header, whatever
 * the buffer holds; the TLV copies, the only allocation that grows with the input, are made once the
 * whole header has checked out.
 */
import { Buffer } from 'node:buffer';
import {
  crc32c,
  formatIPv4,
  formatIPv6,
  PP2_TYPE_CRC32C,
  PROXY_V2_FIXED_BYTES,
  PROXY_V2_SIGNATURE,
  type ProxyAddress,
  type ProxyHeader,
  type ProxyTlv,
  parseIPv4,
  parseIPv6Into,
  parsePort,
} from './proxy-header.ts';

export type ProxyProtocolError = 'proxy_protocol_missing' | 'proxy_protocol_malformed' | 'proxy_protocol_too_large';

export type ParseResult =
  | { kind: 'more' }
  | { kind: 'done'; header: ProxyHeader; consumed: number }
  | { kind: 'error'; code: ProxyProtocolError; message: string };

export interface ProxyHeaderParseOptions {
  /** Largest whole v2 header accepted (16 fixed bytes included). */
  maxV2Bytes?: number;
}

/** Longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses and ports). */
export const PROXY_V1_MAX_BYTES = 107;
export const PROXY_V2_DEFAULT_MAX_BYTES = 4096 + PROXY_V2_FIXED_BYTES;

const MORE: ParseResult = Object.freeze({ kind: 'more' as const });
const V1_PREFIX = 'PROXY ';
const V1_PROTOCOLS = ['TCP4', 'TCP6', 'UNKNOWN'];
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
/** Address block length by v2 address family: UNSPEC, INET, INET6, UNIX. */
const ADDRESS_BYTES = [0, 12, 36, 216];
const ZERO4 = new Uint8Array(4);
const scratch = new Uint8Array(16);

export function parseProxyHeader(buf: Buffer, opts?: ProxyHeaderParseOptions): ParseResult {
  const n = buf.length;
  if (n === 0) return MORE;
  const first = buf[0];
  if (first === 0x50) return parseV1(buf, n);
  if (first === CR) return parseV2(buf, n, opts?.maxV2Bytes ?? PROXY_V2_DEFAULT_MAX_BYTES);
  return missing(`first byte 0x${first!.toString(16).padStart(2, '0')} starts no PROXY header`);
}

function missing(message: string): ParseResult {
  return { kind: 'error', code: 'proxy_protocol_missing', message };
}

function malformed(message: string): ParseResult {
  return { kind: 'error', code: 'proxy_protocol_malformed', message };
}

// ---------------------------------------------------------------------------------------------
// v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN[ anything]\r\n"

function parseV1(buf: Buffer, n: number): ParseResult {
  for (let i = 1; i < 6 && i < n; i++) {
    if (buf[i] !== V1_PREFIX.charCodeAt(i)) return missing(`byte ${i} breaks "PROXY "`);
  }
  if (n <= 6) return MORE;
  const lim = Math.min(n, PROXY_V1_MAX_BYTES);
  let cr = -1;
  for (let i = 6; i < lim; i++) {
    const c = buf[i];
    if (c === CR) {
      cr = i;
      break;
    }
    if (c === LF) return malformed('v1: LF without CR');
  }
  if (cr < 0 && n >= PROXY_V1_MAX_BYTES) return malformed('v1: no CRLF in the first 107 bytes');
  if (cr === PROXY_V1_MAX_BYTES - 1) return malformed('v1: line longer than 107 bytes');
  if (cr < 0 || cr + 1 === n) {
    const why = v1SoFar(buf, cr < 0 ? lim : cr);
    return why === null ? MORE : malformed(`v1: ${why}`);
  }
  if (buf[cr + 1] !== LF) return malformed('v1: CR without LF');
  return parseV1Line(buf.toString('latin1', 6, cr), cr + 2);
}

/**
 * Why buf[6, end), a line still without its CRLF, cannot become a valid one, or null. Not the
 * whole check (the line is parsed once complete), only what rejects garbage early.
 */
function v1SoFar(buf: Buffer, end: number): string | null {
  let i = 6;
  while (i < end && buf[i] !== SP) i++;
  const proto = buf.toString('latin1', 6, i);
  if (i === end) return V1_PROTOCOLS.some((p) => p.startsWith(proto)) ? null : 'unknown protocol';
  if (proto === 'UNKNOWN') return null;
  const v6 = proto === 'TCP6';
  if (!v6 && proto !== 'TCP4') return 'unknown protocol';
  let spaces = 1;
  let lastSpace = true;
  for (let j = i + 1; j < end; j++) {
    const c = buf[j]!;
    if (c === SP) {
      if (lastSpace || ++spaces > 4) return 'misplaced space';
      lastSpace = true;
      continue;
    }
    lastSpace = false;
    const hexLetter = (c | 0x20) >= 0x61 && (c | 0x20) <= 0x66;
    const ok = (c >= 0x30 && c <= 0x39) || c === 0x2e || (v6 && (c === 0x3a || hexLetter));
    if (!ok) return `unexpected byte 0x${c.toString(16).padStart(2, '0')}`;
  }
  return null;
}

/** `line` is what follows "PROXY " up to the CR. */
function parseV1Line(line: string, consumed: number): ParseResult {
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) {
    const header: ProxyHeader = {
      version: 1,
      command: 'proxy',
      family: 'unknown',
      source: null,
      destination: null,
      tlvs: [],
    };
    return { kind: 'done', header, consumed };
  }
  const f = line.split(' ');
  if (f.length !== 5) return malformed(`v1: ${f.length} fields instead of 5 (or misplaced spaces)`);
  const [proto, src, dst, sp, dp] = f as [string, string, string, string, string];
  if (proto !== 'TCP4' && proto !== 'TCP6') return malformed(`v1: unknown protocol ${JSON.stringify(proto)}`);
  const v4 = proto === 'TCP4';
  const source = v4 ? v1IPv4(src) : v1IPv6(src);
  const destination = v4 ? v1IPv4(dst) : v1IPv6(dst);
  if (source === null) return malformed(`v1: bad ${proto} source address`);
  if (destination === null) return malformed(`v1: bad ${proto} destination address`);
  const sport = parsePort(sp);
  const dport = parsePort(dp);
  if (sport < 0) return malformed('v1: bad source port');
  if (dport < 0) return malformed('v1: bad destination port');
  const header: ProxyHeader = {
    version: 1,
    command: 'proxy',
    family: v4 ? 'tcp4' : 'tcp6',
    source: { address: source, port: sport },
    destination: { address: destination, port: dport },
    tlvs: [],
  };
  return { kind: 'done', header, consumed };
}

function v1IPv4(s: string): string | null {
  return parseIPv4(s, 0, s.length) >= 0 ? s : null;
}

function v1IPv6(s: string): string | null {
  return parseIPv6Into(s, scratch, 0) ? formatIPv6(scratch, 0) : null;
}

// ---------------------------------------------------------------------------------------------
// v2: signature, version/command, family/transport, length, addresses, TLVs

function parseV2(buf: Buffer, n: number, maxBytes: number): ParseResult {
  for (let i = 1; i < 12 && i < n; i++) {
    if (buf[i] !== PROXY_V2_SIGNATURE.charCodeAt(i)) return missing(`byte ${i} breaks the v2 signature`);
  }
  if (n < 13) return MORE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return malformed(`v2: version ${verCmd >> 4}`);
  const command = verCmd & 0xf;
  if (command > 1) return malformed(`v2: command ${command}`);
  if (n < 14) return MORE;
  const famByte = buf[13]!;
  const af = famByte >> 4;
  const transport = famByte & 0xf;
  if (af > 3 || transport > 2) return malformed(`v2: family/transport byte 0x${famByte.toString(16)}`);
  if (n < PROXY_V2_FIXED_BYTES) return MORE;
  const len = (buf[14]! << 8) | buf[15]!;
  const total = PROXY_V2_FIXED_BYTES + len;
  if (total > maxBytes) {
    return { kind: 'error', code: 'proxy_protocol_too_large', message: `v2: ${total} bytes, over ${maxBytes}` };
  }
  const addrBytes = ADDRESS_BYTES[af]!;
  if (addrBytes > len) return malformed(`v2: ${addrBytes} address bytes do not fit in length ${len}`);
  if (n < total) return MORE;

  // TLVs: check the structure and the checksum before allocating anything.
  const tlvStart = PROXY_V2_FIXED_BYTES + addrBytes;
  let crcAt = -1;
  for (let p = tlvStart; p < total; ) {
    if (p + 3 > total) return malformed('v2: TLV header cut by the length');
    const end = p + 3 + ((buf[p + 1]! << 8) | buf[p + 2]!);
    if (end > total) return malformed(`v2: TLV 0x${buf[p]!.toString(16)} overflows the length`);
    if (buf[p] === PP2_TYPE_CRC32C) {
      if (end - p !== 7) return malformed('v2: CRC32C TLV not 4 bytes');
      if (crcAt >= 0) return malformed('v2: two CRC32C TLVs');
      crcAt = p + 3;
    }
    p = end;
  }
  if (crcAt >= 0) {
    let crc = crc32c(buf, 0, crcAt);
    crc = crc32c(ZERO4, 0, 4, crc);
    crc = crc32c(buf, crcAt + 4, total, crc);
    if (crc !== buf.readUInt32BE(crcAt)) return malformed('v2: CRC32C mismatch');
  }

  const tlvs: ProxyTlv[] = [];
  for (let p = tlvStart; p < total; ) {
    const end = p + 3 + ((buf[p + 1]! << 8) | buf[p + 2]!);
    tlvs.push({ type: buf[p]!, value: Buffer.from(buf.subarray(p + 3, end)) });
    p = end;
  }

  let family: ProxyHeader['family'] = 'unknown';
  let source: ProxyAddress | null = null;
  let destination: ProxyAddress | null = null;
  if (command === 1 && transport !== 0) {
    const a = PROXY_V2_FIXED_BYTES;
    if (af === 1) {
      family = transport === 1 ? 'tcp4' : 'udp4';
      source = { address: formatIPv4(buf, a), port: (buf[a + 8]! << 8) | buf[a + 9]! };
      destination = { address: formatIPv4(buf, a + 4), port: (buf[a + 10]! << 8) | buf[a + 11]! };
    } else if (af === 2) {
      family = transport === 1 ? 'tcp6' : 'udp6';
      source = { address: formatIPv6(buf, a), port: (buf[a + 32]! << 8) | buf[a + 33]! };
      destination = { address: formatIPv6(buf, a + 16), port: (buf[a + 34]! << 8) | buf[a + 35]! };
    } else if (af === 3) {
      family = 'unix';
      source = { address: unixPath(buf, a), port: 0 };
      destination = { address: unixPath(buf, a + 108), port: 0 };
    }
  }
  const header: ProxyHeader = {
    version: 2,
    command: command === 1 ? 'proxy' : 'local',
    family,
    source,
    destination,
    tlvs,
  };
  return { kind: 'done', header, consumed: total };
}

/** A 108-byte sun_path: up to its first NUL, or for an abstract name (leading NUL) its trailing NULs dropped. */
function unixPath(buf: Buffer, start: number): string {
  let end = start + 108;
  if (buf[start] === 0) {
    while (end > start + 1 && buf[end - 1] === 0) end--;
    if (end === start + 1) return '';
  } else {
    for (let i = start; i < end; i++) {
      if (buf[i] === 0) {
        end = i;
        break;
      }
    }
  }
  return buf.toString('utf8', start, end);
}
