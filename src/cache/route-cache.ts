import type { RouteCacheConfig } from '../config/cache.ts';
import { type RequestHead, requestField, requestFieldValues } from '../http1/request-head.ts';
import type { FillRules } from './cache-fill.ts';
import { primaryKey } from './cache-key.ts';
import type { CacheZone } from './cache-zone.ts';

/** Methods whose success changes the resource (RFC 9111 §4.4: the cache invalidates the stored URL). */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** A route's `cache:`, compiled: its zone, how keys are made, what bypasses it. */
export class RouteCache {
  readonly zone: CacheZone;
  readonly cfg: RouteCacheConfig;
  readonly rules: FillRules;
  readonly coalesceTimeoutMs: number;
  private readonly bypassHeaders: string[];
  private readonly bypassCookies: string[];

  constructor(zone: CacheZone, cfg: RouteCacheConfig, via: string | null) {
    this.zone = zone;
    this.cfg = cfg;
    this.coalesceTimeoutMs = cfg.coalesce_timeout;
    this.rules = { ttlOverrideS: Math.ceil((cfg.ttl_override ?? 0) / 1000), name: via ?? 'muxgate', via };
    this.bypassHeaders = cfg.bypass.flatMap((b) => (b.header === undefined ? [] : [b.header]));
    this.bypassCookies = cfg.bypass.flatMap((b) => (b.cookie === undefined ? [] : [b.cookie]));
  }

  /** A bypass rule matches: the request neither reads nor fills the cache. */
  bypassed(head: RequestHead): boolean {
    for (const h of this.bypassHeaders) if (requestField(head, h) !== undefined) return true;
    if (this.bypassCookies.length === 0) return false;
    for (const c of requestFieldValues(head, 'cookie')) {
      for (const pair of c.split(';')) {
        const name = pair.slice(0, pair.indexOf('=') === -1 ? pair.length : pair.indexOf('=')).trim();
        if (this.bypassCookies.includes(name)) return true;
      }
    }
    return false;
  }

  primary(head: RequestHead, scheme: string): string {
    return primaryKey(head, scheme, this.cfg);
  }

  /** Whether a request with this method invalidates what is stored when it succeeds. */
  unsafe(method: string): boolean {
    return !SAFE.has(method);
  }

  /**
   * An unsafe request succeeded (RFC 9111 §4.4): what is stored for its URL is no longer trusted, nor
   * for the URLs its answer's Location and Content-Location name, when they are of the same origin
   * (another origin's objects are never invalidated by this one: the RFC forbids it, it would let one
   * site evict another's).
   */
  invalidate(head: RequestHead, scheme: string, status: number, locations: readonly string[]): void {
    if (SAFE.has(head.method) || status < 200 || status >= 400) return;
    this.zone.purgeUrl(this.primary(head, scheme));
    if (locations.length === 0) return;
    let base: URL;
    try {
      base = new URL(head.target.charCodeAt(0) === 0x2f ? `${scheme}://${head.host}${head.target}` : head.target);
    } catch {
      return;
    }
    for (const loc of locations) {
      let u: URL;
      try {
        u = new URL(loc, base);
      } catch {
        continue; // not a URI reference: nothing to invalidate
      }
      if (u.origin !== base.origin) continue;
      this.zone.purgeUrl(this.primary({ ...head, target: `${u.pathname}${u.search}` }, scheme));
    }
  }
}
