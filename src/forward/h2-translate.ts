/**
 * HTTP/1.1 <-> HTTP/2 header translation (RFC 9113 §8.2-8.3). HTTP/2 has no connection-specific
 * fields (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), carries the request
 * target in pseudo-headers, allows only "te: trailers", and may split Cookie into several fields.
 *
 * Downstream HTTP/2 requests are turned into an HTTP/1.1 head and parsed by the same strict parser
 * as any HTTP/1.1 request, so routing, forwarding headers and every framing rule are shared. The
 * bytes written here are checked first: a value with CR, LF or NUL would otherwise become a second
 * field line in the synthesised head (header injection), so it is refused, never escaped.
 */
import { Buffer } from 'node:buffer';
import { STATUS_CODES } from 'node:http';
import type { ErrorCode } from '../core/errors.ts';
import { isToken } from '../http1/chars.ts';
import { latin1Recent } from '../http1/latin1.ts';
import { DROP, F_COLON, F_FLAG, F_START, F_VEND, F_VSTART, FIELD_STRIDE } from '../http1/field-scan.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { ResponseHead } from '../http1/response-head.ts';
import { lowerToken, safeValue } from '../http2/field-syntax.ts';
import { digitsValue } from '../http2/message-fields.ts';

/**
 * Whether a (lower-case) field name is one that only means something for one HTTP/1.1 connection:
 * malformed in HTTP/2 (§8.2.2), so never sent and refused when received. HTTP2-Settings belongs to
 * the h2c upgrade dance.
 */
export function connectionSpecific(name: string): boolean {
  // By length first: nearly every name is turned away without a comparison (this runs for every
  // field of every head; a Set look-up hashed each one).
  switch (name.length) {
    case 7:
      return name === 'upgrade';
    case 10:
      return name === 'connection' || name === 'keep-alive';
    case 14:
      return name === 'http2-settings';
    case 16:
      return name === 'proxy-connection';
    case 17:
      return name === 'transfer-encoding';
    default:
      return false;
  }
}

export interface SynthesisedHead {
  /** An HTTP/1.1 request head, CRLFCRLF included. */
  bytes: Buffer;
  /** The body has no Content-Length: it is framed as chunked in the head (the stream re-frames DATA). */
  chunked: boolean;
  /** The client sent "te: trailers" (gRPC and friends): keep asking the upstream for trailers. */
  teTrailers: boolean;
}

/**
 * An HTTP/2 request (rawHeaders: [name, value, ...] as received) as an HTTP/1.1 head, or the error
 * code it is refused with. `endStream`: the HEADERS frame ended the stream (no body). `clean`: the
 * block is known to pass the character rules (Http2Stream.fieldsClean), not scanned again.
 */
export function h2RequestHead(raw: readonly string[], endStream: boolean, clean = false): SynthesisedHead | ErrorCode {
  let method = '';
  let scheme = '';
  let path = '';
  let authority: string | null = null;
  let host: string | null = null;
  let cookie: string | null = null;
  let hasLength = false;
  let teTrailers = false;
  let fields = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (!clean && !safeValue(value)) return 'invalid_header';
    if (name.charCodeAt(0) === 0x3a /* : */) {
      if (fields !== '' || cookie !== null || host !== null || teTrailers) return 'invalid_header'; // pseudo after regular (§8.3)
      // Each pseudo-field at most once (§8.3.1).
      if (name === ':method' && method === '') method = value;
      else if (name === ':scheme' && scheme === '') scheme = value;
      else if (name === ':path' && path === '') path = value;
      else if (name === ':authority' && authority === null) authority = value;
      else return 'invalid_header'; // repeated, :protocol (extended CONNECT), :status or unknown
      if (value === '') return name === ':authority' ? 'invalid_host' : 'invalid_request_line';
      continue;
    }
    if (!clean && !lowerToken(name)) return 'invalid_header';
    if (connectionSpecific(name)) return 'invalid_header';
    if (name === 'te') {
      if (value.toLowerCase() !== 'trailers') return 'invalid_header';
      teTrailers = true;
      continue;
    }
    if (name === 'host') {
      if (host !== null) return 'multiple_host';
      host = value;
      continue;
    }
    if (name === 'cookie') {
      // §8.2.3: split cookie fields are joined with "; " for HTTP/1.1.
      cookie = cookie === null ? value : `${cookie}; ${value}`;
      continue;
    }
    if (name === 'content-length') hasLength = true;
    fields += `${name}: ${value}\r\n`;
  }
  if (method === '' || !isToken(method)) return 'invalid_request_line';
  if (method === 'CONNECT') return 'method_not_allowed';
  if (scheme !== 'http' && scheme !== 'https') return 'invalid_request_line';
  if (path === '' || (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS'))) {
    return 'invalid_request_line';
  }
  if (!safeTarget(path)) return 'invalid_request_line';
  // §8.3.1: Host and :authority must name the same thing; :authority wins when both are present.
  if (authority !== null && host !== null && authority.toLowerCase() !== host.toLowerCase()) return 'invalid_host';
  const h = authority ?? host;
  if (h === null || h === '') return 'missing_host';
  const chunked = !endStream && !hasLength;
  const head =
    `${method} ${path} HTTP/1.1\r\nhost: ${h}\r\n${fields}` +
    (cookie === null ? '' : `cookie: ${cookie}\r\n`) +
    (chunked ? 'transfer-encoding: chunked\r\n' : '') +
    '\r\n';
  return { bytes: Buffer.from(head, 'latin1'), chunked, teTrailers };
}

