import { Buffer } from 'node:buffer';
import type { ErrorCode } from '../core/errors.ts';
import { latin1Recent, latin1Slice } from './latin1.ts';
import { HOST, TARGET, TCHAR } from './chars.ts';
import {
  DROP,
  dropConnectionListed,
  F_COLON,
  F_EOL,
  F_FLAG,
  F_START,
  F_VEND,
  F_VSTART,
  FIELD_STRIDE,
  connectionTokens,
  fieldStrings,
  fieldValue,
  fieldValueAt as value,
  nameIs,
  fieldKind,
  K_CONNECTION,
  K_CONTENT_LENGTH,
  K_EXPECT,
  K_FORWARDED,
  K_HOST,
  K_OTHER,
  K_TRANSFER_ENCODING,
  K_UPGRADE,
  K_VIA,
  K_X_FORWARDED_FOR,
  K_X_FORWARDED_HOST,
  K_X_FORWARDED_PROTO,
  scanFields,
} from './field-scan.ts';

/**
 * A parsed, validated request head. Framing facts are derived here once so the data path never looks
 * them up again. Fields stay in `buf` as offsets (see field-scan.ts): the ones the proxy rewrites or
 * must not forward (hop-by-hop, framing, Host, forwarding headers, names listed in Connection) carry
 * DROP; the rest are copied upstream byte for byte. Only fields the proxy reads become strings.
 */
export interface RequestHead {
  method: string;
  /** origin-form path and query ("/a?b"), or "*" for OPTIONS *. */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Host header value, or the authority of an absolute-form target (which then replaces Host). */
  host: string;
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** Lower-cased tokens of the Connection header, null when absent. */
  connection: string[] | null;
  /** Whether the client wants the connection kept open after this exchange. */
  keepAlive: boolean;
  expectContinue: boolean;
  /**
   * The Upgrade header (lower-cased) when Connection lists "upgrade" in an HTTP/1.1 request, else null
   * (RFC 9110 §7.8: a 1.0 Upgrade is ignored). Only a route that allows the protocol acts on it.
   */
  upgrade: string | null;
  /** Incoming forwarding headers (joined when repeated), null when absent. */
  xForwardedFor: string | null;
  xForwardedProto: string | null;
  xForwardedHost: string | null;
  forwarded: string | null;
  via: string | null;
  /** Bytes of the head on the wire, CRLFCRLF included. */
  headBytes: number;
  /**
   * Bytes of the request line (CRLF included) when it may be sent upstream as it came: HTTP/1.1 with
   * an origin-form or "*" target. 0 otherwise (absolute-form, CONNECT, HTTP/1.0).
   */
  lineBytes: number;
  /** The head is buf[start, start + headBytes); `fields` are offsets into `buf`. */
  buf: Buffer;
  start: number;
  fields: number[];
}

export interface RequestLimits {
  maxHeaders: number;
}

