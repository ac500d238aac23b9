import type { Buffer } from 'node:buffer';
import { LRUCache } from 'lru-cache';
import type { CacheZoneConfig } from '../config/cache.ts';
import { type CachedObject, objectSize } from './cached-object.ts';
import type { CacheFill } from './cache-fill.ts';

/** What a zone counts (the stats snapshot and the metrics read these). */
export interface ZoneCounters {
  hits: number;
  misses: number;
  /** Requests served from another request's upstream answer (coalesced misses). */
  coalesced: number;
  /** Stale objects served: stale-if-error, or a revalidation the upstream answered 304. */
  stale_served: number;
  /** Conditional requests sent upstream for a stale object. */
  revalidations: number;
  /** Requests that skipped the cache (a bypass rule, a method or request it does not serve). */
  bypassed: number;
  stores: number;
  /** Objects pushed out to stay within max_bytes. */
  evictions: number;
  purged: number;
}

interface Variants {
  /** The fields the latest stored response Varies on (lower-case, sorted). */
  vary: string[];
  keys: Set<string>;
}

/**
 * A cache zone: objects bounded in bytes, least recently used out first (lru-cache), with the indexes
 * purging needs (variants per URL, objects per tag) and the misses in flight that concurrent requests
 * for the same key wait on (coalescing). The memory store holds everything here; the disk store
 * (disk-zone.ts) keeps its bodies in files and this as its index.
 */
export class CacheZone {
  readonly name: string;
  readonly maxObjectBytes: number;
  readonly counters: ZoneCounters = {
    hits: 0,
    misses: 0,
    coalesced: 0,
    stale_served: 0,
    revalidations: 0,
    bypassed: 0,
    stores: 0,
    evictions: 0,
    purged: 0,
  };
  /** Misses being fetched, by variant key: later requests for the key wait on them. */
  readonly inflight = new Map<string, CacheFill>();
  protected readonly lru: LRUCache<string, CachedObject>;
  private readonly byUrl = new Map<string, Variants>();
  private readonly byTag = new Map<string, Set<string>>();

  constructor(name: string, cfg: CacheZoneConfig) {
    this.name = name;
    this.maxObjectBytes = cfg.max_object_bytes;
    this.lru = new LRUCache<string, CachedObject>({
      maxSize: cfg.max_bytes,
      sizeCalculation: (o) => Math.max(1, objectSize(o)),
      dispose: (o, key, reason) => this.forget(o, key, reason),
    });
  }

  get(key: string): CachedObject | undefined {
    return this.lru.get(key);
  }

  /** The fields responses for `primary` Vary on, as last stored (undefined: none stored). */
  varyOf(primary: string): string[] | undefined {
    return this.byUrl.get(primary)?.vary;
  }

  /** Stores `o` (replacing its key's object); false when it is larger than the zone may hold. */
  set(o: CachedObject, vary: string[]): boolean {
    const size = objectSize(o);
    if (size > this.lru.maxSize || o.bodyLength > this.maxObjectBytes) return false;
    let v = this.byUrl.get(o.primary);
    if (v === undefined) {
      v = { vary, keys: new Set() };
      this.byUrl.set(o.primary, v);
    } else if (v.vary.join() !== vary.join()) {
      // The response now Varies on other fields: the variants made under the old ones are unreachable.
      for (const k of [...v.keys]) if (k !== o.key) this.lru.delete(k);
      v.vary = vary;
    }
    v.keys.add(o.key);
    // A replacement under the same key: the old object's tags go (the store reuses its place).
    const old = this.lru.peek(o.key);
    if (old !== undefined) this.untag(old, o.key);
    for (const t of o.tags) {
      let s = this.byTag.get(t);
      if (s === undefined) this.byTag.set(t, (s = new Set()));
      s.add(o.key);
    }
    this.lru.set(o.key, o);
    this.counters.stores++;
    this.stored(o);
    return true;
  }

  /** Every variant of a URL (its primary key). */
  purgeUrl(primary: string): number {
    const v = this.byUrl.get(primary);
    return v === undefined ? 0 : this.purgeKeys([...v.keys]);
  }

  /** Every object whose primary key starts with `prefix`. */
  purgePrefix(prefix: string): number {
    const keys: string[] = [];
    for (const [primary, v] of this.byUrl) if (primary.startsWith(prefix)) keys.push(...v.keys);
    return this.purgeKeys(keys);
  }

  purgeTag(tag: string): number {
    const s = this.byTag.get(tag);
    return s === undefined ? 0 : this.purgeKeys([...s]);
  }

  /** `o`'s body: at once when in memory; a disk zone reads it (null: gone or damaged, and then dropped). */
  bodyOf(o: CachedObject, cb: (body: Buffer | null) => void): void {
    cb(o.body);
  }

  /** Drops one object (its body could not be read). */
  drop(key: string): void {
    this.lru.delete(key);
  }

  get objects(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  get maxBytes(): number {
    return this.lru.maxSize;
  }

  close(): void {
    for (const fill of this.inflight.values()) fill.abandon();
    this.inflight.clear();
  }

  /** The disk zone writes the object out here. */
  protected stored(_o: CachedObject): void {}

  /** The disk zone removes the object's file here. */
  protected removed(_o: CachedObject): void {}

  private purgeKeys(keys: string[]): number {
    let n = 0;
    for (const k of keys) if (this.lru.delete(k)) n++;
    this.counters.purged += n;
    return n;
  }

  private forget(o: CachedObject, key: string, reason: LRUCache.DisposeReason): void {
    // Replaced by set(), which has moved the indexes over already.
    if (reason === 'set') return;
    if (reason === 'evict') this.counters.evictions++;
    const v = this.byUrl.get(o.primary);
    if (v !== undefined) {
      v.keys.delete(key);
      if (v.keys.size === 0) this.byUrl.delete(o.primary);
    }
    this.untag(o, key);
    this.removed(o);
  }

  private untag(o: CachedObject, key: string): void {
    for (const t of o.tags) {
      const s = this.byTag.get(t);
      if (s === undefined) continue;
      s.delete(key);
      if (s.size === 0) this.byTag.delete(t);
    }
  }
}
