// The `cache` figure (issue 18): cached hits and the thundering herd, muxgate against Varnish
// (Debian `varnish`, malloc storage) and nginx `proxy_cache` (with `proxy_cache_lock on`), each
// pinned to the proxy core.
// - hits: wrk (-t1 -c50) on the proxy core's neighbour for a 12-byte and a 64 KiB object the nginx
//   backend serves with `Cache-Control: max-age=86400`; a warm-up fills each cache first, so every
//   measured request is a hit. Interleaved rounds; muxgate ÷ Varnish and muxgate ÷ nginx per round, median.
// - herd: 1,000 concurrent GETs for a URL none of them holds yet, against an origin in this process
//   that answers after 300 ms and counts its requests: how many reach it (1 means perfect coalescing).

import { writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type FigureContext, pairedRatio, pairedRatios, rotate, startChecked } from './figure.ts';
import { fmtMs, fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { RESPONSE_12B } from './scenarios.ts';
import {
  BACKEND_PORT,
  LOAD_CPU,
  MUXGATE_NODE_FLAGS,
  nginxArgs,
  nginxCommon,
  nginxHttpCommon,
  PROXY_CPU,
  type RunningServer,
  type ServerSpec,
  stopServer,
} from './servers.ts';
import { runWrk, runWrkRaw, type WrkResult } from './wrk.ts';

export const CACHE_SCENARIO = 'cache';
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** The herd origin's port (in this process) and its delay before answering. */
const HERD_PORT = 18219;
const HERD_DELAY_MS = 300;
const HERD_CLIENTS = 1000;

interface Obj {
  id: '12b' | '64k';
  path: string;
  bytes: number;
}

const OBJECTS: readonly Obj[] = [
  { id: '12b', path: '/cached/12b', bytes: RESPONSE_12B.length },
  { id: '64k', path: '/cached/64k', bytes: 64 * 1024 },
];

interface Variant {
  id: 'muxgate' | 'varnish' | 'nginx';
  port: number;
}

export const CACHE_VARIANTS: readonly Variant[] = [
  { id: 'muxgate', port: 18211 },
  { id: 'varnish', port: 18212 },
  { id: 'nginx', port: 18213 },
];

export interface CacheRun {
  round: number;
  object: Obj['id'] | 'herd';
  variant: string;
  ok: boolean;
  failure?: string;
  wrk?: WrkResult;
  /** herd: requests that reached the origin, and client answers that were not 200 with the body. */
  upstream?: number;
  bad?: number;
  herdMs?: number;
}

export interface CacheState {
  runs: CacheRun[];
}

function muxgateSpec(dir: string, port: number): ServerSpec {
  const conf = join(dir, 'muxgate-cache.yaml');
  writeFileSync(
    conf,
    `log_level: warn
admin: false
access_log: { enabled: false }
cache_zones:
  hot: { max_bytes: 256MiB }
listeners:
  - name: cache
    address: 127.0.0.1:${port}
    routes:
      - { match: { path: { prefix: /herd/ } }, cluster: herd, cache: { zone: hot } }
      - { cluster: backend, cache: { zone: hot } }
clusters:
  backend: { endpoints: ["127.0.0.1:${BACKEND_PORT}"] }
  herd: { endpoints: ["127.0.0.1:${HERD_PORT}"], pool: { max_connections: 1000 } }
`,
  );
  return {
    name: 'muxgate-cache',
    port,
    cpu: PROXY_CPU,
    command: process.execPath,
    args: [...MUXGATE_NODE_FLAGS, join(repoRoot, 'bin', 'muxgate.js'), 'start', '-c', conf],
    logFiles: [],
  };
}

function varnishSpec(dir: string, port: number): ServerSpec {
  const vcl = join(dir, 'varnish-cache.vcl');
  writeFileSync(
    vcl,
    `vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "${BACKEND_PORT}"; }
backend herd { .host = "127.0.0.1"; .port = "${HERD_PORT}"; }
sub vcl_recv {
  if (req.url ~ "^/herd/") { set req.backend_hint = herd; }
}
`,
  );
  const work = join(dir, 'varnish-work');
  mkdirSync(work, { recursive: true });
  return {
    name: 'varnish-cache',
    port,
    cpu: PROXY_CPU,
    command: 'varnishd',
    // -F: foreground; malloc storage as large as muxgate's zone; the defaults otherwise (thread pools
    // and all), pinned to the same core as the others.
    args: ['-F', '-a', `127.0.0.1:${port}`, '-f', vcl, '-s', 'malloc,256m', '-n', work],
    logFiles: [],
  };
}

function nginxSpec(dir: string, port: number): ServerSpec {
  const name = 'nginx-cache';
  const conf = join(dir, `${name}.conf`);
  const cacheDir = join(dir, 'nginx-cache-store');
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(
    conf,
    `${nginxCommon(dir, name)}http {
${nginxHttpCommon(dir, name)}  proxy_cache_path ${cacheDir} levels=1:2 keys_zone=hot:16m max_size=256m inactive=1d;
  upstream backend {
    server 127.0.0.1:${BACKEND_PORT};
    keepalive 64;
  }
  upstream herd {
    server 127.0.0.1:${HERD_PORT};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache hot;
    # Concurrent misses wait for the one request that fills the cache (nginx's coalescing).
    proxy_cache_lock on;
    proxy_cache_lock_timeout 10s;
    location / {
      proxy_pass http://backend;
    }
    location /herd/ {
      proxy_pass http://herd;
    }
  }
}
`,
  );
  return {
    name,
    port,
    cpu: PROXY_CPU,
    command: 'nginx',
    args: nginxArgs(dir, name, conf),
    logFiles: [join(dir, `${name}.error.log`)],
  };
}

/** GET `path` twice through the proxy: both whole; the second should be a hit (not checked: proxies say it differently). */
async function check(port: number): Promise<string | undefined> {
  for (const o of OBJECTS) {
    for (let i = 0; i < 2; i++) {
      const r = await get(port, o.path);
      if (r.status !== 200 || r.bytes !== o.bytes) return `${o.path}: got ${r.status}, ${r.bytes} bytes`;
    }
  }
  return undefined;
}

function get(port: number, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 20_000 }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', () => resolve({ status: 0, bytes }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, bytes: 0 }));
  });
}

