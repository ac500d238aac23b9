import type { RouteCacheConfig } from '../config/cache.ts';
import { type RequestHead, requestFields, requestFieldValues } from '../http1/request-head.ts';
import type CachePolicy from 'http-cache-semantics';

/**
 * Cache keys. The primary key names a URL: scheme://authority + path + query (the query left out or
 * its parameters sorted when configured), then the values of the route's `key.fields`. Only GET
 * responses are stored (HEAD is served from them), so the method is implied. A variant key adds the
 * values of the fields the stored response Varies on.
 */
export function primaryKey(head: RequestHead, scheme: string, cfg: RouteCacheConfig): string {
  let target = head.target;
  // absolute-form (a request to a proxy): the authority is in the target, as the Host field says too.
  if (target.charCodeAt(0) !== 0x2f) {
    const slash = target.indexOf('/', target.indexOf('//') + 2);
    target = slash === -1 ? '/' : target.slice(slash);
  }
  const q = target.indexOf('?');
  let path = target;
  if (q !== -1) {
    path = target.slice(0, q);
    if (!cfg.ignore_query) {
      const query = target.slice(q + 1);
      path += `?${cfg.key.sort_query ? query.split('&').sort().join('&') : query}`;
    }
  }
  let key = `${scheme}://${head.host.toLowerCase()}${path}`;
  for (const f of cfg.key.fields) key += `\n${f}: ${requestFieldValues(head, f).join(', ')}`;
  return key;
}

/**
 * The variant of `primary` a request selects, given the fields stored responses Vary on; `headers`:
 * the request's fields as policyRequest made them (repeated ones joined).
 */
export function variantKey(
  primary: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  vary: readonly string[],
): string {
  let key = primary;
  for (const f of vary) key += `\n~${f}: ${headers[f] ?? ''}`;
  return key;
}

/** The fields a response Varies on (lower-case, sorted), or null for `Vary: *` (never stored). */
export function varyFields(fields: readonly (readonly [string, string])[]): string[] | null {
  const names = new Set<string>();
  for (const [n, v] of fields) {
    if (n !== 'vary') continue;
    for (const part of v.split(',')) {
      const name = part.trim().toLowerCase();
      if (name === '*') return null;
      if (name !== '') names.add(name);
    }
  }
  return [...names].sort();
}

/**
 * The request as http-cache-semantics reads it: its fields (repeated ones joined), GET for HEAD, and
 * `url` the primary key, so that requests the key makes one (a sorted or ignored query) are one URL.
 * Strings only: it outlives the request head, whose bytes may be a shared read buffer.
 */
export function policyRequest(head: RequestHead, url: string): CachePolicy.Request {
  const { lower, values } = requestFields(head);
  const headers: Record<string, string> = {};
  for (let i = 0; i < lower.length; i++) {
    const n = lower[i]!;
    const prev = headers[n];
    headers[n] = prev === undefined ? values[i]! : `${prev}, ${values[i]!}`;
  }
  headers.host = head.host.toLowerCase();
  return { url, method: head.method === 'HEAD' ? 'GET' : head.method, headers };
}
