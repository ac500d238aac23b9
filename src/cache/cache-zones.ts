import type { CacheZoneConfig } from '../config/cache.ts';
import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import { CacheZone } from './cache-zone.ts';
import { DiskZone } from './disk-zone.ts';

/**
 * The process's cache zones by name (config `cache_zones`), kept across reloads: a zone whose settings
 * did not change keeps its objects; a changed one starts over; a removed one is dropped (routes of the
 * old config still holding it keep working until they are gone).
 */
export class CacheZones {
  private zones = new Map<string, { zone: CacheZone; cfg: string }>();
  private readonly log: Logger;
  /** A worker's directory under each disk zone's path (null: the path itself). */
  private readonly shard: string | null;

  constructor(log: Logger, shard: string | null = null) {
    this.log = log;
    this.shard = shard;
  }

  configure(cfgs: Record<string, CacheZoneConfig>): void {
    const next = new Map<string, { zone: CacheZone; cfg: string }>();
    for (const [name, cfg] of Object.entries(cfgs)) {
      const text = JSON.stringify(cfg);
      const old = this.zones.get(name);
      if (old !== undefined && old.cfg === text) next.set(name, old);
      else {
        const zone =
          cfg.store === 'disk'
            ? new DiskZone(
                name,
                { ...cfg, path: this.shard === null ? cfg.path : join(cfg.path!, this.shard) },
                this.log,
              )
            : new CacheZone(name, cfg);
        next.set(name, { zone, cfg: text });
      }
    }
    this.zones = next;
  }

  get(name: string): CacheZone {
    const z = this.zones.get(name);
    if (z === undefined) throw new Error(`unknown cache zone ${name}`);
    return z.zone;
  }

  all(): CacheZone[] {
    return [...this.zones.values()].map((z) => z.zone);
  }

  close(): void {
    for (const z of this.zones.values()) z.zone.close();
  }
}
