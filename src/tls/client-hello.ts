/**
 * Reads the ClientHello at the start of a TLS connection without terminating TLS, for passthrough
 * routing by SNI: the caller accumulates the connection's first bytes, calls readClientHello with the
 * whole accumulation after every read until the answer is not 'more', picks a backend from the server
 * name and ALPN list, and forwards every byte (these included) untouched.
 *
 * Stateless on purpose: the caller keeps the bytes anyway (to forward them), so re-reading them is
 * simpler than carrying parser state across reads. While the hello is incomplete only the record and
 * handshake headers are walked (a call costs one step per record so far), and the body is parsed once,
 * when all of it is there. Real hellos come in one record, so that is one step; the worst case, a
 * peer sending a hello in 1-byte records one byte per read, is quadratic: about 0.2 s of CPU in all at
 * the default maxBytes. A caller that minds bounds the time it gives a connection to send its hello.
 *
 * References: RFC 5246 §6.2.1 and RFC 8446 §5.1 (records: a handshake message may be fragmented over
 * several records), RFC 8446 §4.1.2 and §4.2 (ClientHello, extensions), RFC 6066 §3 (server_name),
 * RFC 7301 §3.1 (ALPN).
 */
import { Buffer } from 'node:buffer';

export type ClientHelloError =
  /** The first bytes are not a TLS record (plain HTTP, SSLv2, anything else): decided on 1-2 bytes. */
  | 'tls_not_tls'
  /** A TLS record stream that does not carry a well-formed ClientHello. */
  | 'client_hello_malformed'
  /** The ClientHello would end beyond opts.maxBytes. */
  | 'client_hello_too_large'
  /** A well-formed ClientHello whose host_name is not a DNS host name (RFC 6066 §3); the caller may
   * prefer to treat this as "no SNI" rather than drop the connection, hence its own code. */
  | 'sni_invalid';

export interface ClientHelloInfo {
  /** The host_name of server_name, lower-cased; null when the client sent none. */
  serverName: string | null;
  /** ALPN protocol names in the client's order, bytes as latin1; empty when the client sent none. */
  alpn: string[];
  /** ClientHello.legacy_version, e.g. 0x0303 (TLS 1.3 hellos say TLS 1.2 here). */
  legacyVersion: number;
  /** supported_versions (0x002b) in the client's order; empty when absent (pre-TLS 1.3 clients). */
  supportedVersions: number[];
  /** How many bytes of buf were needed: up to the end of the record that completes the ClientHello. */
  bytes: number;
}

export type ClientHelloResult =
  | { kind: 'more' }
  | { kind: 'done'; hello: ClientHelloInfo }
  | { kind: 'error'; code: ClientHelloError; message: string };

/** Largest plaintext record fragment (RFC 8446 §5.1: larger is record_overflow). The ClientHello is
 * always plaintext, so the 2^14 + 256 allowance of encrypted records does not apply. */
export const MAX_RECORD_FRAGMENT = 16384;

/** Default opts.maxBytes: a 16 KiB handshake message spread over up to four records (4 headers of
 * 5 bytes). Real hellos are 200-2000 bytes in one record; post-quantum key shares make them bigger. */
export const DEFAULT_MAX_CLIENT_HELLO_BYTES = 16384 + 5 * 4;

const CONTENT_HANDSHAKE = 22;
/** change_cipher_spec, alert, handshake, application_data, heartbeat: a first byte among these is
 * TLS-like (told apart by the version byte after it); any other is not TLS at all (HTTP's "G", "P",
 * SSLv2's 0x80), decided on that one byte. */
const TLS_CONTENT_TYPES = new Set([20, 21, 22, 23, 24]);
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const NAME_TYPE_HOST_NAME = 0;
/** legacy_version 2, random 32, session_id 1 + 0, cipher_suites 2 + 2, compression_methods 1 + 1. */
const MIN_BODY = 41;
/** A DNS name of at most 255 octets on the wire is at most 253 characters without the trailing dot. */
const MAX_HOST_NAME = 253;