/**
 * The message rules every HTTP/2 request obeys, CONNECT included (RFC 9113 §8.2, §8.3): names are
 * lower-case tokens, values carry no CR, LF or NUL, pseudo-fields come first and once each, and no
 * connection-specific field appears. Returns the error code or null.
 */
export function checkH2Fields(raw: readonly string[]): ErrorCode | null {
  const seen = new Set<string>();
  let regular = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (!safeValue(raw[i + 1]!)) return 'invalid_header';
    if (name.charCodeAt(0) === 0x3a) {
      if (regular || seen.has(name)) return 'invalid_header';
      if (
        name !== ':method' &&
        name !== ':scheme' &&
        name !== ':path' &&
        name !== ':authority' &&
        name !== ':protocol'
      ) {
        return 'invalid_header';
      }
      seen.add(name);
      continue;
    }
    regular = true;
    if (!lowerToken(name) || connectionSpecific(name)) return 'invalid_header';
    if (name === 'te' && raw[i + 1]!.toLowerCase() !== 'trailers') return 'invalid_header';
  }
  return null;
}

/**
 * The HTTP/2 request for an HTTP/1.1 head, as the flat [name, value, ...] list the HPACK encoder
 * takes: pseudo-fields from the request line and Host (`method` and `protocol` for an RFC 8441
 * extended CONNECT), the client's relayed fields (names lower-cased, Cookie split into crumbs for
 * better HPACK), framing restated, and the forwarding block (`name: value\r\n` lines from
 * forwarded-headers.ts). `skip`: more field names to leave out.
 */
export function h2RequestFields(
  head: RequestHead,
  target: string,
  authority: string,
  scheme: 'http' | 'https',
  forwarding: string,
  teTrailers: boolean,
  method: string = head.method,
  protocol: string | null = null,
  skip: ReadonlySet<string> | null = null,
): string[] {
  const out: string[] = [':method', method];
  if (protocol !== null) out.push(':protocol', protocol);
  out.push(':scheme', scheme, ':authority', authority, ':path', target);
  const { buf, fields } = head;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (fields[f + F_FLAG] === DROP) continue;
    const name = lowerName(buf, fields[f + F_START]!, fields[f + F_COLON]!);
    if (connectionSpecific(name) || name === 'te' || name === 'content-length') continue;
    if (skip?.has(name)) continue;
    const value = latin1Recent(buf, fields[f + F_VSTART]!, fields[f + F_VEND]!);
    if (name === 'cookie') {
      for (const crumb of value.split(/;\s*/)) if (crumb !== '') out.push('cookie', crumb);
    } else {
      out.push(name, value);
    }
  }
  if (head.contentLength >= 0 && !skip?.has('content-length')) out.push('content-length', String(head.contentLength));
  if (teTrailers) out.push('te', 'trailers');
  pushLines(out, forwarding);
  return out;
}

/**
 * Validates a response header list from an HTTP/2 upstream (RFC 9113 §8.3.2: exactly one :status,
 * three digits, before the other fields; no other pseudo-field; §8.2: lower-case names, no CR/LF/NUL,
 * no connection-specific field). Returns the status, or -1 when malformed (upstream_protocol_error).
 * `clean`: the block is known to pass the character rules (Http2Stream.fieldsClean), not scanned again.
 * The fields stay a flat [name, value, ...] list from HPACK to whatever the client speaks.
 */
export function h2ResponseStatus(fields: readonly string[], clean = false): number {
  let status = -1;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (!clean && !safeValue(value)) return -1;
    if (name.charCodeAt(0) === 0x3a) {
      if (name !== ':status' || status !== -1 || i !== 0 || !isStatus(value)) return -1;
      status = Number(value);
      continue;
    }
    if ((!clean && !lowerToken(name)) || connectionSpecific(name)) return -1;
  }
  return status;
}

