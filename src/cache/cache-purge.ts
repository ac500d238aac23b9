import type { CacheZones } from './cache-zones.ts';

/** Purging from the admin API (`POST /cache/purge`): by URL (every variant), URL prefix, or tag. */
export type PurgeCommand = { op: 'purge'; zone?: string | undefined } & (
  | { url: string }
  | { prefix: string }
  | { tag: string }
);

export type PurgeResult = { ok: true; purged: number } | { ok: false; error: 'unknown_zone' };

/**
 * Applies a purge to one zone, or every zone. A URL is matched as stored: scheme://authority/path?query
 * (scheme and authority compared lower-case), which is how keys start.
 */
export function applyPurge(zones: CacheZones, cmd: PurgeCommand): PurgeResult {
  const targets = cmd.zone === undefined ? zones.all() : zones.all().filter((z) => z.name === cmd.zone);
  if (cmd.zone !== undefined && targets.length === 0) return { ok: false, error: 'unknown_zone' };
  let purged = 0;
  for (const z of targets) {
    if ('url' in cmd) purged += z.purgeUrl(normaliseUrl(cmd.url));
    else if ('prefix' in cmd) purged += z.purgePrefix(normaliseUrl(cmd.prefix));
    else purged += z.purgeTag(cmd.tag);
  }
  return { ok: true, purged };
}

/** Lower-cases the scheme and authority of "scheme://authority/..." (the path is case-sensitive). */
export function normaliseUrl(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*)(.*)$/.exec(url);
  return m === null ? url : m[1]!.toLowerCase() + m[2]!;
}

/** A purge request from a JSON body: exactly one of url, prefix or tag (strings), and maybe a zone. */
export function parsePurge(body: string): PurgeCommand | null {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const zone = o.zone;
  if (zone !== undefined && typeof zone !== 'string') return null;
  const keys = ['url', 'prefix', 'tag'].filter((k) => o[k] !== undefined);
  if (keys.length !== 1) return null;
  const k = keys[0]!;
  const value = o[k];
  if (typeof value !== 'string' || value === '') return null;
  if (k === 'url') return { op: 'purge', zone, url: value };
  if (k === 'prefix') return { op: 'purge', zone, prefix: value };
  return { op: 'purge', zone, tag: value };
}