const MORE: ClientHelloResult = Object.freeze({ kind: 'more' });

/** Thrown inside the body parser only, caught in readClientHello: keeps the field-by-field parsing
 * free of result plumbing. Never escapes. */
class Reject {
  readonly code: ClientHelloError;
  readonly message: string;

  constructor(code: ClientHelloError, message: string) {
    this.code = code;
    this.message = message;
  }
}

const fail = (code: ClientHelloError, message: string): ClientHelloResult => ({ kind: 'error', code, message });
const malformed = (message: string): ClientHelloResult => fail('client_hello_malformed', message);

/**
 * Never throws on any buf (only on an invalid opts.maxBytes, a programming error), never reads buf
 * beyond opts.maxBytes (default DEFAULT_MAX_CLIENT_HELLO_BYTES) and allocates at most one copy of the
 * handshake message, and only when it spans several records. Bytes after the ClientHello's last record
 * (early data, a ChangeCipherSpec) are not looked at. Once the answer for some prefix of the stream is
 * not 'more', every longer prefix gets the same answer.
 */
export function readClientHello(buf: Buffer, opts: { maxBytes?: number } = {}): ClientHelloResult {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_CLIENT_HELLO_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`maxBytes must be a positive integer`);
  const end = Math.min(buf.length, maxBytes);
  const tooLarge = () => fail('client_hello_too_large', `the ClientHello does not end within ${maxBytes} bytes`);
  const more = () => (end < maxBytes ? MORE : tooLarge());

  let pos = 0; // start of the current record
  let have = 0; // handshake bytes in the records before it
  let lengthField = 0; // the handshake header's 24-bit length, as its bytes come in
  let total = -1; // the handshake message's length with its 4-byte header, once known
  const fragments: number[] = []; // [start, end] pairs, for reassembly
  for (;;) {
    // Each check runs as soon as its byte is there, so that a non-TLS client is told apart on its
    // first byte and a bad stream is dropped before the proxy buffers more of it.
    if (pos >= end) return more();
    const contentType = buf[pos]!;
    if (pos === 0 && !TLS_CONTENT_TYPES.has(contentType)) {
      return fail('tls_not_tls', `first byte 0x${hex(contentType)} is not a TLS record type`);
    }
    if (pos + 1 >= end) return more();
    if (buf[pos + 1] !== 3) {
      return pos === 0
        ? fail('tls_not_tls', `record version major ${buf[pos + 1]} is not 3`)
        : malformed(`record version major ${buf[pos + 1]} is not 3`);
    }
    // A TLS peer (major version 3) that starts with, or interleaves, another record type.
    if (contentType !== CONTENT_HANDSHAKE) {
      return malformed(`a record of content type ${contentType} ${pos === 0 ? 'before' : 'inside'} the ClientHello`);
    }
    if (pos + 5 > end) return more();
    const len = u16(buf, pos + 3);
    // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
    if (len === 0) return malformed('an empty handshake record');
    if (len > MAX_RECORD_FRAGMENT) return malformed(`a record of ${len} bytes (at most ${MAX_RECORD_FRAGMENT})`);
    const fragStart = pos + 5;
    const fragEnd = fragStart + len;
    fragments.push(fragStart, fragEnd);

    // The 4-byte handshake header may itself be split over records.
    for (let i = have; i < 4 && i < have + len; i++) {
      const at = fragStart + i - have;
      if (at >= end) return more();
      const b = buf[at]!;
      if (i === 0 && b !== HANDSHAKE_CLIENT_HELLO) return malformed(`handshake type ${b}, not client_hello (1)`);
      if (i > 0) lengthField = (lengthField << 8) | b;
      if (i === 3) {
        if (lengthField < MIN_BODY) return malformed(`a ClientHello of ${lengthField} bytes`);
        total = 4 + lengthField;
      }
    }

    if (total >= 0) {
      const remaining = total - have;
      if (len >= remaining) {
        // A client sends nothing but the ClientHello in handshake records before the server answers,
        // and RFC 8446 §5.1 wants messages before a key change (0-RTT) to end on a record boundary:
        // bytes after the hello in its last record are not something to forward blindly.
        if (len > remaining) return malformed('the ClientHello ends before its record');
        if (fragEnd > maxBytes) return tooLarge();
        if (fragEnd > end) return more();
        return parse(assemble(buf, fragments, total), fragEnd);
      }
      // Not all of it in this record: at least one more record header is needed.
      if (fragEnd + 5 + remaining - len > maxBytes) return tooLarge();
    }
    if (fragEnd > end) return more();
    have += len;
    pos = fragEnd;
  }
}