/**
 * Trailers from an HTTP/2 upstream: the message rules of fields, and no pseudo-field (§8.1).
 * `clean`: the block is known to pass the character rules (Http2Stream.fieldsClean).
 */
export function h2TrailersValid(fields: readonly string[], clean = false): boolean {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a || connectionSpecific(name)) return false;
    if (!clean && (!safeValue(fields[i + 1]!) || !lowerToken(name))) return false;
  }
  return true;
}

function isStatus(v: string): boolean {
  if (v.length !== 3) return false;
  const a = v.charCodeAt(0);
  const b = v.charCodeAt(1);
  const c = v.charCodeAt(2);
  return a >= 0x31 && a <= 0x35 && b >= 0x30 && b <= 0x39 && c >= 0x30 && c <= 0x39;
}

/** How an HTTP/1.1 response body is framed for the client. */
export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;
export const BODY_CLOSE = 3;

export interface H1ResponseHead {
  /** The head as latin1 text (one byte per character), queued as it is: the write batch copies it once. */
  readonly text: string;
  readonly framing: number;
  readonly contentLength: number;
}

/**
 * An HTTP/2 response head (flat fields, validated by h2ResponseStatus) as an HTTP/1.1 one. `noBody`:
 * HEAD, 204, 304. Without Content-Length an HTTP/1.1 client gets chunked (which can also carry
 * trailers), an HTTP/1.0 client a close-delimited body. Null when Content-Length is invalid or
 * repeated with another value.
 */
export function h1ResponseHead(
  fields: readonly string[],
  status: number,
  via: string | null,
  http10: boolean,
  noBody: boolean,
  close: boolean,
): H1ResponseHead | null {
  // Appended with += (a rope the write flattens once): measured cheaper than pieces in an array joined.
  let lines = statusLine(status);
  let length = -1;
  let lengthText = '';
  let upstreamVia: string | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a) continue;
    const v = fields[i + 1]!;
    if (name === 'content-length') {
      const n = digitsValue(v);
      if (n < 0 || !Number.isSafeInteger(n) || (length !== -1 && length !== n)) return null;
      length = n;
      lengthText = v.length === 1 || v.charCodeAt(0) !== 0x30 ? v : String(n); // no leading zeros
      continue;
    }
    if (connectionSpecific(name)) continue;
    if (name === 'via') {
      upstreamVia = upstreamVia === null ? v : `${upstreamVia}, ${v}`;
      continue;
    }
    lines += `${name}: ${v}\r\n`;
  }
  const viaValue = via === null ? upstreamVia : upstreamVia === null ? `2 ${via}` : `${upstreamVia}, 2 ${via}`;
  if (viaValue !== null) lines += `via: ${viaValue}\r\n`;
  // restated as the upstream wrote it (digits only, so the same number): no number-to-string
  if (length >= 0 && (!noBody || status !== 204)) lines += `content-length: ${lengthText}\r\n`;
  let framing: number;
  if (noBody) framing = BODY_NONE;
  else if (length >= 0) framing = BODY_LENGTH;
  else if (http10) framing = BODY_CLOSE;
  else {
    framing = BODY_CHUNKED;
    lines += 'transfer-encoding: chunked\r\n';
  }
  if (close || framing === BODY_CLOSE) lines += 'connection: close\r\n';
  else if (http10) lines += 'connection: keep-alive\r\n';
  lines += '\r\n';
  return { text: lines, framing, contentLength: length };
}

