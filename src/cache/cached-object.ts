import type { Buffer } from 'node:buffer';
import CachePolicy from 'http-cache-semantics';

/**
 * One stored response: a variant of one URL (its `primary` key), complete (a response cut short is
 * never stored). `fields` are the end-to-end fields as the upstream sent them, lower-case, without
 * framing (Content-Length, Transfer-Encoding) and Age, which are restated when it is served. The
 * freshness decisions are the `policy`'s (RFC 9111, http-cache-semantics).
 */
export interface CachedObject {
  /** The variant's key: the primary key, then the values of the fields the response Varies on. */
  key: string;
  /** method + scheme + authority + path + query (+ configured fields): what purge by URL or prefix matches. */
  primary: string;
  status: number;
  fields: [string, string][];
  /** The body, or null while it is only on disk (a disk zone reads it when it is served). */
  body: Buffer | null;
  bodyLength: number;
  /** A disk zone's file holding it (null: not written, or a memory zone). */
  file: string | null;
  policy: CachePolicy;
  /** Surrogate-Key / Cache-Tag values: purge by tag. */
  tags: string[];
  /** Date.now() when stored. */
  storedAt: number;
}

/** Bytes an object is charged for in its zone: the body, the fields, and a fixed share for the rest. */
export function objectSize(o: CachedObject): number {
  let n = o.bodyLength + o.key.length + 256;
  for (const [name, value] of o.fields) n += name.length + value.length + 4;
  return n;
}

/** Object-valued headers for http-cache-semantics from [name, value] pairs (repeated names joined). */
export function headerObject(fields: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of fields) {
    const prev = out[n];
    out[n] = prev === undefined ? v : `${prev}, ${v}`;
  }
  return out;
}

/** The fields of `o` that name it for purging: Surrogate-Key (space-separated) and Cache-Tag (commas). */
export function tagsOf(fields: readonly (readonly [string, string])[]): string[] {
  const tags: string[] = [];
  for (const [n, v] of fields) {
    if (n === 'surrogate-key') for (const t of v.split(' ')) if (t !== '') tags.push(t);
    if (n === 'cache-tag') for (const t of v.split(',')) if (t.trim() !== '') tags.push(t.trim());
  }
  return tags;
}

export { CachePolicy };
