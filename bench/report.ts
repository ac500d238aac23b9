// Aggregation of per-run results and rendering of bench/RESULTS.md and of the
// live console table. Pure functions only.

import { FORWARDING_FIELDS } from './servers.ts';
import type { WrkErrors } from './wrk.ts';

export interface RunResult {
  round: number;
  scenario: string;
  proxy: string;
  /** false when the run could not be measured (proxy down, wrk failed...) */
  ok: boolean;
  failure?: string;
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  requests?: number;
  errors?: WrkErrors;
  errorCount?: number;
  rssKiB?: number | undefined;
}

export interface MachineInfo {
  date: string;
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  nginx: string;
  haproxy: string;
  wrk: string;
  h2load: string;
  muxgateRevision: string;
}

export interface Method {
  rounds: number;
  durationS: number;
  warmupS: number;
  proxies: readonly string[];
  scenarios: readonly { name: string; description: string; wrk: string }[];
  /** the figures measured otherwise than by wrk scenarios: name and one-line method */
  figures: readonly { name: string; method: string }[];
  proxyCpu: string;
  loadCpu: string;
}

export interface ReportInput {
  machine: MachineInfo;
  method: Method;
  results: readonly RunResult[];
  /** proxy -> why it could not be started */
  startFailures: ReadonlyMap<string, string>;
  /** "scenario/proxy" -> why the sanity check failed (the pair was skipped) */
  checkFailures: ReadonlyMap<string, string>;
  /** true when the run was interrupted before completing */
  interrupted: boolean;
  /** rendered markdown of each figure in `method.figures` (bench/fixed-rate.ts, idle-memory.ts, workers.ts) */
  figureSections: readonly string[];
  /** bench/analysis.md, appended verbatim when present */
  analysis?: string | undefined;
}

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Summary {
  proxy: string;
  runs: number;
  failedRuns: number;
  erroredRuns: number;
  totalErrors: number;
  medianRps?: number;
  minRps?: number;
  maxRps?: number;
  medianP50Ms?: number;
  medianP99Ms?: number;
  maxRssKiB?: number;
  /** median over rounds of rps / reference rps in the same round */
  ratioToNginx?: number;
  ratioToHaproxy?: number;
}

function pairedRatio(mine: readonly RunResult[], ref: readonly RunResult[]): number | undefined {
  const ratios: number[] = [];
  for (const r of mine) {
    const other = ref.find((o) => o.round === r.round);
    if (r.rps !== undefined && other?.rps) ratios.push(r.rps / other.rps);
  }
  return median(ratios);
}

export function summarize(results: readonly RunResult[], scenario: string, proxies: readonly string[]): Summary[] {
  const byProxy = (p: string): RunResult[] => results.filter((r) => r.scenario === scenario && r.proxy === p && r.ok);
  const nginxRuns = byProxy('nginx');
  const haproxyRuns = byProxy('haproxy');
  return proxies.map((proxy) => {
    const all = results.filter((r) => r.scenario === scenario && r.proxy === proxy);
    const ok = all.filter((r) => r.ok);
    const rps = ok.map((r) => r.rps!);
    const rss = ok.map((r) => r.rssKiB).filter((v): v is number => v !== undefined);
    const s: Summary = {
      proxy,
      runs: all.length,
      failedRuns: all.length - ok.length,
      erroredRuns: ok.filter((r) => (r.errorCount ?? 0) > 0).length,
      totalErrors: ok.reduce((n, r) => n + (r.errorCount ?? 0), 0),
    };
    if (rps.length) {
      s.medianRps = median(rps)!;
      s.minRps = Math.min(...rps);
      s.maxRps = Math.max(...rps);
      s.medianP50Ms = median(ok.map((r) => r.p50Ms!))!;
      s.medianP99Ms = median(ok.map((r) => r.p99Ms!))!;
    }
    if (rss.length) s.maxRssKiB = Math.max(...rss);
    const toNginx = pairedRatio(ok, nginxRuns);
    if (toNginx !== undefined) s.ratioToNginx = toNginx;
    const toHaproxy = pairedRatio(ok, haproxyRuns);
    if (toHaproxy !== undefined) s.ratioToHaproxy = toHaproxy;
    return s;
  });
}

// ---------------------------------------------------------------------------
// formatting

export const fmtRps = (v: number | undefined): string =>
  v === undefined ? '–' : Math.round(v).toLocaleString('en-US');
