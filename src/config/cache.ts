/**
 * The cache parts of the schema: the top-level `cache_zones` (where responses are kept, bounded in
 * bytes) and a route's `cache` (which zone, how the key is made, what bypasses it). Freshness is the
 * RFC's (RFC 9111 through http-cache-semantics), not configured here, except `ttl_override`.
 */
import { z } from 'zod';
import { TOKEN } from './addresses.ts';
import { bool, exactlyOne, expected, list, map, oneOf, text } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

const fieldName = text('a field name', TOKEN).transform((h) => h.toLowerCase());

export const cacheZone = map('a cache zone map', {
  store: oneOf(['memory', 'disk'])
    .default('memory')
    .describe('memory: in this process (lost on restart); disk: files under `path`, kept across restarts.'),
  path: text('a directory path')
    .optional()
    .describe('disk: the directory objects are written to (created if missing; one file per object).'),
  max_bytes: sizeBytes({ min: 1 })
    .prefault('256MiB')
    .describe('Bytes stored at most (bodies and heads); the least recently used objects go first.'),
  max_object_bytes: sizeBytes({ min: 1 })
    .prefault('8MiB')
    .describe('A larger response streams past without being stored.'),
}).superRefine((z0, ctx) => {
  if (z0.store === 'disk' && z0.path === undefined) {
    ctx.addIssue({ code: 'custom', path: ['path'], message: 'missing required key "path" (store disk needs one)' });
  }
});

const bypassRule = map('a bypass rule map with header or cookie', {
  header: fieldName.optional().describe('Requests carrying this field skip the cache.'),
  cookie: text('a cookie name', TOKEN).optional().describe('Requests carrying this cookie skip the cache.'),
}).superRefine(exactlyOne(['header', 'cookie']));

export const routeCache = map('a cache map', {
  zone: text('a zone name').describe('The zone (a key of `cache_zones`) responses of this route are kept in.'),
  key: map('a cache key map', {
    sort_query: bool().default(false).describe('Sort query parameters, so that ?a=1&b=2 and ?b=2&a=1 are one object.'),
    fields: list(fieldName, 'a list of request field names')
      .default([])
      .describe('Request fields whose values are part of the key (beyond what the response Varies on).'),
  })
    .prefault({})
    .describe('The key is method + scheme + authority + path + query, then these, then the Vary fields.'),
  ignore_query: bool().default(false).describe('Leave the query out of the key.'),
  ttl_override: durationMs({ min: 1 })
    .optional()
    .describe("Freshness for stored responses, instead of what the upstream's Cache-Control and Expires say."),
  bypass: list(bypassRule, 'a list of bypass rules')
    .default([])
    .describe('Requests that go upstream without looking at or filling the cache (Cache-Status: fwd=bypass).'),
  coalesce_timeout: durationMs({ min: 1 })
    .prefault('10s')
    .describe(
      'Concurrent misses for one key wait this long for the one request sent upstream, then go upstream themselves.',
    ),
});

export type CacheZoneConfig = z.output<typeof cacheZone>;
export type RouteCacheConfig = z.output<typeof routeCache>;

export const cacheZones = z
  .record(text('a zone name'), cacheZone, { error: expected('a map of zone name to cache zone') })
  .default({})
  .describe('Zone name -> where cached responses are kept. Routes with `cache:` name one.');
