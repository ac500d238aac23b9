/**
 * Builds TLS ClientHello bytes for tests (src/tls/client-hello.ts and the proxy's SNI passthrough):
 * a TLS 1.3-style hello with a random random and session id, a few cipher suites, supported_groups,
 * signature_algorithms, supported_versions, psk_key_exchange_modes and an x25519 key_share with a
 * dummy 32-byte key. It encodes what it is asked to, valid or not (an empty server name, an empty
 * ALPN list), so error tests can start from it; only the framing (lengths, records) is always right.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';

export interface ClientHelloOptions {
  /** host_name of a server_name extension (latin1, not checked); omitted: no server_name. */
  serverName?: string;
  /** ALPN protocol names (latin1, not checked); omitted: no ALPN extension; []: an empty list. */
  alpn?: string[];
  /** Extensions appended after the built-in ones (before padding), in this order. */
  extraExtensions?: { type: number; data: Buffer }[];
  /** Fragment sizes (1..16384) of the first records; the rest of the handshake message goes in records
   * of 16384 bytes at most. Sizes past the end of the message are ignored. Default: one record. */
  recordSplit?: number[];
  /** Adds a padding extension (21) so that the handshake message (4-byte header included) is exactly
   * this long; throws when that cannot be done (already longer, or 1-3 bytes short). */
  padTo?: number;
  /** A hello without extensions at all (SSLv3 / early TLS 1.0 style); ignores the options above but
   * recordSplit. */
  noExtensions?: boolean;
  /** Default 0x0303. */
  legacyVersion?: number;
  /** Version field of every record; default 0x0301 (what TLS 1.3 clients send). */
  recordVersion?: number;
  /** Default [0x0304, 0x0303]. */
  supportedVersions?: number[];
}

const EXT_PADDING = 21;

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** opaque<..2^8-1>. */
export function vec8(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([body.length]), body]);
}

/** opaque<..2^16-1>. */
export function vec16(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u16(body.length), body]);
}

export function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vec16(data)]);
}

/** The data of a server_name extension with these (name_type, name) entries (names latin1). */
export function serverNameData(entries: { type?: number; name: string }[]): Buffer {
  return vec16(
    ...entries.map((e) => Buffer.concat([Buffer.from([e.type ?? 0]), vec16(Buffer.from(e.name, 'latin1'))])),
  );
}

/** The data of an ALPN extension (names latin1). */
export function alpnData(names: string[]): Buffer {
  return vec16(...names.map((n) => vec8(Buffer.from(n, 'latin1'))));
}

/** One TLS record (RFC 5246 §6.2.1). */
export function tlsRecord(contentType: number, fragment: Buffer, version = 0x0301): Buffer {
  return Buffer.concat([Buffer.from([contentType]), u16(version), u16(fragment.length), fragment]);
}

/** A handshake message: type, 24-bit length, body. */
export function handshake(type: number, body: Buffer): Buffer {
  const header = Buffer.from([type, 0, 0, 0]);
  header.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([header, body]);
}

/** The ClientHello handshake message (header included), not yet cut into records. */
export function clientHelloMessage(opts: ClientHelloOptions = {}): Buffer {
  const head = Buffer.concat([
    u16(opts.legacyVersion ?? 0x0303),
    randomBytes(32),
    vec8(randomBytes(32)),
    vec16(u16(0x1301), u16(0x1302), u16(0x1303), u16(0xc02f)),
    vec8(Buffer.from([0])),
  ]);
  if (opts.noExtensions) return handshake(1, head);
  const exts: Buffer[] = [];
  if (opts.serverName !== undefined) exts.push(extension(0, serverNameData([{ name: opts.serverName }])));
  exts.push(extension(10, vec16(u16(0x001d), u16(0x0017)))); // supported_groups: x25519, secp256r1
  exts.push(extension(13, vec16(u16(0x0403), u16(0x0804), u16(0x0401)))); // signature_algorithms
  if (opts.alpn !== undefined) exts.push(extension(16, alpnData(opts.alpn)));
  exts.push(extension(43, vec8(...(opts.supportedVersions ?? [0x0304, 0x0303]).map(u16))));
  exts.push(extension(45, vec8(Buffer.from([1])))); // psk_key_exchange_modes: psk_dhe_ke
  exts.push(extension(51, vec16(u16(0x001d), vec16(Buffer.alloc(32, 0x42))))); // key_share: x25519
  for (const e of opts.extraExtensions ?? []) exts.push(extension(e.type, e.data));
  let msg = handshake(1, Buffer.concat([head, vec16(...exts)]));
  if (opts.padTo !== undefined && opts.padTo !== msg.length) {
    const gap = opts.padTo - msg.length;
    if (gap < 4) throw new RangeError(`cannot pad a ${msg.length}-byte ClientHello to ${opts.padTo} bytes`);
    exts.push(extension(EXT_PADDING, Buffer.alloc(gap - 4)));
    msg = handshake(1, Buffer.concat([head, vec16(...exts)]));
  }
  return msg;
}

/** Cuts a handshake message into handshake records: first the recordSplit sizes, then 16384-byte ones. */
export function toRecords(msg: Buffer, recordSplit: number[] = [], recordVersion = 0x0301): Buffer {
  const records: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < msg.length; i++) {
    const size = recordSplit[i] ?? 16384;
    if (!Number.isInteger(size) || size < 1 || size > 16384) throw new RangeError(`record size ${size}`);
    records.push(tlsRecord(22, msg.subarray(at, at + size), recordVersion));
    at += size;
  }
  return Buffer.concat(records);
}

/** A ClientHello as a client sends it: the handshake message in one or more handshake records. */
export function buildClientHello(opts: ClientHelloOptions = {}): Buffer {
  return toRecords(clientHelloMessage(opts), opts.recordSplit, opts.recordVersion);
}