export const fmtMs = (v: number | undefined): string =>
  v === undefined ? '–' : v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
/** A CPU time per request or message, in µs with one decimal. */
export const fmtCpuUs = (v: number | undefined): string => (v === undefined ? '–' : `${v.toFixed(1)} µs`);
export const fmtMiB = (kib: number | undefined): string => (kib === undefined ? '–' : `${(kib / 1024).toFixed(1)} MiB`);
export const fmtRatio = (v: number | undefined): string => (v === undefined ? '–' : v.toFixed(2));

export function describeErrors(r: RunResult): string {
  if (!r.ok) return `FAILED: ${r.failure ?? 'unknown'}`;
  if (!r.errorCount || !r.errors) return '';
  const e = r.errors;
  const parts: string[] = [];
  if (e.status) parts.push(`${e.status} status>=400`);
  const sock = (['connect', 'read', 'write', 'timeout'] as const).filter((k) => e[k]).map((k) => `${k} ${e[k]}`);
  if (sock.length) parts.push(`socket errors: ${sock.join(', ')}`);
  return `⚠ ${parts.join('; ')}`;
}

export function mdTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly ('l' | 'r')[],
): string {
  const sep = align.map((a) => (a === 'r' ? '---:' : ':---'));
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), `|${sep.join('|')}|`, ...rows.map(line)].join('\n');
}

function summaryErrors(s: Summary): string {
  const parts: string[] = [];
  if (s.erroredRuns) parts.push(`⚠ ${s.erroredRuns}/${s.runs} runs with errors (${s.totalErrors} total)`);
  if (s.failedRuns) parts.push(`⚠ ${s.failedRuns}/${s.runs} runs failed`);
  return parts.join('; ') || 'none';
}

/** One console line per run, printed as the benchmark goes. */
export const CONSOLE_HEADER = `${'round'.padEnd(6)}${'scenario'.padEnd(10)}${'proxy'.padEnd(12)}${'req/s'.padStart(10)}${'p50'.padStart(11)}${'p99'.padStart(11)}${'RSS'.padStart(11)}  errors`;

export function consoleLine(r: RunResult): string {
  return `${String(r.round).padEnd(6)}${r.scenario.padEnd(10)}${r.proxy.padEnd(12)}${fmtRps(r.rps).padStart(10)}${fmtMs(r.p50Ms).padStart(11)}${fmtMs(r.p99Ms).padStart(11)}${fmtMiB(r.rssKiB).padStart(11)}  ${describeErrors(r)}`;
}

const PROXY_NOTES: Record<string, string> = {
  muxgate:
    "`node bin/muxgate.js start -c <yaml>`, `pool.max_connections: 100`, `idle_timeout: 300s` (like the others' keep-alive timeouts), access log off, admin off.",
  nginx:
    '`master_process off`, `upstream { keepalive 64; }`, `proxy_http_version 1.1`, `proxy_set_header Connection ""`, ' +
    '`proxy_max_temp_file_size 0`, access log off.',
  haproxy: '`mode http`, `http-reuse always`, `nbthread 1`, no logging.',
  'http-proxy':
    'node-http-proxy (`http-proxy` 1.x) with `new http.Agent({ keepAlive: true, maxSockets: 100 })` (`bench/http-proxy-server.ts`).',
};

