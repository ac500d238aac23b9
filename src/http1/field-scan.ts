import { Buffer } from 'node:buffer';
import type { ErrorCode } from '../core/errors.ts';
import { FIELD_VALUE, TCHAR } from './chars.ts';
import { latin1Recent } from './latin1.ts';

/**
 * Field lines scanned as bytes, without making strings: each field is recorded as offsets into the
 * head's buffer, so fields that only pass through are copied as bytes and only the few the proxy
 * reads are ever decoded. Layout per field in the offsets array (FIELD_STRIDE numbers):
 * line start, colon, value start, value end (OWS trimmed), line end (the CR), and a flag slot the
 * caller may use (e.g. "drop this line").
 */
export const F_START = 0;
export const F_COLON = 1;
export const F_VSTART = 2;
export const F_VEND = 3;
export const F_EOL = 4;
export const F_FLAG = 5;
export const FIELD_STRIDE = 6;

/**
 * Scans CRLF-terminated field lines in buf[pos, end), where `end` is the CR of the empty line that
 * closes the head. Strict (RFC 9112 §5): no whitespace before the colon, no obs-fold, no control
 * characters in values. Returns the offsets (FIELD_STRIDE numbers per field), or the error code.
 */
export function scanFields(
  buf: Uint8Array,
  pos: number,
  end: number,
  maxFields: number,
  reuse: number[] | null = null,
): number[] | ErrorCode {
  // `reuse`: fill this array (and return it) instead of a new one, for a caller that is done with the
  // offsets before the next parse.
  const scratch = reuse ?? shared;
  let n = 0;
  while (pos < end) {
    const c0 = buf[pos]!;
    if (c0 === 0x20 || c0 === 0x09) return 'obs_fold';
    let i = pos;
    while (TCHAR[buf[i]!] === 1) i++;
    if (i === pos || buf[i] !== 0x3a /* : */) return 'invalid_header';
    const colon = i++;
    while (buf[i] === 0x20 || buf[i] === 0x09) i++;
    const vs = i;
    let c = buf[i]!;
    while (c !== 0x0d) {
      if (FIELD_VALUE[c] !== 1) return 'invalid_header';
      c = buf[++i]!;
    }
    if (buf[i + 1] !== 0x0a) return 'invalid_header'; // a bare CR inside the line
    const eol = i;
    while (i > vs && (buf[i - 1] === 0x20 || buf[i - 1] === 0x09)) i--;
    if (n === maxFields * FIELD_STRIDE) return 'too_many_headers';
    scratch[n] = pos;
    scratch[n + 1] = colon;
    scratch[n + 2] = vs;
    scratch[n + 3] = i;
    scratch[n + 4] = eol;
    scratch[n + 5] = 0;
    n += FIELD_STRIDE;
    pos = eol + 2;
  }
  if (reuse !== null) {
    reuse.length = n;
    return reuse;
  }
  // One exactly-sized copy per head, instead of an array grown push by push.
  return shared.slice(0, n);
}

/** Scan space shared by every parse (parsing is synchronous); it keeps its capacity. */
const shared: number[] = [];

/** Case-insensitive compare of a field name in buf[start, start + lower.length) with a lower-case name. */
export function nameIs(buf: Uint8Array, start: number, colon: number, lower: string): boolean {
  const n = lower.length;
  if (colon - start !== n) return false;
  // Names are tchars, so OR-ing 0x20 lower-cases letters and leaves '-' and digits alone.
  for (let i = 0; i < n; i++) if ((buf[start + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** Bytes of the field lines not flagged DROP (CRLF included). */
export function keptFieldBytes(fields: readonly number[]): number {
  let n = 0;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (fields[f + F_FLAG] !== DROP) n += fields[f + F_EOL]! + 2 - fields[f + F_START]!;
  }
  return n;
}

/** Flag of a field that is not relayed. */
export const DROP = 1;

/**
 * A head as bytes: `first` (the start line and any fields the proxy writes first), the kept field
 * lines of `buf` copied as they came, then `tail` and the empty line. Strings are latin1.
 */
export function renderHead(first: string, buf: Buffer, fields: readonly number[], tail: string): Buffer {
  const out = Buffer.allocUnsafe(first.length + keptFieldBytes(fields) + tail.length + 2);
  let off = out.write(first, 0, 'latin1');
  off = copyKeptFields(buf, fields, out, off);
  off += out.write(tail, off, 'latin1');
  out[off] = 0x0d;
  out[off + 1] = 0x0a;
  return out;
}

/**
 * Copies the field lines not flagged DROP (CRLF included) into `out` at `off`; returns the new offset.
 * Lines are adjacent in `buf`, so each run of kept lines is one copy (each `copy` is a call into C++).
 */
export function copyKeptFields(buf: Buffer, fields: readonly number[], out: Buffer, off: number): number {
  let runStart = -1;
  let runEnd = -1;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (fields[f + F_FLAG] === DROP) continue;
    const start = fields[f + F_START]!;
    if (start !== runEnd) {
      if (runStart !== -1) off += buf.copy(out, off, runStart, runEnd);
      runStart = start;
    }
    runEnd = fields[f + F_EOL]! + 2;
  }
  if (runStart !== -1) off += buf.copy(out, off, runStart, runEnd);
  return off;
}

/** The value of field `f` (an index into the offsets) as a latin1 string. */
export function fieldValueAt(buf: Buffer, fields: readonly number[], f: number): string {
  return latin1Recent(buf, fields[f + F_VSTART]!, fields[f + F_VEND]!);
}

/** First value of the field named `lower`, or undefined. */
export function fieldValue(buf: Buffer, fields: readonly number[], lower: string): string | undefined {
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    if (nameIs(buf, fields[f + F_START]!, fields[f + F_COLON]!, lower)) return fieldValueAt(buf, fields, f);
  }
  return undefined;
}

/** Every field as strings, in wire order (for tests and diagnostics; the data path never needs this). */
export function fieldStrings(
  buf: Buffer,
  fields: readonly number[],
): { names: string[]; lower: string[]; values: string[] } {
  const names: string[] = [];
  const values: string[] = [];
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    names.push(buf.toString('latin1', fields[f + F_START], fields[f + F_COLON]));
    values.push(fieldValueAt(buf, fields, f));
  }
  return { names, lower: names.map((n) => n.toLowerCase()), values };
}

