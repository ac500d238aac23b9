import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheZoneConfig } from '../config/cache.ts';
import type { Logger } from '../core/log.ts';
import { type CachedObject, CachePolicy } from './cached-object.ts';
import { CacheZone } from './cache-zone.ts';

/** File format: magic, the header's length (uint32 BE), the header (JSON), the body. */
const MAGIC = Buffer.from('MUXGATE-CACHE-1\n', 'latin1');
const PREFIX = MAGIC.length + 4;
/** Headers larger than this are not ours (a damaged length): the file is dropped. */
const MAX_HEADER_BYTES = 1024 * 1024;

interface FileHeader {
  key: string;
  primary: string;
  status: number;
  fields: [string, string][];
  policy: CachePolicy.CachePolicyObject;
  tags: string[];
  storedAt: number;
  vary: string[];
  bodyLength: number;
}

/**
 * A cache zone on disk (`store: disk`): one file per object under `path`, written to a temporary name
 * and renamed into place once complete, so a crash or a full disk leaves either the whole object or
 * nothing under an object's name. Bodies stay on disk (read when served, checked against the length
 * their header states); the index (CacheZone's, bounded by max_bytes) is in memory and rebuilt from
 * the files' headers on start, when leftover temporary files and damaged or truncated objects are
 * deleted. An object whose write fails is dropped from the index.
 */
export class DiskZone extends CacheZone {
  private readonly dir: string;
  private readonly log: Logger;
  /** Objects found on start / dropped as damaged then (for the start-up log and tests). */
  readonly loaded: { objects: number; damaged: number; partial: number };

  constructor(name: string, cfg: CacheZoneConfig, log: Logger) {
    super(name, cfg);
    this.dir = cfg.path!;
    this.log = log;
    mkdirSync(this.dir, { recursive: true });
    this.loaded = this.rebuild();
    log.info({ zone: name, path: this.dir, ...this.loaded }, 'cache zone loaded from disk');
  }

  override bodyOf(o: CachedObject, cb: (body: Buffer | null) => void): void {
    if (o.body !== null) {
      cb(o.body);
      return;
    }
    const file = o.file;
    if (file === null) {
      cb(null);
      return;
    }
    readFile(file).then(
      (data) => {
        const body = bodyIn(data, o.bodyLength);
        if (body === null) this.damaged(o, 'length does not match its header');
        cb(body);
      },
      (err: NodeJS.ErrnoException) => {
        this.damaged(o, err.code ?? err.message);
        cb(null);
      },
    );
  }

  /** Writes a stored object out; the body leaves memory once its file is in place. */
  protected override stored(o: CachedObject): void {
    const body = o.body;
    if (body === null) return;
    const vary = this.varyOf(o.primary) ?? [];
    const header: FileHeader = {
      key: o.key,
      primary: o.primary,
      status: o.status,
      fields: o.fields,
      policy: o.policy.toObject(),
      tags: o.tags,
      storedAt: o.storedAt,
      vary,
      bodyLength: body.length,
    };
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(json.length);
    const base = `${createHash('sha256').update(o.key).digest('hex').slice(0, 32)}-${randomBytes(4).toString('hex')}`;
    const tmp = join(this.dir, `${base}.tmp`);
    const final = join(this.dir, `${base}.obj`);
    writeWhole(tmp, [MAGIC, len, json, body])
      .then(() => rename(tmp, final))
      .then(
        () => {
          // Still the zone's object (not purged or replaced meanwhile)? Then it lives on disk now.
          if (this.lru.peek(o.key) === o) {
            o.file = final;
            o.body = null;
          } else unlink(final).catch(() => {});
        },
        async (err: NodeJS.ErrnoException) => {
          // Gone before the object leaves the index: no partial file outlives the failure.
          await unlink(tmp).catch(() => {});
          this.log.warn(
            { zone: this.name, err: err.code ?? err.message },
            'cache: an object could not be written; dropped',
          );
          if (this.lru.peek(o.key) === o) this.drop(o.key);
        },
      );
  }

  protected override removed(o: CachedObject): void {
    if (o.file !== null) unlink(o.file).catch(() => {});
  }

  private damaged(o: CachedObject, why: string): void {
    this.log.warn({ zone: this.name, file: o.file, why }, 'cache: a stored object could not be read; dropped');
    if (this.lru.peek(o.key) === o) this.drop(o.key);
  }

  /** Reads every object's header; keeps the newest complete object per key, deletes the rest. */
  private rebuild(): { objects: number; damaged: number; partial: number } {
    let damaged = 0;
    let partial = 0;
    const found: { header: FileHeader; file: string }[] = [];
    for (const name of readdirSync(this.dir)) {
      const file = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        // A write that never finished (a crash, a full disk).
        partial++;
        removeQuietly(file);
        continue;
      }
      if (!name.endsWith('.obj')) continue;
      const header = readHeader(file);
      if (header === null) {
        damaged++;
        removeQuietly(file);
        continue;
      }
      found.push({ header, file });
    }
    // Oldest first: a newer object for the same key replaces an older one (which is deleted).
    found.sort((a, b) => a.header.storedAt - b.header.storedAt);
    const stores = this.counters.stores;
    for (const { header: h, file } of found) {
      const o: CachedObject = {
        key: h.key,
        primary: h.primary,
        status: h.status,
        fields: h.fields,
        body: null,
        bodyLength: h.bodyLength,
        file,
        policy: CachePolicy.fromObject(h.policy),
        tags: h.tags,
        storedAt: h.storedAt,
      };
      const old = this.lru.peek(h.key);
      if (!this.set(o, h.vary)) removeQuietly(file);
      else if (old?.file != null) removeQuietly(old.file);
    }
    // Loading is not storing.
    this.counters.stores = stores;
    return { objects: this.objects, damaged, partial };
  }
}

/** The body of a whole file, or null when the file is not as long as its header says. */
function bodyIn(data: Buffer, bodyLength: number): Buffer | null {
  if (data.length < PREFIX || !data.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const start = PREFIX + data.readUInt32BE(MAGIC.length);
  return data.length === start + bodyLength ? data.subarray(start) : null;
}

/** An object file's header, or null when it is damaged or truncated. */
function readHeader(file: string): FileHeader | null {
  let fd = -1;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const prefix = Buffer.alloc(PREFIX);
    if (readSync(fd, prefix, 0, PREFIX, 0) !== PREFIX || !prefix.subarray(0, MAGIC.length).equals(MAGIC)) return null;
    const n = prefix.readUInt32BE(MAGIC.length);
    if (n > MAX_HEADER_BYTES || PREFIX + n > size) return null;
    const json = Buffer.alloc(n);
    if (readSync(fd, json, 0, n, PREFIX) !== n) return null;
    const h = JSON.parse(json.toString('utf8')) as FileHeader;
    if (typeof h.key !== 'string' || typeof h.bodyLength !== 'number') return null;
    // Truncated (or grown): the body is not the length the header states.
    if (size !== PREFIX + n + h.bodyLength) return null;
    return h;
  } catch {
    return null;
  } finally {
    if (fd !== -1) closeSync(fd);
  }
}

async function writeWhole(file: string, parts: Buffer[]): Promise<void> {
  const fh = await open(file, 'wx');
  try {
    const { bytesWritten } = await fh.writev(parts);
    let total = 0;
    for (const p of parts) total += p.length;
    if (bytesWritten !== total) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
    // Durable before it is renamed into place: after a crash the name never points at a partial file.
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