/** "HTTP/1.1 <status> <reason>\r\n", made once per status. */
const statusLines: string[] = [];
function statusLine(status: number): string {
  return (statusLines[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`);
}

/** Trailer fields (flat) as the chunked body's last chunk and trailer section. */
export function chunkedTrailers(trailers: readonly string[] | null): string {
  let out = '0\r\n';
  if (trailers !== null) {
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      const name = trailers[i]!;
      if (name.charCodeAt(0) === 0x3a || connectionSpecific(name)) continue;
      out += `${name}: ${trailers[i + 1]}\r\n`;
    }
  }
  return `${out}\r\n`;
}

/**
 * An HTTP/1.1 upstream response head for an HTTP/2 client, as the flat [name, value, ...] list the
 * HPACK encoder takes: :status, the relayed fields (names lower-cased; connection-specific ones
 * dropped), Content-Length when asked, Via. No header map in between: this runs once per response.
 */
export function h2FieldsFromH1(res: ResponseHead, via: string | null, withLength: boolean): string[] {
  const out: string[] = [':status', statusText(res.status)];
  const { buf, fields } = res;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (fields[f + F_FLAG] === DROP) continue;
    const name = lowerName(buf, fields[f + F_START]!, fields[f + F_COLON]!);
    if (connectionSpecific(name)) continue;
    out.push(name, latin1Recent(buf, fields[f + F_VSTART]!, fields[f + F_VEND]!));
  }
  if (withLength && res.contentLength >= 0) out.push('content-length', String(res.contentLength));
  const v = via === null ? res.via : res.via === null ? `1.${res.minor} ${via}` : `${res.via}, 1.${res.minor} ${via}`;
  if (v !== null) out.push('via', v);
  return out;
}

/** An HTTP/2 upstream response head (flat) for an HTTP/2 client: pseudo-fields other than :status dropped, Via added. */
export function h2FieldsFromH2(fields: readonly string[], status: number, via: string | null): string[] {
  const out: string[] = [':status', statusText(status)];
  let upstreamVia: string | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a || connectionSpecific(name)) continue;
    const v = fields[i + 1]!;
    if (name === 'via') upstreamVia = upstreamVia === null ? v : `${upstreamVia}, ${v}`;
    else out.push(name, v);
  }
  const v = via === null ? upstreamVia : upstreamVia === null ? `2 ${via}` : `${upstreamVia}, 2 ${via}`;
  if (v !== null) out.push('via', v);
  return out;
}

/** Trailers relayed as HTTP/2 trailers: pseudo and connection-specific fields never travel in them. */
export function h2TrailerFields(trailers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < trailers.length; i += 2) {
    const name = trailers[i]!;
    if (name.charCodeAt(0) === 0x3a || connectionSpecific(name)) continue;
    out.push(name, trailers[i + 1]!);
  }
  return out;
}

/** Status codes as strings, made once. */
const STATUS_TEXT: string[] = [];
function statusText(status: number): string {
  return (STATUS_TEXT[status] ??= String(status));
}

/**
 * A field name from a head's bytes, lower-cased. Common names come from a table keyed by their exact
 * bytes' length and first byte, so the usual response fields cost no new string.
 */
function lowerName(buf: Buffer, start: number, end: number): string {
  const n = end - start;
  const bucket = COMMON_NAMES[n];
  if (bucket !== undefined) {
    for (let k = 0; k < bucket.length; k++) {
      const cand = bucket[k]!;
      let i = 0;
      while (i < n && (buf[start + i]! | 0x20) === cand.charCodeAt(i)) i++;
      // `| 0x20` folds A-Z to a-z but also maps some non-letters; a name is a token, and the only
      // token characters it confuses (@ ^ _ with ` ~ DEL) do not occur in these names.
      if (i === n) return cand;
    }
  }
  return latin1Recent(buf, start, end).toLowerCase();
}

const COMMON_NAMES: string[][] = [];
for (const name of [
  'date',
  'server',
  'content-type',
  'content-length',
  'last-modified',
  'etag',
  'accept-ranges',
  'cache-control',
  'expires',
  'vary',
  'content-encoding',
  'set-cookie',
  'location',
  'x-content-type-options',
  'access-control-allow-origin',
  'strict-transport-security',
  'user-agent',
  'accept',
  'accept-encoding',
  'accept-language',
  'cookie',
  'referer',
  'origin',
  'authorization',
  'if-none-match',
  'if-modified-since',
  'x-forwarded-for',
  'x-request-id',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
]) {
  (COMMON_NAMES[name.length] ??= []).push(name);
}

/**
 * Appends "name: value\r\n" lines (the forwarding block) as flat fields. Blocks are memoised per
 * connection (forwarding-cache.ts), so the same string comes back request after request: it is split
 * once, and the same name and value strings go to HPACK each time (no new strings to allocate and hash).
 */
function pushLines(out: string[], lines: string): void {
  let fields = splitBlocks.get(lines);
  if (fields === undefined) {
    fields = [];
    let pos = 0;
    while (pos < lines.length) {
      const eol = lines.indexOf('\r\n', pos);
      const colon = lines.indexOf(':', pos);
      if (eol === -1 || colon === -1 || colon > eol) break;
      fields.push(lines.slice(pos, colon), lines.slice(colon + 2, eol));
      pos = eol + 2;
    }
    if (splitBlocks.size >= SPLIT_BLOCKS) splitBlocks.clear();
    splitBlocks.set(lines, fields);
  }
  for (let i = 0; i < fields.length; i++) out.push(fields[i]!);
}
const splitBlocks = new Map<string, string[]>();
/** Bounded: a block per client address and Host at most; clearing only costs a re-split. */
const SPLIT_BLOCKS = 1024;

/** A request target must not contain spaces or controls: it becomes part of the request line. */
function safeTarget(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c > 0xff) return false;
  }
  return true;
}