/** The origin of the herd: counts requests per path, answers each after HERD_DELAY_MS, cacheable for an hour. */
async function startHerdOrigin(): Promise<{ counts: Map<string, number>; close(): Promise<void> }> {
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    counts.set(req.url ?? '', (counts.get(req.url ?? '') ?? 0) + 1);
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'max-age=3600', 'content-type': 'text/plain' });
      res.end(RESPONSE_12B);
    }, HERD_DELAY_MS);
  });
  server.keepAliveTimeout = 60_000;
  server.maxConnections = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(HERD_PORT, '127.0.0.1', () => resolve());
  });
  return {
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function herd(port: number, path: string): Promise<{ bad: number; ms: number }> {
  const started = performance.now();
  const all = await Promise.all(Array.from({ length: HERD_CLIENTS }, () => get(port, path)));
  const bad = all.filter((r) => r.status !== 200 || r.bytes !== RESPONSE_12B.length).length;
  return { bad, ms: performance.now() - started };
}

export async function runCacheFigure(ctx: FigureContext, st: CacheState): Promise<void> {
  console.log(
    `\n[${CACHE_SCENARIO}] cached hits (12 B, 64 KiB) and a ${HERD_CLIENTS}-request thundering herd: muxgate vs Varnish vs nginx proxy_cache on core ${PROXY_CPU}; wrk on core ${LOAD_CPU}`,
  );
  const origin = await startHerdOrigin();
  const running = new Map<string, RunningServer>();
  try {
    for (const v of CACHE_VARIANTS) {
      if (ctx.stopped()) return;
      const spec =
        v.id === 'muxgate'
          ? muxgateSpec(ctx.runDir, v.port)
          : v.id === 'varnish'
            ? varnishSpec(ctx.runDir, v.port)
            : nginxSpec(ctx.runDir, v.port);
      const server = await startChecked(ctx, CACHE_SCENARIO, v.id, spec, check);
      if (server) running.set(v.id, server);
    }
    const ready = CACHE_VARIANTS.filter((v) => running.has(v.id));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const o of OBJECTS) {
        for (const v of rotate(ready, round - 1)) {
          if (ctx.stopped()) break;
          const server = running.get(v.id)!;
          const opts = { url: `http://127.0.0.1:${v.port}${o.path}`, args: ['-t1', '-c50'], cpu: LOAD_CPU };
          let r: CacheRun;
          try {
            await runWrkRaw({ ...opts, durationS: ctx.warmupS });
            const wrk = await runWrk({ ...opts, durationS: ctx.durationS });
            r = server.tracked.exit
              ? { round, object: o.id, variant: v.id, ok: false, failure: `${v.id} exited` }
              : { round, object: o.id, variant: v.id, ok: wrk.requests > 0 && wrk.errorCount === 0, wrk };
          } catch (err) {
            r = { round, object: o.id, variant: v.id, ok: false, failure: (err as Error).message.slice(0, 500) };
          }
          st.runs.push(r);
          const head = `${String(round).padEnd(6)}${`cache hit ${o.id}`.padEnd(30)}${v.id.padEnd(10)}`;
          console.log(
            r.ok && r.wrk
              ? `${head}${fmtRps(r.wrk.rps).padStart(10)} req/s  p99 ${fmtMs(r.wrk.p99Ms)}`
              : `${head}FAILED: ${r.failure ?? `${r.wrk?.errorCount ?? 0} errors`}`,
          );
          ctx.recorded();
        }
      }
      for (const v of rotate(ready, round - 1)) {
        if (ctx.stopped()) break;
        const path = `/herd/${round}/${v.id}`;
        const { bad, ms } = await herd(v.port, path);
        const upstream = origin.counts.get(path) ?? 0;
        st.runs.push({ round, object: 'herd', variant: v.id, ok: bad === 0, upstream, bad, herdMs: ms });
        console.log(
          `${String(round).padEnd(6)}${'cache herd'.padEnd(30)}${v.id.padEnd(10)}${String(upstream).padStart(6)} upstream requests for ${HERD_CLIENTS} clients, ${bad} bad answers, ${Math.round(ms)} ms`,
        );
        ctx.recorded();
      }
    }
  } finally {
    for (const server of running.values()) await stopServer(server);
    await origin.close();
  }
}

