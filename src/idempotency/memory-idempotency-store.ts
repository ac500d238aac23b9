/**
 * The Idempotency-Key store of one proxy process (no Redis): keys live in an LRU bounded both in count
 * (`max_keys`) and in bytes (`max_bytes`). Good for a single instance; behind a load balancer with
 * several proxies, a retry that lands on another one is not recognised (use the Redis store).
 *
 * Eviction order is the order entries were written (lookups use `peek`, which does not refresh
 * recency). Every entry expires a fixed time after its write (`ttl`, or `lock_ttl` for a lock), so the
 * oldest write is also the first to expire: under pressure the store drops expired entries first, then
 * the responses closest to expiry. A lock is only evicted while live if `max_keys` (or `max_bytes`)
 * worth of keys arrived within one `lock_ttl`, i.e. the store is far too small; a retry could then run
 * alongside the first request, and the first one's `complete` finds its lock gone and stores nothing.
 *
 * Expiry is checked on access against an injectable clock rather than lru-cache's own TTL, so tests
 * move time by hand; expired entries that are never looked up again stay until evicted, within the bounds.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { assertFingerprint } from './fingerprint.ts';
import type { BeginResult, IdempotencyStore, StoredResponse, StoreStateListener } from './idempotency-store.ts';
import { responseTooLarge } from './idempotency-store-error.ts';
import { type StoreLimits, storeLimits } from './store-limits.ts';

export interface MemoryIdempotencyStoreOptions extends Partial<StoreLimits> {
  /** Most keys held, locks and responses together (`max_keys`). */
  maxKeys?: number;
  /** Most bytes held, bodies and headers plus a per-entry overhead (`max_bytes`). */
  maxBytes?: number;
  /** Milliseconds on a monotonic clock; tests pass their own. */
  now?: () => number;
}

interface LockEntry {
  readonly kind: 'lock';
  readonly fingerprint: string;
  readonly token: string;
  readonly expiresAt: number;
}

interface ResponseEntry {
  readonly kind: 'response';
  readonly fingerprint: string;
  readonly response: StoredResponse;
  readonly expiresAt: number;
}

type Entry = LockEntry | ResponseEntry;

/**
 * A rough cost of an entry beyond its strings and body (the LRU's slots, the entry and response
 * objects, the map key), so that `max_bytes` also bounds a flood of small entries.
 */
const ENTRY_OVERHEAD_BYTES = 256;

export const DEFAULT_MAX_KEYS = 100_000;
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly limits: StoreLimits;
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly cache: LRUCache<string, Entry>;

  constructor(opts: MemoryIdempotencyStoreOptions = {}) {
    this.limits = storeLimits(opts);
    const maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new RangeError('maxKeys must be a positive integer');
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) {
      throw new RangeError('maxBytes must be a positive integer');
    }
    if (this.limits.maxBodyBytes > this.maxBytes) throw new RangeError('maxBodyBytes must not exceed maxBytes');
    this.now = opts.now ?? (() => performance.now());
    this.cache = new LRUCache<string, Entry>({
      max: maxKeys,
      maxSize: this.maxBytes,
      sizeCalculation: entrySize,
    });
  }

  /** Keys held now, expired ones not yet evicted included. */
  get keys(): number {
    return this.cache.size;
  }

  /** Bytes held now, as counted against `max_bytes`. */
  get bytes(): number {
    return this.cache.calculatedSize;
  }

  async begin(scopeKey: string, fingerprint: string): Promise<BeginResult> {
    assertFingerprint(fingerprint);
    const now = this.now();
    const entry = this.live(scopeKey, now);
    if (entry === undefined) {
      const token = randomUUID();
      this.cache.set(scopeKey, { kind: 'lock', fingerprint, token, expiresAt: now + this.limits.lockTtlMs });
      return { kind: 'run', token };
    }
    if (entry.fingerprint !== fingerprint) return { kind: 'mismatch' };
    if (entry.kind === 'lock') return { kind: 'in_flight' };
    return { kind: 'replay', response: entry.response };
  }

  async complete(scopeKey: string, token: string, response: StoredResponse): Promise<boolean> {
    if (response.body.length > this.limits.maxBodyBytes) {
      throw responseTooLarge(response.body.length, this.limits.maxBodyBytes);
    }
    const now = this.now();
    const lock = this.ownedLock(scopeKey, token, now);
    if (lock === undefined) return false;
    // Copied: the caller may reuse its buffers and arrays once this returns.
    const kept: StoredResponse = {
      status: response.status,
      headers: response.headers.map(([name, value]) => [name, value] as const),
      body: Buffer.from(response.body),
    };
    const entry: ResponseEntry = {
      kind: 'response',
      fingerprint: lock.fingerprint,
      response: kept,
      expiresAt: now + this.limits.ttlMs,
    };
    // lru-cache would refuse an entry over maxSize by deleting the key, which would look like a success.
    const size = entrySize(entry, scopeKey);
    if (size > this.maxBytes) throw responseTooLarge(size, this.maxBytes);
    this.cache.set(scopeKey, entry);
    return true;
  }

  async release(scopeKey: string, token: string): Promise<boolean> {
    if (this.ownedLock(scopeKey, token, this.now()) === undefined) return false;
    this.cache.delete(scopeKey);
    return true;
  }

  /** Never down: memory does not fail the way a network store does. */
  onStateChange(_listener: StoreStateListener): () => void {
    return () => {};
  }

  async close(): Promise<void> {
    this.cache.clear();
  }

  private live(scopeKey: string, now: number): Entry | undefined {
    const entry = this.cache.peek(scopeKey);
    if (entry === undefined || entry.expiresAt > now) return entry;
    this.cache.delete(scopeKey);
    return undefined;
  }

  private ownedLock(scopeKey: string, token: string, now: number): LockEntry | undefined {
    const entry = this.live(scopeKey, now);
    return entry?.kind === 'lock' && entry.token === token ? entry : undefined;
  }
}

/** Strings counted at one byte a character: keys and header fields are ASCII in practice. */
function entrySize(entry: Entry, scopeKey: string): number {
  let size = ENTRY_OVERHEAD_BYTES + scopeKey.length + entry.fingerprint.length;
  if (entry.kind === 'lock') return size + entry.token.length;
  const { headers, body } = entry.response;
  for (const [name, value] of headers) size += name.length + value.length;
  return size + body.length;
}
