import { TCHAR } from '../http1/chars.ts';

/**
 * The character rules of an HTTP/2 field (RFC 9113 §8.2.1), which make a message malformed when
 * broken. The HPACK decoder applies them once per distinct string it decodes (and remembers the
 * result with the string), so a block made of strings already seen is known clean without a scan;
 * the message rules (src/forward/h2-translate.ts) apply them to blocks not known clean.
 */

/** A value with no NUL, CR or LF, no leading or trailing SP or HTAB (and, from a JS string, no char above 0xff). */
export function safeValue(v: string): boolean {
  const n = v.length;
  if (n > 0) {
    const a = v.charCodeAt(0);
    const z = v.charCodeAt(n - 1);
    if (a === 0x20 || a === 0x09 || z === 0x20 || z === 0x09) return false;
  }
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d || c > 0xff) return false;
  }
  return true;
}

/** A regular field name: a token with no upper case (§8.2.1: upper case is malformed). */
export function lowerToken(name: string): boolean {
  if (name === '') return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** The string may be a field value. */
export const VALUE_OK = 1;
/**
 * The string may be a field name: a lower-case token, or a pseudo-field name (":" first), which the
 * message rules compare with the names they know one by one.
 */
export const NAME_OK = 2;

/** VALUE_OK and NAME_OK as they apply to `s`. */
export function syntaxFlags(s: string): number {
  let f = safeValue(s) ? VALUE_OK : 0;
  if (s.charCodeAt(0) === 0x3a || lowerToken(s)) f |= NAME_OK;
  return f;
}