/** The handshake body (without its 4-byte header): a view when it is in one record, else one copy. */
function assemble(buf: Buffer, fragments: number[], total: number): Buffer {
  if (fragments.length === 2) return buf.subarray(fragments[0]! + 4, fragments[0]! + total);
  const msg = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < fragments.length; i += 2) at += buf.copy(msg, at, fragments[i]!, fragments[i + 1]!);
  return msg.subarray(4);
}

function parse(body: Buffer, bytes: number): ClientHelloResult {
  try {
    return { kind: 'done', hello: parseBody(body, bytes) };
  } catch (e) {
    if (e instanceof Reject) return fail(e.code, e.message);
    throw e;
  }
}

function parseBody(body: Buffer, bytes: number): ClientHelloInfo {
  const r = new Reader(body);
  const legacyVersion = r.u16('legacy_version');
  if (legacyVersion >> 8 !== 3) throw bad(`legacy_version 0x${hex(legacyVersion, 4)}`);
  r.take(32, 'random');
  if (r.vec8('legacy_session_id').length > 32) throw bad('a legacy_session_id longer than 32 bytes');
  const suites = r.vec16('cipher_suites');
  if (suites.length < 2 || suites.length % 2 !== 0) throw bad(`cipher_suites of ${suites.length} bytes`);
  if (r.vec8('legacy_compression_methods').length < 1) throw bad('no compression methods');
  const hello: ClientHelloInfo = { serverName: null, alpn: [], legacyVersion, supportedVersions: [], bytes };
  // Hellos from before extensions (SSLv3, some TLS 1.0 clients) end here.
  if (r.left === 0) return hello;
  const exts = new Reader(r.vec16('extensions'));
  if (r.left !== 0) throw bad('bytes after the extensions');
  const seen = new Set<number>();
  while (exts.left > 0) {
    const type = exts.u16('extension type');
    const data = new Reader(exts.vec16(`extension ${type}`));
    // RFC 8446 §4.2: no two extensions of the same type. Matters here: two server_name extensions
    // could make the proxy route by one name and the backend answer for the other.
    if (seen.has(type)) throw bad(`extension ${type} twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) hello.serverName = serverName(data);
    else if (type === EXT_ALPN) hello.alpn = alpn(data);
    else if (type === EXT_SUPPORTED_VERSIONS) hello.supportedVersions = supportedVersions(data);
  }
  return hello;
}

/** RFC 6066 §3: a non-empty list of (name_type, name), at most one name per type. Every name type is
 * read as opaque<1..2^16-1>, as deployed stacks do (none other than host_name was ever defined). */
function serverName(ext: Reader): string | null {
  const list = new Reader(ext.vec16('server_name_list'));
  if (ext.left !== 0) throw bad('bytes after the server_name_list');
  if (list.left === 0) throw bad('an empty server_name_list');
  const types = new Set<number>();
  let host: Buffer | null = null;
  while (list.left > 0) {
    const type = list.u8('name_type');
    const name = list.vec16('server name');
    if (name.length === 0) throw bad('an empty server name');
    if (types.has(type)) throw bad(`server name type ${type} twice`);
    types.add(type);
    if (type === NAME_TYPE_HOST_NAME) host = name;
  }
  return host === null ? null : hostName(host);
}

/**
 * RFC 6066 §3: a DNS host name, ASCII, no trailing dot, no IP literal. Checked strictly (letters,
 * digits and hyphens, no label starting or ending with a hyphen, RFC 1123 §2.1) because the name picks
 * the backend: whatever is let through here ends up in routing table lookups and logs.
 */
function hostName(name: Buffer): string {
  if (name.length > MAX_HOST_NAME) throw invalid(`a server name of ${name.length} bytes`);
  let label = 0; // length of the current label
  let digitsOnly = true;
  let prev = 0;
  for (const c of name) {
    if (c === 0x2e) {
      if (label === 0) throw invalid('a server name with an empty label');
      if (prev === 0x2d) throw invalid('a server name label ending with a hyphen');
      label = 0;
      digitsOnly = true;
    } else {
      const digit = c >= 0x30 && c <= 0x39;
      const letter = (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;
      if (!digit && !letter && c !== 0x2d) throw invalid(`a server name with byte 0x${hex(c)}`);
      if (c === 0x2d && label === 0) throw invalid('a server name label starting with a hyphen');
      if (++label > 63) throw invalid('a server name label longer than 63 bytes');
      digitsOnly &&= digit;
    }
    prev = c;
  }
  if (label === 0) throw invalid('a server name with a trailing dot');
  if (prev === 0x2d) throw invalid('a server name label ending with a hyphen');
  // No top-level domain is all digits (RFC 3696 §2), while every IPv4 literal ends in digits, in
  // dotted quads as in the shorter forms inet_aton accepts ("10.1", "167772161").
  if (digitsOnly) throw invalid('a server name that is an IP address or ends in a numeric label');
  return name.toString('latin1').toLowerCase();
}

/** RFC 7301 §3.1: a non-empty list of non-empty names. */
function alpn(ext: Reader): string[] {
  const list = new Reader(ext.vec16('protocol_name_list'));
  if (ext.left !== 0) throw bad('bytes after the protocol_name_list');
  if (list.left === 0) throw bad('an empty protocol_name_list');
  const names: string[] = [];
  while (list.left > 0) {
    const name = list.vec8('protocol name');
    if (name.length === 0) throw bad('an empty ALPN protocol name');
    names.push(name.toString('latin1'));
  }
  return names;
}

/** RFC 8446 §4.2.1, the ClientHello form: versions<2..254>. */
function supportedVersions(ext: Reader): number[] {
  const list = new Reader(ext.vec8('supported_versions'));
  if (ext.left !== 0) throw bad('bytes after supported_versions');
  if (list.left < 2 || list.left % 2 !== 0) throw bad(`supported_versions of ${list.left} bytes`);
  const versions: number[] = [];
  while (list.left > 0) versions.push(list.u16('version'));
  return versions;
}

/** A cursor over a byte range; every read checks that the field fits in what is left of the range. */
class Reader {
  readonly buf: Buffer;
  pos = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  get left(): number {
    return this.buf.length - this.pos;
  }

  take(n: number, what: string): Buffer {
    if (n > this.left) throw bad(`${what} runs past its enclosing field`);
    return this.buf.subarray(this.pos, (this.pos += n));
  }

  u8(what: string): number {
    return this.take(1, what)[0]!;
  }

  u16(what: string): number {
    return u16(this.take(2, what), 0);
  }

  vec8(what: string): Buffer {
    return this.take(this.u8(`${what} length`), what);
  }

  vec16(what: string): Buffer {
    return this.take(this.u16(`${what} length`), what);
  }
}

const u16 = (b: Buffer, at: number): number => (b[at]! << 8) | b[at + 1]!;
const hex = (n: number, digits = 2): string => n.toString(16).padStart(digits, '0');
const bad = (message: string) => new Reject('client_hello_malformed', message);
const invalid = (message: string) => new Reject('sni_invalid', message);