/** Parses buf[start, end) where end is just past the head's CRLFCRLF (see findHeadEnd). */
export function parseRequestHead(
  buf: Buffer,
  start: number,
  end: number,
  limits: RequestLimits,
): RequestHead | ErrorCode {
  // request-line = method SP request-target SP HTTP-version, single spaces only (RFC 9112 §3). Read
  // as bytes: the common methods are constants, and the target is the only string made.
  let i = start;
  while (TCHAR[buf[i]!] === 1) i++;
  const sp1 = i;
  if (sp1 === start || buf[sp1] !== 0x20) return 'invalid_request_line';
  i++;
  while (TARGET[buf[i]!] === 1) i++;
  const sp2 = i;
  if (sp2 === sp1 + 1 || buf[sp2] !== 0x20) return 'invalid_request_line';
  const v = sp2 + 1;
  let cr = v;
  while (cr < end && buf[cr] !== 0x0d) cr++;
  if (buf[cr + 1] !== 0x0a) return 'invalid_request_line'; // a bare CR
  // HTTP-version = "HTTP/" DIGIT "." DIGIT; only 1.1 and 1.0 are spoken here.
  if (
    cr - v !== 8 ||
    buf[v] !== 0x48 ||
    buf[v + 1] !== 0x54 ||
    buf[v + 2] !== 0x54 ||
    buf[v + 3] !== 0x50 ||
    buf[v + 4] !== 0x2f ||
    !isDigit(buf[v + 5]!) ||
    buf[v + 6] !== 0x2e ||
    !isDigit(buf[v + 7]!)
  ) {
    return 'invalid_request_line';
  }
  let minor: number;
  if (buf[v + 5] === 0x31 && buf[v + 7] === 0x31) minor = 1;
  else if (buf[v + 5] === 0x31 && buf[v + 7] === 0x30) minor = 0;
  else return 'unsupported_version';
  const method = methodName(buf, start, sp1);

  let target = latin1Recent(buf, sp1 + 1, sp2);
  let absoluteAuthority: string | null = null;
  const c0 = target.charCodeAt(0);
  if (method === 'CONNECT') {
    // authority-form only (RFC 9112 §3.2.3): "host:port" with a port. "CONNECT /" forwarded would
    // turn the upstream connection into a tunnel the proxy does not know about.
    if (!isConnectAuthority(target)) return 'invalid_connect';
    absoluteAuthority = target;
  } else if (c0 === 0x2f /* / */) {
    // origin-form: the common case.
  } else if (target === '*') {
    if (method !== 'OPTIONS') return 'invalid_request_line';
  } else {
    // absolute-form (RFC 9112 §3.2.2): the authority replaces Host.
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
    if (m === null) return 'invalid_request_line';
    absoluteAuthority = m[1] ?? '';
    const rest = m[2] ?? '';
    target = rest === '' ? '/' : rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest;
    if (target.charCodeAt(0) !== 0x2f) return 'invalid_request_line';
  }

  const fields = scanFields(buf, cr + 2, end - 2, limits.maxHeaders);
  if (typeof fields === 'string') return fields;

  let host: string | null = null;
  let hostCount = 0;
  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let connection: string[] | null = null;
  let expectContinue = false;
  let xff: string | null = null;
  let xfp: string | null = null;
  let xfh: string | null = null;
  let fwd: string | null = null;
  let via: string | null = null;
  let upgrade: string | null = null;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    switch (fieldKind(buf, fields[f + F_START]!, fields[f + F_COLON]!)) {
      case K_OTHER:
        continue; // relayed as is
      case K_EXPECT:
        if (value(buf, fields, f).toLowerCase() !== '100-continue') return 'expectation_failed';
        expectContinue = true;
        continue; // end to end: the upstream answers it
      case K_HOST:
        hostCount++;
        host = value(buf, fields, f);
        break;
      case K_CONNECTION:
        connection = connectionTokens(connection, buf, fields, f);
        break;
      case K_CONTENT_LENGTH: {
        const n = parseContentLengthAt(buf, fields[f + F_VSTART]!, fields[f + F_VEND]!);
        if (n === CL_CONFLICT) return 'conflicting_content_length';
        if (n < 0) return 'invalid_content_length';
        if (contentLength !== -1 && contentLength !== n) return 'conflicting_content_length';
        contentLength = n;
        break;
      }
      case K_TRANSFER_ENCODING:
        // Only a lone, final "chunked" is accepted: anything else is either unsupported or a
        // smuggling attempt ("chunked, identity", "xchunked", a second TE line...).
        if (teSeen || value(buf, fields, f).toLowerCase() !== 'chunked') return 'unsupported_transfer_encoding';
        teSeen = true;
        chunked = true;
        break;
      case K_VIA:
        via = join(via, value(buf, fields, f));
        break;
      case K_FORWARDED:
        fwd = join(fwd, value(buf, fields, f));
        break;
      case K_X_FORWARDED_FOR:
        xff = join(xff, value(buf, fields, f));
        break;
      case K_X_FORWARDED_HOST:
        xfh ??= value(buf, fields, f);
        break;
      case K_X_FORWARDED_PROTO:
        xfp ??= value(buf, fields, f);
        break;
      case K_UPGRADE:
        upgrade = join(upgrade, value(buf, fields, f));
        break;
      // K_TE, K_KEEP_ALIVE, K_PROXY_CONNECTION: hop-by-hop, dropped.
    }
    // Everything that reaches here is rewritten by the proxy or hop-by-hop: not copied upstream.
    fields[f + F_FLAG] = DROP;
  }
  if (chunked && contentLength !== -1) return 'ambiguous_framing';
  // RFC 9112 §6.1: chunked framing does not exist in HTTP/1.0; a 1.0 message claiming it is faulty.
  if (chunked && minor === 0) return 'transfer_encoding_http10';
  if (hostCount > 1) return 'multiple_host';
  if (absoluteAuthority !== null) {
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
    if (absoluteAuthority === '' || absoluteAuthority.charCodeAt(0) === 0x3a /* : */) return 'invalid_host';
    host = absoluteAuthority;
  } else if (host === null) {
    if (minor === 1) return 'missing_host';
    host = '';
  } else if (host === '') {
    return 'invalid_host'; // a reverse proxy routes by authority; an empty one names nothing
  }
  if (host !== lastGoodHost) {
    for (let i = 0; i < host.length; i++) if (HOST[host.charCodeAt(i)] !== 1) return 'invalid_host';
    lastGoodHost = host;
  }

  let keepAlive = minor === 1;
  if (connection !== null) {
    if (connection.includes('close')) keepAlive = false;
    else if (minor === 0 && connection.includes('keep-alive')) keepAlive = true;
  }

  if (connection !== null) dropConnectionListed(buf, fields, connection);
  if (upgrade !== null)
    upgrade = minor === 1 && connection?.includes('upgrade') === true ? upgrade.toLowerCase() : null;

  return {
    method,
    target,
    minor,
    host,
    contentLength,
    chunked,
    connection,
    keepAlive,
    expectContinue,
    upgrade,
    xForwardedFor: xff,
    xForwardedProto: xfp,
    xForwardedHost: xfh,
    forwarded: fwd,
    via,
    headBytes: end - start,
    lineBytes: minor === 1 && absoluteAuthority === null ? cr + 2 - start : 0,
    buf,
    start,
    fields,
  };
}

