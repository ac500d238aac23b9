/**
 * What the engine itself reads from a decoded header list (flat [name, value, ...]): the framing
 * facts it enforces (RFC 9113 §8.1.1) and tells a response head from an interim one. The message
 * rules proper are the owner's (src/forward/h2-translate.ts).
 */

/** content-length among the fields (-1: absent or not a plain number; the owner rejects the latter). */
export function contentLength(fields: readonly string[]): number {
  let v = -1;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] !== 'content-length') continue;
    const s = fields[i + 1]!;
    if (s.length > 15) return -1;
    const n = digitsValue(s);
    if (n < 0 || (v !== -1 && v !== n)) return -1;
    v = n;
  }
  return v;
}

/**
 * A string of decimal digits as its number (past 2^53 no longer exact: callers bound the length or
 * check Number.isSafeInteger), or -1 when empty or anything but digits. A loop, not a regular
 * expression and Number(): content-length is read on every response.
 */
export function digitsValue(s: string): number {
  if (s.length === 0) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

export function hasPseudo(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) if (fields[i]!.charCodeAt(0) === 0x3a) return true;
  return false;
}

/** 204 and 304 announce a length they do not send (RFC 9110 §8.6). */
export function noBodyStatus(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === ':status') return fields[i + 1] === '204' || fields[i + 1] === '304';
  }
  return false;
}

export function isInterim(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === ':status') {
      const v = fields[i + 1]!;
      return v.length === 3 && v.charCodeAt(0) === 0x31;
    }
  }
  return false;
}
