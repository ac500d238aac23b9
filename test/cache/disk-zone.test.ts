/**
 * A disk cache zone (`store: disk`): objects survive a restart (the index rebuilt from the files), a
 * truncated or damaged object and a leftover temporary file are never served (deleted on start, or
 * dropped when found damaged while running), and a full disk (a tiny tmpfs, root only) leaves no
 * partial object behind: the write fails, the object is dropped, the next request is a miss served whole.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { DiskZone } from '../../src/cache/disk-zone.ts';
import { tmpDir } from '../helpers/certs.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';

interface Origin {
  port: number;
  hits: Map<string, number>;
}

async function origin(t: TestContext, body: (path: string) => string): Promise<Origin> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
    res.end(body(req.url!));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as AddressInfo).port, hits };
}

async function proxyWithDisk(
  t: TestContext,
  o: Origin,
  path: string,
  zone: Record<string, unknown> = {},
): Promise<TestProxy> {
  const p = await startProxy({
    upstreams: [`127.0.0.1:${o.port}`],
    routes: [{ cluster: 'up', cache: { zone: 'disk' } }],
    config: { log_level: 'error', cache_zones: { disk: { store: 'disk', path, ...zone } } } as never,
  });
  t.after(() => p.close());
  return p;
}

/** GET with a fixed Host: the key names the authority, which is not the proxy's (new) port after a restart. */
function get(url: string): Promise<{ status: number; cache: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { host: 'cache.test' }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, cache: String(res.headers['cache-status']), body }));
      })
      .on('error', reject);
  });
}

const objects = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.obj'));
const zoneOf = (p: TestProxy): DiskZone => p.server.cacheZones.get('disk') as DiskZone;

describe('cache: a disk zone', () => {
  test('keeps its objects across a restart: the index is rebuilt from the files', async (t) => {
    const dir = tmpDir('muxgate-disk-zone-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const o = await origin(t, (p) => `body of ${p} `.repeat(500));
    const first = await proxyWithDisk(t, o, dir);
    for (const p of ['/a', '/b']) assert.equal((await get(`${first.url}${p}`)).status, 200);
    await waitUntil(() => objects(dir).length === 2, 'both objects written');
    // Served from its file now (the body left memory once written).
    const fromFile = await get(`${first.url}/a`);
    assert.match(fromFile.cache, /; hit;/);
    assert.equal(fromFile.body, 'body of /a '.repeat(500));
    await first.close();

    const second = await proxyWithDisk(t, o, dir);
    assert.deepEqual(zoneOf(second).loaded, { objects: 2, damaged: 0, partial: 0 });
    for (const p of ['/a', '/b']) {
      const r = await get(`${second.url}${p}`);
      assert.match(r.cache, /; hit;/);
      assert.equal(r.body, `body of ${p} `.repeat(500));
    }
    assert.deepEqual([o.hits.get('/a'), o.hits.get('/b')], [1, 1]);
  });

  test('a truncated object and a leftover temporary file are deleted on start, never served', async (t) => {
    const dir = tmpDir('muxgate-disk-zone-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const o = await origin(t, (p) => `whole ${p} `.repeat(300));
    const first = await proxyWithDisk(t, o, dir);
    await get(`${first.url}/cut`);
    await get(`${first.url}/kept`);
    await waitUntil(() => objects(dir).length === 2, 'both objects written');
    await first.close();
    // A crash in the middle of writing: one object short of its last bytes, one temporary file.
    const victim = zoneFile(dir, '/cut');
    truncateSync(victim, statSync(victim).size - 10);
    writeFileSync(join(dir, 'deadbeef-00000000.tmp'), 'MUXGATE-CACHE-1\npartial');

    const second = await proxyWithDisk(t, o, dir);
    assert.deepEqual(zoneOf(second).loaded, { objects: 1, damaged: 1, partial: 1 });
    assert.deepEqual(readdirSync(dir).sort(), objects(dir).sort());
    const r = await get(`${second.url}/cut`);
    assert.equal(r.body, 'whole /cut '.repeat(300));
    assert.match(r.cache, /fwd=uri-miss/);
    assert.match((await get(`${second.url}/kept`)).cache, /; hit;/);
    assert.deepEqual([o.hits.get('/cut'), o.hits.get('/kept')], [2, 1]);
  });

  test('an object damaged while running is dropped when read, and fetched again', async (t) => {
    const dir = tmpDir('muxgate-disk-zone-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const o = await origin(t, () => 'x'.repeat(4000));
    const p = await proxyWithDisk(t, o, dir);
    await get(`${p.url}/d`);
    await waitUntil(
      () => objects(dir).length === 1 && zoneOf(p).get(keyOf('/d'))?.body === null,
      'the body on disk only',
    );
    const f = zoneFile(dir, '/d');
    truncateSync(f, statSync(f).size - 1);
    const r = await get(`${p.url}/d`);
    assert.equal(r.body, 'x'.repeat(4000));
    assert.match(r.cache, /fwd=miss/);
    assert.equal(o.hits.get('/d'), 2);
  });

  test('a full disk: the write fails, nothing partial stays, the next request is a whole miss', async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to mount a tiny tmpfs (a full disk on demand)');
      return;
    }
    const dir = tmpDir('muxgate-disk-full-');
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    t.after(() => {
      execFileSync('umount', ['-l', mnt]);
      rmSync(dir, { recursive: true, force: true });
    });
    const big = 'y'.repeat(200_000);
    const o = await origin(t, () => big);
    const p = await proxyWithDisk(t, o, mnt);
    const first = await get(`${p.url}/big`);
    assert.equal(first.body, big);
    await waitUntil(() => zoneOf(p).objects === 0, 'the object dropped after its write failed');
    assert.deepEqual(readdirSync(mnt), []);
    const again = await get(`${p.url}/big`);
    assert.equal(again.body, big);
    assert.match(again.cache, /fwd=uri-miss/);
    assert.equal(o.hits.get('/big'), 2);
  });
});

/** The key of a path (Host cache.test). */
function keyOf(path: string): string {
  return `http://cache.test${path}`;
}

/** The one object file whose header names `path`. */
function zoneFile(dir: string, path: string): string {
  const hits = objects(dir).filter((f) => {
    const text = readHead(join(dir, f));
    return text.includes(`${path}"`);
  });
  assert.equal(hits.length, 1, `one file for ${path}`);
  return join(dir, hits[0]!);
}

function readHead(file: string): string {
  return execFileSync('head', ['-c', '400', file]).toString('latin1');
}