export function renderResults(input: ReportInput): string {
  const { machine, method, results } = input;
  const out: string[] = [];
  out.push('# muxgate benchmark results', '');
  out.push(
    '> **These numbers are only comparable within one run** (same machine, same moment, same harness). ' +
      'Do not compare them with numbers from another run, another machine or another tool.',
    '',
  );
  if (input.interrupted) out.push('> ⚠ **This run was interrupted; the results are incomplete.**', '');
  out.push('Generated by `npm run bench` (`bench/run.ts`).', '');

  out.push('## Machine', '');
  out.push(
    `- Date: ${machine.date}`,
    `- CPU: ${machine.cpuModel}, ${machine.cores} cores`,
    `- Kernel: ${machine.kernel}`,
    `- Node: ${machine.node} (npm \`node\` package; runs muxgate and node-http-proxy)`,
    `- nginx: ${machine.nginx}`,
    `- HAProxy: ${machine.haproxy}`,
    `- wrk: ${machine.wrk}`,
    `- h2load: ${machine.h2load}`,
    `- muxgate revision: ${machine.muxgateRevision}`,
    '',
  );

  out.push('## Method', '');
  out.push(
    `- Backend: nginx, one process (\`master_process off\`), access log off, pinned to core ${method.loadCpu}. ` +
      'It returns `hello world\\n` (12 bytes) for `GET /` and `POST /post` (request body read and discarded), ' +
      'and a 64 KiB static file for `GET /64k`.',
    `- Proxies (each a single process / single thread, pinned to core ${method.proxyCpu}, upstream keep-alive on, no logging; ` +
      'except in `workers`): ' +
      `${method.proxies.join(', ')}.`,
    ...method.proxies.map((p) => `  - ${p}: ${PROXY_NOTES[p] ?? ''}`),
    `- Forwarding fields: ${FORWARDING_FIELDS}, so that each asks the same work of the backend.`,
    `- Load: wrk pinned to core ${method.loadCpu} (shared with the backend), \`--latency\`, ${method.durationS} s per run ` +
      `after a ${method.warmupS} s warm-up run that is discarded.`,
    `- ${method.rounds} round(s), interleaved: each round runs every scenario against every proxy, ` +
      'the proxy order rotating from one round to the next.',
    '- Sanity check before loading: one request per scenario through each proxy must return 200 and the expected body size.',
    '- RSS: `VmRSS` of the proxy process after each run; the tables show the largest value over the rounds.',
    '- Ratios: median over rounds of (proxy req/s ÷ nginx or HAProxy req/s in the same round).',
    '- Runs where wrk saw socket errors or responses with status ≥ 400 are flagged (⚠); they are counted in the medians, so ' +
      'treat a flagged row with suspicion.',
    '',
    'Scenarios:',
    '',
  );
  for (const s of method.scenarios) out.push(`- \`${s.name}\`: ${s.description} — \`${s.wrk}\``);
  for (const f of method.figures) out.push(`- \`${f.name}\`: ${f.method}`);
  out.push('');

  if (input.startFailures.size) {
    out.push('## Proxies that failed to start', '');
    for (const [proxy, why] of input.startFailures) {
      out.push(`### ${proxy}`, '', '```', why.trim(), '```', '');
    }
  }
  if (input.checkFailures.size) {
    out.push('## Skipped (sanity check failed)', '');
    for (const [key, why] of input.checkFailures) out.push(`- \`${key}\`: ${why}`);
    out.push('');
  }

  out.push('## Results', '');
  for (const sc of method.scenarios) {
    const proxies = method.proxies.filter((p) => results.some((r) => r.scenario === sc.name && r.proxy === p));
    out.push(`### ${sc.name}`, '', `${sc.description}.`, '');
    if (proxies.length === 0) {
      out.push('No results.', '');
      continue;
    }
    const rows = summarize(results, sc.name, proxies).map((s) => [
      s.proxy,
      fmtRps(s.medianRps),
      s.minRps === undefined ? '–' : `${fmtRps(s.minRps)} – ${fmtRps(s.maxRps)}`,
      fmtMs(s.medianP50Ms),
      fmtMs(s.medianP99Ms),
      fmtMiB(s.maxRssKiB),
      fmtRatio(s.ratioToNginx),
      fmtRatio(s.ratioToHaproxy),
      summaryErrors(s),
    ]);
    out.push(
      mdTable(
        [
          'proxy',
          'median req/s',
          'min – max req/s',
          'median p50',
          'median p99',
          'RSS',
          '÷ nginx',
          '÷ HAProxy',
          'errors',
        ],
        rows,
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
    );
  }

  if (results.length) {
    out.push('<details>', '<summary>Raw per-round numbers (wrk scenarios)</summary>', '');
    out.push(
      mdTable(
        ['round', 'scenario', 'proxy', 'req/s', 'requests', 'p50', 'p99', 'RSS', 'errors'],
        results.map((r) => [
          String(r.round),
          r.scenario,
          r.proxy,
          fmtRps(r.rps),
          r.requests === undefined ? '–' : String(r.requests),
          fmtMs(r.p50Ms),
          fmtMs(r.p99Ms),
          fmtMiB(r.rssKiB),
          describeErrors(r).replaceAll('\n', ' ') || 'none',
        ]),
        ['r', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
      '</details>',
      '',
    );
  }

  for (const section of input.figureSections) out.push(section);

  // The hand-written part (profiles, CPU per request, what limits muxgate) lives in bench/analysis.md
  // so that regenerating the numbers never loses it.
  if (input.analysis !== undefined) out.push('', input.analysis.trim(), '');

  return out.join('\n');
}