/**
 * Moves the head's bytes into a buffer of its own and rebases its field offsets. For a head parsed
 * in place from a read buffer that is about to be reused (direct I/O lends each read), when the head
 * is needed after the read: a request waiting for a connection, a tunnel being set up.
 */
export function ownHeadBytes(head: RequestHead): void {
  const start = head.start;
  const out = Buffer.allocUnsafe(head.headBytes);
  head.buf.copy(out, 0, start, start + head.headBytes);
  const f = head.fields;
  for (let i = 0; i < f.length; i += FIELD_STRIDE) {
    f[i + F_START]! -= start;
    f[i + F_COLON]! -= start;
    f[i + F_VSTART]! -= start;
    f[i + F_VEND]! -= start;
    f[i + F_EOL]! -= start;
  }
  head.buf = out;
  head.start = 0;
}

const NO_BYTES = Buffer.alloc(0);
/**
 * The last Host value found valid: clients repeat theirs, and the value is the same string each time
 * (latin1Recent), so it is compared (by reference, usually) rather than scanned again (~25
 * instructions a character).
 */
let lastGoodHost = '';

/**
 * Drops the head's hold on a lent read buffer it was parsed from, for when no one will read its
 * fields again (an HTTP/2 leg keeps its own list): the head then has no fields rather than offsets
 * into bytes that the next read overwrites. The strings derived at parsing stay.
 */
export function forgetHeadBytes(head: RequestHead): void {
  head.buf = NO_BYTES;
  head.start = 0;
  head.fields = [];
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** The method as a string: the common ones are constants, so no string is made per request. */
function methodName(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  const c = buf[start];
  if (n === 3 && c === 0x47 && buf[start + 1] === 0x45 && buf[start + 2] === 0x54) return 'GET';
  if (n === 4 && c === 0x50 && buf[start + 1] === 0x4f && buf[start + 2] === 0x53 && buf[start + 3] === 0x54)
    return 'POST';
  if (n === 4 && c === 0x48 && buf[start + 1] === 0x45 && buf[start + 2] === 0x41 && buf[start + 3] === 0x44)
    return 'HEAD';
  return latin1Slice(buf, start, end);
}

/** "host:port" as CONNECT names its target: a reg-name, IPv4 or [IPv6] host and a port 1-65535. */
export function isConnectAuthority(a: string): boolean {
  const colon = a.lastIndexOf(':');
  if (colon <= 0 || colon === a.length - 1) return false;
  const port = a.slice(colon + 1);
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return false;
  const host = a.slice(0, colon);
  if (host.charCodeAt(0) === 0x5b /* [ */) return /^\[[0-9a-fA-F:.]+\]$/.test(host);
  return /^[A-Za-z0-9._~!$&'()*+,;=%-]+$/.test(host);
}

function join(prev: string | null, v: string): string {
  return prev === null ? v : `${prev}, ${v}`;
}

/** First value of the request field named `lower` (lower-case), or undefined. */
export function requestField(head: RequestHead, lower: string): string | undefined {
  return fieldValue(head.buf, head.fields, lower);
}

/** Every value of the request field named `lower` (lower-case), in order. */
export function requestFieldValues(head: RequestHead, lower: string): string[] {
  const out: string[] = [];
  const { buf, fields } = head;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (nameIs(buf, fields[f + F_START]!, fields[f + F_COLON]!, lower)) out.push(value(buf, fields, f));
  }
  return out;
}

/** Every field as strings, in wire order (for tests and diagnostics; the data path never needs this). */
export function requestFields(head: RequestHead): { names: string[]; lower: string[]; values: string[] } {
  return fieldStrings(head.buf, head.fields);
}

/** parseContentLength's answer for a list of differing values ("5, 6"). */
export const CL_CONFLICT = -2;

/** 1*DIGIT, or a list of identical values ("5, 5", RFC 9110 §8.6); -1 when invalid, CL_CONFLICT when differing. */
export function parseContentLength(v: string): number {
  return parseContentLengthAt(Buffer.from(v, 'latin1'), 0, v.length);
}

/** parseContentLength over the bytes buf[start, end), so the data path never decodes the value. */
export function parseContentLengthAt(buf: Uint8Array, start: number, end: number): number {
  let n = -1;
  let cur = -1;
  let digits = 0;
  for (let i = start; i <= end; i++) {
    const c = i < end ? buf[i]! : 0x2c;
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > 15) return -1; // beyond 2^53: refuse rather than lose precision
      cur = (cur === -1 ? 0 : cur * 10) + (c - 0x30);
    } else if (c === 0x2c) {
      if (cur === -1) return -1;
      if (n !== -1 && n !== cur) return CL_CONFLICT;
      n = cur;
      cur = -1;
      digits = 0;
      while (i + 1 < end && (buf[i + 1] === 0x20 || buf[i + 1] === 0x09)) i++;
    } else {
      return -1;
    }
  }
  return n;
}