export function cacheMethod(durationS: number, warmupS: number): string {
  return (
    'muxgate (`cache_zones: { hot: { max_bytes: 256MiB } }`, a route with `cache: { zone: hot }`), Varnish 7.1 (`varnishd -s malloc,256m`, ' +
    'default VCL but a second backend for /herd/, default thread pools) and nginx (`proxy_cache` with `proxy_cache_lock on`, ' +
    '`keepalive 64` upstream, one worker), each pinned to the proxy core, in front of the nginx backend, which serves ' +
    `${OBJECTS.map((o) => `\`${o.path}\` (${o.bytes} bytes)`).join(' and ')} with \`Cache-Control: max-age=86400\`. ` +
    `Hits: wrk \`-t1 -c50\` on the load core, ${durationS} s after a ${warmupS} s warm-up that fills the cache, interleaved rounds, ` +
    'ratios per round, median. Herd: each round, for each proxy, ' +
    `${HERD_CLIENTS} concurrent GETs (one connection each, from the harness) of a URL not yet cached, to an origin in the harness ` +
    `that answers after ${HERD_DELAY_MS} ms and counts its requests.`
  );
}

export function renderCache(runs: readonly CacheRun[]): string {
  const out: string[] = [`### ${CACHE_SCENARIO}`, ''];
  out.push('Cached hits and the thundering herd: muxgate vs Varnish vs nginx proxy_cache.', '');
  const rows: string[][] = [];
  for (const o of OBJECTS) {
    const byObject = runs.filter((r) => r.object === o.id);
    for (const v of CACHE_VARIANTS) {
      const all = byObject.filter((r) => r.variant === v.id);
      if (all.length === 0) continue;
      const ok = all.filter((r) => r.ok && r.wrk);
      const rps = ok.map((r) => r.wrk!.rps);
      rows.push([
        o.id,
        v.id,
        fmtRps(median(rps)),
        rps.length ? `${fmtRps(Math.min(...rps))} – ${fmtRps(Math.max(...rps))}` : '–',
        fmtMs(median(ok.map((r) => r.wrk!.p99Ms))),
        v.id === 'muxgate' ? fmtRatio(pairedRatio(byObject, 'muxgate', 'varnish')) : '–',
        v.id === 'muxgate' ? fmtRatio(pairedRatio(byObject, 'muxgate', 'nginx')) : '–',
        all.length > ok.length ? `⚠ ${all.length - ok.length}/${all.length} runs failed` : 'none',
      ]);
    }
  }
  if (rows.length > 0) {
    out.push(
      mdTable(
        ['object', 'proxy', 'median req/s', 'min – max req/s', 'median p99', '÷ Varnish', '÷ nginx', 'notes'],
        rows,
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
    );
    for (const o of OBJECTS) {
      const byObject = runs.filter((r) => r.object === o.id);
      const v = pairedRatios(byObject, 'muxgate', 'varnish').map((r) => r.toFixed(2));
      const n = pairedRatios(byObject, 'muxgate', 'nginx').map((r) => r.toFixed(2));
      out.push(
        `- ${o.id}: muxgate ÷ Varnish per round ${v.join(', ') || '–'}; muxgate ÷ nginx ${n.join(', ') || '–'}.`,
      );
    }
    out.push('');
  }
  const herds = runs.filter((r) => r.object === 'herd');
  if (herds.length > 0) {
    const hrows = CACHE_VARIANTS.filter((v) => herds.some((r) => r.variant === v.id)).map((v) => {
      const mine = herds.filter((r) => r.variant === v.id);
      return [
        v.id,
        mine.map((r) => String(r.upstream ?? '–')).join(', '),
        String(mine.reduce((n, r) => n + (r.bad ?? 0), 0)),
        `${Math.round(median(mine.map((r) => r.herdMs ?? 0)) ?? 0)} ms`,
      ];
    });
    out.push(
      `Thundering herd: upstream requests for ${HERD_CLIENTS} concurrent misses of one URL (per round; 1 is perfect), ` +
        `the origin answering after ${HERD_DELAY_MS} ms.`,
      '',
      mdTable(['proxy', 'upstream requests per round', 'bad answers', 'median time for all'], hrows, [
        'l',
        'l',
        'r',
        'r',
      ]),
      '',
    );
  }
  for (const f of runs.filter((r) => !r.ok))
    out.push(
      `- round ${f.round}, ${f.object}, ${f.variant}: FAILED: ${(f.failure ?? `${f.bad ?? f.wrk?.errorCount ?? 0} bad`).replaceAll('\n', ' ')}`,
    );
  return out.join('\n');
}

export function cachePorts(): [number, string][] {
  return [
    ...CACHE_VARIANTS.map((v): [number, string] => [v.port, `${v.id}-cache`]),
    [HERD_PORT, 'herd origin (cache)'],
  ];
}
