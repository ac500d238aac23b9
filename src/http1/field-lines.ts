import type { ErrorCode } from '../core/errors.ts';
import { FIELD_VALUE, TCHAR } from './chars.ts';

/** Header fields in wire order as parallel arrays: names as received, lower-cased names, trimmed values. */
export interface FieldLines {
  names: string[];
  lower: string[];
  values: string[];
}

/**
 * Parses CRLF-terminated field lines (RFC 9112 §5) from `text` starting at `pos`. Strict: no
 * whitespace between name and colon, no obs-fold, no control characters in values.
 */
export function parseFieldLines(text: string, pos: number, maxFields: number): FieldLines | ErrorCode {
  const names: string[] = [];
  const lower: string[] = [];
  const values: string[] = [];
  const len = text.length;
  while (pos < len) {
    const eol = text.indexOf('\r\n', pos);
    const c0 = text.charCodeAt(pos);
    if (c0 === 0x20 || c0 === 0x09) return 'obs_fold';
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > eol) return 'invalid_header';
    for (let i = pos; i < colon; i++) if (TCHAR[text.charCodeAt(i)] !== 1) return 'invalid_header';
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (text.charCodeAt(vs) === 0x20 || text.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 0x20 || text.charCodeAt(ve - 1) === 0x09)) ve--;
    for (let i = vs; i < ve; i++) if (FIELD_VALUE[text.charCodeAt(i)] !== 1) return 'invalid_header';
    if (names.length === maxFields) return 'too_many_headers';
    const name = text.slice(pos, colon);
    names.push(name);
    lower.push(name.toLowerCase());
    values.push(text.slice(vs, ve));
    pos = eol + 2;
  }
  return { names, lower, values };
}

/** Adds the lower-cased, trimmed tokens of a comma-separated field value (e.g. Connection) to a list. */
export function appendTokens(into: string[] | null, value: string): string[] {
  const out = into ?? [];
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '') out.push(t);
  }
  return out;
}
