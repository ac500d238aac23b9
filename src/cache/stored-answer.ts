import type { Buffer } from 'node:buffer';
import { requestField } from '../http1/request-head.ts';
import { LocalAnswer, type LocalAnswerTarget } from '../forward/local-answer.ts';
import type { CachedObject } from './cached-object.ts';

/** Fields a 304 carries from the stored response (RFC 9110 §15.4.5). */
const NOT_MODIFIED_FIELDS = new Set(['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary']);

/**
 * Answers a request from a stored object: the client's own conditional request (If-None-Match, else
 * If-Modified-Since) gets 304 when it matches; a single byte range of a stored 200 gets 206 (416 when
 * it lies past the end; several ranges, or an If-Range that does not match, get the whole object);
 * HEAD gets the head. Age is restated, Cache-Status and Via added.
 */
export function answerStored(
  ex: LocalAnswerTarget,
  o: CachedObject,
  body: Buffer,
  cacheStatus: string,
  via: string | null,
): void {
  const head = ex.head;
  const extra: [string, string][] = [
    ['age', String(Math.floor(o.policy.age()))],
    ['cache-status', cacheStatus],
  ];
  if (via !== null) extra.push(['via', `1.1 ${via}`]);
  if (
    o.status === 200 &&
    notModified(o, requestField(head, 'if-none-match'), requestField(head, 'if-modified-since'))
  ) {
    const fields = o.fields.filter(([n]) => NOT_MODIFIED_FIELDS.has(n));
    new LocalAnswer(ex, 304, [...fields, ...extra], -1).end();
    return;
  }
  const range =
    o.status === 200 && head.method === 'GET'
      ? rangeOf(o, body.length, requestField(head, 'range'), requestField(head, 'if-range'))
      : null;
  const size = body.length;
  if (range === 'unsatisfiable') {
    const a = new LocalAnswer(ex, 416, [...extra, ['content-range', `bytes */${size}`]], 0);
    a.end();
    return;
  }
  if (range !== null) {
    const [first, last] = range;
    const fields: [string, string][] = [...o.fields, ...extra, ['content-range', `bytes ${first}-${last}/${size}`]];
    const a = new LocalAnswer(ex, 206, fields, last - first + 1);
    a.chunk(body.subarray(first, last + 1));
    a.end();
    return;
  }
  const a = new LocalAnswer(ex, o.status, [...o.fields, ...extra], size);
  a.chunk(body);
  a.end();
}

/** RFC 9110 §13.1.2 (weak comparison) and §13.1.3: does the client already have this object? */
function notModified(o: CachedObject, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined): boolean {
  if (ifNoneMatch !== undefined) {
    const etag = fieldOf(o, 'etag');
    if (etag === undefined) return false;
    if (ifNoneMatch.trim() === '*') return true;
    const mine = weak(etag);
    return ifNoneMatch.split(',').some((t) => weak(t.trim()) === mine);
  }
  if (ifModifiedSince !== undefined) {
    const lm = fieldOf(o, 'last-modified');
    const since = Date.parse(ifModifiedSince);
    if (lm === undefined || Number.isNaN(since)) return false;
    const modified = Date.parse(lm);
    return !Number.isNaN(modified) && modified <= since;
  }
  return false;
}

/** A single satisfiable range as [first, last] (inclusive), 'unsatisfiable', or null: send the whole object. */
function rangeOf(
  o: CachedObject,
  size: number,
  range: string | undefined,
  ifRange: string | undefined,
): [number, number] | 'unsatisfiable' | null {
  if (range === undefined) return null;
  if (ifRange !== undefined && !ifRangeMatches(o, ifRange.trim())) return null;
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(range.trim());
  if (m === null) return null; // several ranges, or another unit: the whole object (RFC 9110 §14.2)
  const a = m[1]!;
  const b = m[2]!;
  if (a === '' && b === '') return null;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const first = Number(a);
  if (first >= size) return 'unsatisfiable';
  const last = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (last < first) return null; // an invalid range is ignored
  return [first, last];
}

/** If-Range: a strong entity tag equal to ours, or exactly our Last-Modified date (RFC 9110 §13.1.5). */
function ifRangeMatches(o: CachedObject, v: string): boolean {
  if (v.startsWith('"')) return fieldOf(o, 'etag') === v;
  if (v.startsWith('W/')) return false;
  const lm = fieldOf(o, 'last-modified');
  return lm !== undefined && Date.parse(lm) === Date.parse(v) && !Number.isNaN(Date.parse(v));
}

function weak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

function fieldOf(o: CachedObject, name: string): string | undefined {
  for (const [n, v] of o.fields) if (n === name) return v;
  return undefined;
}