/** Flags every field whose name is listed in Connection (RFC 9110 §7.6.1: those are hop-by-hop too). */
export function dropConnectionListed(buf: Buffer, fields: number[], connection: readonly string[]): void {
  for (const token of connection) {
    if (token === 'close' || token === 'keep-alive') continue;
    for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
      if (nameIs(buf, fields[f + F_START]!, fields[f + F_COLON]!, token)) fields[f + F_FLAG] = DROP;
    }
  }
}

// A Connection field with only "keep-alive" or only "close" (nearly all of them) shares one list.
// Token lists are never modified by their readers; push() and appendTokens() copy a shared one before adding.
const ONLY_KEEP_ALIVE: readonly string[] = ['keep-alive'];
const ONLY_CLOSE: readonly string[] = ['close'];

/** Adds the lower-cased, trimmed tokens of a comma-separated field value (e.g. Connection) to a list. */
export function appendTokens(into: string[] | null, value: string): string[] {
  const out = into === null ? [] : into === ONLY_KEEP_ALIVE || into === ONLY_CLOSE ? [...into] : into;
  // The usual values, without splitting.
  if (value === 'keep-alive' || value === 'close') {
    out.push(value);
    return out;
  }
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '') out.push(t);
  }
  return out;
}

/**
 * Adds the tokens of Connection field `f` to a list. The two values nearly every peer sends,
 * "keep-alive" and "close", are recognised on the bytes without decoding.
 */
export function connectionTokens(into: string[] | null, buf: Buffer, fields: readonly number[], f: number): string[] {
  const vs = fields[f + F_VSTART]!;
  const ve = fields[f + F_VEND]!;
  if (nameIs(buf, vs, ve, 'keep-alive')) return push(into, 'keep-alive');
  if (nameIs(buf, vs, ve, 'close')) return push(into, 'close');
  return appendTokens(into, fieldValueAt(buf, fields, f));
}

function push(into: string[] | null, token: 'keep-alive' | 'close'): string[] {
  if (into === null) return (token === 'close' ? ONLY_CLOSE : ONLY_KEEP_ALIVE) as string[];
  if (into === ONLY_KEEP_ALIVE || into === ONLY_CLOSE) return [...into, token];
  into.push(token);
  return into;
}

// The fields the proxy acts on, by name (what each parser does with them is its own business).
export const K_OTHER = 0;
export const K_TE = 1;
export const K_VIA = 2;
export const K_HOST = 3;
export const K_EXPECT = 4;
export const K_UPGRADE = 5;
export const K_FORWARDED = 6;
export const K_CONNECTION = 7;
export const K_KEEP_ALIVE = 8;
export const K_CONTENT_LENGTH = 9;
export const K_X_FORWARDED_FOR = 10;
export const K_PROXY_CONNECTION = 11;
export const K_X_FORWARDED_HOST = 12;
export const K_TRANSFER_ENCODING = 13;
export const K_X_FORWARDED_PROTO = 14;

/**
 * Which known field buf[start, colon) names, case-insensitively, or K_OTHER. Dispatches on the
 * name's length first, so the usual field costs one switch and at most one compare.
 */
export function fieldKind(buf: Uint8Array, start: number, colon: number): number {
  switch (colon - start) {
    case 2:
      return nameIs(buf, start, colon, 'te') ? K_TE : K_OTHER;
    case 3:
      return nameIs(buf, start, colon, 'via') ? K_VIA : K_OTHER;
    case 4:
      return nameIs(buf, start, colon, 'host') ? K_HOST : K_OTHER;
    case 6:
      return nameIs(buf, start, colon, 'expect') ? K_EXPECT : K_OTHER;
    case 7:
      return nameIs(buf, start, colon, 'upgrade') ? K_UPGRADE : K_OTHER;
    case 9:
      return nameIs(buf, start, colon, 'forwarded') ? K_FORWARDED : K_OTHER;
    case 10:
      if (nameIs(buf, start, colon, 'connection')) return K_CONNECTION;
      return nameIs(buf, start, colon, 'keep-alive') ? K_KEEP_ALIVE : K_OTHER;
    case 14:
      return nameIs(buf, start, colon, 'content-length') ? K_CONTENT_LENGTH : K_OTHER;
    case 15:
      return nameIs(buf, start, colon, 'x-forwarded-for') ? K_X_FORWARDED_FOR : K_OTHER;
    case 16:
      if (nameIs(buf, start, colon, 'proxy-connection')) return K_PROXY_CONNECTION;
      return nameIs(buf, start, colon, 'x-forwarded-host') ? K_X_FORWARDED_HOST : K_OTHER;
    case 17:
      if (nameIs(buf, start, colon, 'transfer-encoding')) return K_TRANSFER_ENCODING;
      return nameIs(buf, start, colon, 'x-forwarded-proto') ? K_X_FORWARDED_PROTO : K_OTHER;
    default:
      return K_OTHER;
  }
}
