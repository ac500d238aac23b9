// The `passthrough` figure: TLS passthrough by SNI (issue 17). muxgate's tcp listener with
// `sni_routes` against HAProxy `mode tcp` routing on `req.ssl_sni`, both pinned to the proxy core, in
// front of the same TLS backend (the bench's nginx backend, `listen … ssl` with a P-256 certificate for
// `localhost`). Neither proxy decrypts: each reads the ClientHello, picks the backend by its server
// name, and pipes bytes. Two loads, wrk over TLS to https://localhost:<port>/ (SNI "localhost"):
// keep-alive (`-c50`: throughput of established tunnels), and a new connection per request
// (`Connection: close`: the connection rate, each one a ClientHello read, a route, a connect).
// Interleaved rounds; ratios muxgate ÷ HAProxy per round, median.

import { execFileSync } from 'node:child_process';
import https from 'node:https';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { type FigureContext, pairedRatio, pairedRatios, rotate, startChecked } from './figure.ts';
import { fmtMs, fmtRatio, fmtRps, mdTable, median } from './report.ts';
import { LOAD_CPU, MUXGATE_NODE_FLAGS, PROXY_CPU, type RunningServer, type ServerSpec, stopServer } from './servers.ts';
import { runWrk, runWrkRaw, type WrkResult } from './wrk.ts';
import { fileURLToPath } from 'node:url';

export const PASSTHROUGH_SCENARIO = 'passthrough';
/** The backend's TLS port (bench/servers.ts adds it to the nginx backend). */
export const BACKEND_TLS_PORT = 18443;
const SNI = 'localhost';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

interface Load {
  id: 'keepalive' | 'conn-per-request';
  args: readonly string[];
  what: string;
}

const LOADS: readonly Load[] = [
  { id: 'keepalive', args: ['-t1', '-c50'], what: 'keep-alive, 50 connections' },
  {
    id: 'conn-per-request',
    args: ['-t1', '-c50', '-H', 'Connection: close'],
    what: 'a new TLS connection per request (Connection: close), 50 at a time',
  },
];

interface Variant {
  id: 'muxgate' | 'haproxy';
  port: number;
}

const VARIANTS: readonly Variant[] = [
  { id: 'muxgate', port: 18191 },
  { id: 'haproxy', port: 18192 },
];

export interface PassthroughRun {
  round: number;
  load: Load['id'];
  variant: string;
  ok: boolean;
  failure?: string;
  wrk?: WrkResult;
}

export interface PassthroughState {
  runs: PassthroughRun[];
}

/** A self-signed P-256 certificate for `localhost`, written into the run directory. */
export function backendCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'backend-tls.pem');
  const key = join(dir, 'backend-tls.key');
  // biome-ignore format: flags and their values read best in pairs
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${SNI}`, '-addext', `subjectAltName=DNS:${SNI}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { cert, key };
}

function muxgateSpec(dir: string, port: number): ServerSpec {
  const conf = join(dir, 'muxgate-passthrough.yaml');
  writeFileSync(
    conf,
    `log_level: warn
admin: false
access_log: { enabled: false }
listeners:
  - name: passthrough
    address: 127.0.0.1:${port}
    protocol: tcp
    sni_routes:
      - { server_names: [${SNI}], cluster: tls }
clusters:
  tls:
    endpoints: ["127.0.0.1:${BACKEND_TLS_PORT}"]
`,
  );
  return {
    name: 'muxgate-passthrough',
    port,
    cpu: PROXY_CPU,
    command: process.execPath,
    args: [...MUXGATE_NODE_FLAGS, join(repoRoot, 'bin', 'muxgate.js'), 'start', '-c', conf],
    logFiles: [],
  };
}

