import type { Logger } from '../core/log.ts';
import type { IdempotencyStore } from '../idempotency/idempotency-store.ts';
import { MemoryIdempotencyStore } from '../idempotency/memory-idempotency-store.ts';
import { RedisIdempotencyStore } from '../idempotency/redis-idempotency-store.ts';
import type { StoreLimits } from '../idempotency/store-limits.ts';
import { MemoryRateLimitStore } from '../limits/memory-rate-limit-store.ts';
import type { RateLimitStore } from '../limits/rate-limit-store.ts';
import { RedisRateLimitStore } from '../limits/redis-rate-limit-store.ts';

/** A Redis URL with its password hidden, for logs. */
function shown(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/**
 * The stores behind routes' `rate_limit:` and `idempotency:`, one per distinct store (URL and limits)
 * in this process: routes that name the same Redis share its connection, and a reload that keeps a
 * store keeps it (buckets and keys held in memory survive the reload). Each Redis store's outages are
 * logged once when they begin and once when they end.
 */
export class AdmissionStores {
  private readonly log: Logger;
  private readonly rate = new Map<string, RateLimitStore>();
  private readonly idem = new Map<string, IdempotencyStore>();

  constructor(log: Logger) {
    this.log = log;
  }

  rateLimit(store: string): RateLimitStore {
    let s = this.rate.get(store);
    if (s === undefined) {
      if (store === 'memory') s = new MemoryRateLimitStore();
      else {
        const redis = new RedisRateLimitStore({ url: store });
        redis.onStateChange((state, cause) => this.told('rate_limit', store, state, cause));
        s = redis;
      }
      this.rate.set(store, s);
    }
    return s;
  }

  idempotency(store: string, limits: StoreLimits & { maxKeys: number }): IdempotencyStore {
    const id = `${store}|${limits.ttlMs}|${limits.lockTtlMs}|${limits.maxBodyBytes}|${limits.maxKeys}`;
    let s = this.idem.get(id);
    if (s === undefined) {
      s =
        store === 'memory' ? new MemoryIdempotencyStore(limits) : new RedisIdempotencyStore({ url: store, ...limits });
      s.onStateChange((state, cause) => this.told('idempotency', store, state, cause));
      this.idem.set(id, s);
    }
    return s;
  }

  /**
   * Resolves once every Redis store has connected, or after `timeoutMs` (stores still down then keep
   * trying; their routes apply on_store_error meanwhile).
   */
  async ready(timeoutMs: number): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const s of this.rate.values()) {
      if (s instanceof RedisRateLimitStore && s.state !== 'up') {
        waits.push(
          new Promise<void>((resolve) => {
            const off = s.onStateChange((state) => {
              if (state === 'up') {
                off();
                resolve();
              }
            });
          }),
        );
      }
    }
    for (const s of this.idem.values()) if (s instanceof RedisIdempotencyStore) waits.push(s.ready());
    if (waits.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(waits),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private told(use: string, url: string, state: 'up' | 'down', cause: unknown): void {
    const store = shown(url);
    if (state === 'down') {
      this.log.warn(
        { store, use, err: cause instanceof Error ? cause.message : String(cause) },
        `${use} store unavailable: applying on_store_error until it is back`,
      );
    } else this.log.info({ store, use }, `${use} store available again`);
  }

  async close(): Promise<void> {
    const all = [...this.rate.values(), ...this.idem.values()];
    this.rate.clear();
    this.idem.clear();
    await Promise.allSettled(all.map((s) => s.close()));
  }
}