function haproxySpec(dir: string, port: number): ServerSpec {
  const conf = join(dir, 'haproxy-passthrough.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 4096

defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s

frontend fe
  bind 127.0.0.1:${port}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend tls if { req.ssl_sni -i ${SNI} }

backend tls
  server s1 127.0.0.1:${BACKEND_TLS_PORT}
`,
  );
  return {
    name: 'haproxy-passthrough',
    port,
    cpu: PROXY_CPU,
    command: 'haproxy',
    args: ['-db', '-f', conf],
    logFiles: [],
  };
}

/** One HTTPS GET through the proxy with SNI localhost: the backend's 12-byte answer, or why not. */
function check(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = https.get(
      { host: '127.0.0.1', port, path: '/', servername: SNI, rejectUnauthorized: false, agent: false, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve(
            res.statusCode === 200 && body.length === 12 ? undefined : `got ${res.statusCode}, ${body.length} bytes`,
          ),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(e.message));
  });
}

export async function runPassthroughFigure(ctx: FigureContext, st: PassthroughState): Promise<void> {
  if (!ctx.proxies.includes('muxgate') || !ctx.proxies.includes('haproxy')) {
    console.error(`✗ ${PASSTHROUGH_SCENARIO}: compares muxgate with HAProxy; both must be among the proxies`);
    return;
  }
  console.log(
    `\n[${PASSTHROUGH_SCENARIO}] TLS passthrough by SNI: muxgate sni_routes vs HAProxy req.ssl_sni on core ${PROXY_CPU}; wrk https://${SNI}:<port>/ on core ${LOAD_CPU}`,
  );
  const running = new Map<string, RunningServer>();
  try {
    for (const v of VARIANTS) {
      if (ctx.stopped()) return;
      const spec = v.id === 'muxgate' ? muxgateSpec(ctx.runDir, v.port) : haproxySpec(ctx.runDir, v.port);
      const server = await startChecked(ctx, PASSTHROUGH_SCENARIO, v.id, spec, check);
      if (server) running.set(v.id, server);
    }
    const ready = VARIANTS.filter((v) => running.has(v.id));
    for (let round = 1; round <= ctx.rounds && !ctx.stopped(); round++) {
      for (const load of LOADS) {
        for (const v of rotate(ready, round - 1)) {
          if (ctx.stopped()) break;
          const server = running.get(v.id)!;
          const opts = { url: `https://${SNI}:${v.port}/`, args: load.args, cpu: LOAD_CPU };
          let r: PassthroughRun;
          try {
            await runWrkRaw({ ...opts, durationS: ctx.warmupS });
            const wrk = await runWrk({ ...opts, durationS: ctx.durationS });
            r = server.tracked.exit
              ? { round, load: load.id, variant: v.id, ok: false, failure: `${v.id} exited` }
              : { round, load: load.id, variant: v.id, ok: wrk.requests > 0, wrk };
          } catch (err) {
            r = { round, load: load.id, variant: v.id, ok: false, failure: (err as Error).message.slice(0, 500) };
          }
          st.runs.push(r);
          const head = `${String(round).padEnd(6)}${`passthrough ${load.id}`.padEnd(30)}${v.id.padEnd(10)}`;
          console.log(
            r.ok && r.wrk
              ? `${head}${fmtRps(r.wrk.rps).padStart(10)} req/s  p99 ${fmtMs(r.wrk.p99Ms)}${r.wrk.errorCount ? `  ⚠ ${r.wrk.errorCount} errors` : ''}`
              : `${head}FAILED: ${r.failure ?? 'unknown'}`,
          );
          ctx.recorded();
        }
      }
    }
  } finally {
    for (const server of running.values()) await stopServer(server);
  }
}

export function passthroughMethod(durationS: number, warmupS: number): string {
  return (
    `muxgate (a \`protocol: tcp\` listener with \`sni_routes: [{ server_names: [${SNI}], cluster: tls }]\`) and HAProxy (\`mode tcp\`, ` +
    '`tcp-request inspect-delay 5s`, `tcp-request content accept if { req_ssl_hello_type 1 }`, `use_backend tls if { req.ssl_sni -i localhost }`), ' +
    `each pinned to the proxy core, in front of the nginx backend's TLS port (${BACKEND_TLS_PORT}, a P-256 certificate for ${SNI}); neither decrypts. ` +
    `wrk over TLS to \`https://${SNI}:<port>/\` (SNI ${SNI}), pinned to the load core with the backend, ${durationS} s after a ${warmupS} s warm-up: ` +
    `${LOADS.map((l) => `${l.id} (\`${l.args.join(' ')}\`: ${l.what})`).join('; ')}. Interleaved rounds; muxgate ÷ HAProxy per round, median.`
  );
}

export function renderPassthrough(runs: readonly PassthroughRun[]): string {
  const out: string[] = [`### ${PASSTHROUGH_SCENARIO}`, ''];
  out.push('TLS passthrough by SNI, GET / (12-byte body) over TLS end to end, muxgate vs HAProxy.', '');
  const rows: string[][] = [];
  for (const load of LOADS) {
    for (const v of VARIANTS) {
      const all = runs.filter((r) => r.load === load.id && r.variant === v.id);
      if (all.length === 0) continue;
      const ok = all.filter((r) => r.ok && r.wrk);
      const rps = ok.map((r) => r.wrk!.rps);
      const errors = ok.reduce((n, r) => n + (r.wrk?.errorCount ?? 0), 0);
      const notes: string[] = [];
      if (errors) notes.push(`⚠ ${errors} errors`);
      if (all.length > ok.length) notes.push(`⚠ ${all.length - ok.length}/${all.length} runs failed`);
      const byLoad = runs.filter((r) => r.load === load.id);
      rows.push([
        load.id,
        v.id,
        fmtRps(median(rps)),
        rps.length ? `${fmtRps(Math.min(...rps))} – ${fmtRps(Math.max(...rps))}` : '–',
        fmtMs(median(ok.map((r) => r.wrk!.p99Ms))),
        v.id === 'muxgate' ? fmtRatio(pairedRatio(byLoad, 'muxgate', 'haproxy')) : '1.00',
        notes.join('; ') || 'none',
      ]);
    }
  }
  if (rows.length === 0) return [...out, 'No results.', ''].join('\n');
  out.push(
    mdTable(['load', 'proxy', 'median req/s', 'min – max req/s', 'median p99', '÷ HAProxy', 'notes'], rows, [
      'l',
      'l',
      'r',
      'r',
      'r',
      'r',
      'l',
    ]),
    '',
  );
  for (const load of LOADS) {
    const byLoad = runs.filter((r) => r.load === load.id);
    const per = pairedRatios(byLoad, 'muxgate', 'haproxy').map((r) => r.toFixed(2));
    out.push(`- ${load.id}: muxgate ÷ HAProxy per round ${per.join(', ') || '–'}.`);
  }
  out.push('');
  for (const f of runs.filter((r) => !r.ok))
    out.push(`- round ${f.round}, ${f.load}, ${f.variant}: FAILED: ${(f.failure ?? 'unknown').replaceAll('\n', ' ')}`);
  return out.join('\n');
}
