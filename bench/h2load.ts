// Running h2load (nghttp2) at a fixed request rate over HTTP/1.1 and reading
// its per-request log.
//
// Debian's wrk has no `-R` (wrk2's constant rate), so the fixed-rate figure
// uses `h2load --h1 --rps <per client>`. Two details of h2load 1.52 shape the
// command line:
//
// - Each client's request timer starts when it connects. With `-D` all clients
//   connect at once, so all of them fire in phase: the proxy sees bursts of
//   `clients` simultaneous requests instead of a steady rate (measured against
//   nginx at 50k req/s: p99 462 us in phase vs 144 us staggered). `-r 1
//   --rate-period 1ms` opens one connection per millisecond, which spreads the
//   timers' phases; `-r` excludes `-D`, so the run is sized with `-n` (rate x
//   (warm-up + duration)) and the warm-up is cut from the log afterwards.
// - h2load sends each request when its timer fires, or when the previous
//   response on that connection ends if that is later, and times it from then:
//   a proxy that cannot keep up shows up as an achieved rate below the target
//   (its latencies alone would look better than they are). The caller kills a
//   run that overruns; the log written so far is still read.
//
// The log (`--log-file`) has one tab-separated line per request: start time
// (microseconds since the epoch), HTTP status (-1 for a failed stream) and
// microseconds until the end of the response. `parseH2loadLog` and
// `summarizeH2loadLog` are pure functions (unit-tested in
// test/bench/h2load-log.test.ts).

import { readFileSync } from 'node:fs';
import { spawnTracked, stopTracked } from './procs.ts';

export interface H2loadRequest {
  /** microseconds since the epoch */
  startUs: number;
  /** HTTP status, -1 for a failed stream */
  status: number;
  /** microseconds from sending the request to the end of the response */
  latencyUs: number;
}

/** Parses h2load's `--log-file`; lines that are not three integers (a line cut short by a kill) are skipped. */
export function parseH2loadLog(text: string): H2loadRequest[] {
  const out: H2loadRequest[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\t(-?\d+)\t(\d+)\s*$/.exec(line);
    if (m) out.push({ startUs: Number(m[1]), status: Number(m[2]), latencyUs: Number(m[3]) });
  }
  return out;
}

/** `parseH2loadLog` of a file; no file (h2load died before writing it) is an empty log. */
export function parseH2loadLogFile(path: string): H2loadRequest[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return parseH2loadLog(text);
}

/** Nearest-rank percentile (`p` in 0..100) of an ascending array; undefined when it is empty. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  // (the epsilon keeps 99.9 % of 2000 at rank 1998: in floating point it is 1998.0000000000002)
  const rank = Math.ceil((p / 100) * sorted.length - 1e-9);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export interface LatencySummary {
  /** requests started after the warm-up */
  requests: number;
  /** of those, responses with a status below 400 */
  ok: number;
  /** failed streams (status -1) and statuses >= 400 */
  failed: number;
  /** successful responses per second over the measured window */
  achievedRps: number;
  /** from the end of the warm-up to the end of the last response, in seconds */
  windowS: number;
  p50Us?: number | undefined;
  p99Us?: number | undefined;
  p999Us?: number | undefined;
  maxUs?: number | undefined;
}

/**
 * Latency percentiles of the successful requests that started at least `warmupS` seconds after the
 * first request, and the rate they were served at.
 */
export function summarizeH2loadLog(requests: readonly H2loadRequest[], warmupS: number): LatencySummary {
  if (requests.length === 0) return { requests: 0, ok: 0, failed: 0, achievedRps: 0, windowS: 0 };
  let first = Number.POSITIVE_INFINITY;
  for (const r of requests) first = Math.min(first, r.startUs);
  const windowStart = first + warmupS * 1e6;
  const latencies: number[] = [];
  let measured = 0;
  let windowEnd = windowStart;
  for (const r of requests) {
    if (r.startUs < windowStart) continue;
    measured++;
    windowEnd = Math.max(windowEnd, r.startUs + r.latencyUs);
    if (r.status >= 0 && r.status < 400) latencies.push(r.latencyUs);
  }
  latencies.sort((a, b) => a - b);
  const windowS = (windowEnd - windowStart) / 1e6;
  return {
    requests: measured,
    ok: latencies.length,
    failed: measured - latencies.length,
    achievedRps: windowS > 0 ? latencies.length / windowS : 0,
    windowS,
    p50Us: percentile(latencies, 50),
    p99Us: percentile(latencies, 99),
    p999Us: percentile(latencies, 99.9),
    maxUs: latencies.at(-1),
  };
}

export interface H2loadRunOptions {
  url: string;
  /** total target rate, requests per second (split evenly over the clients) */
  rps: number;
  clients: number;
  /** seconds of requests at the target rate, warm-up included */
  seconds: number;
  logFile: string;
  /** CPU list for taskset */
  cpu: string;
}

export function h2loadArgv(opts: Omit<H2loadRunOptions, 'cpu'>): string[] {
  const perClient = opts.rps / opts.clients;
  const requests = Math.ceil(perClient * opts.seconds) * opts.clients;
  return [
    '--h1',
    '-t1',
    `-c${opts.clients}`,
    // one new connection per millisecond: staggers the clients' request timers (see the top of this file)
    '-r1',
    '--rate-period=1ms',
    `--rps=${perClient.toFixed(3)}`,
    `-n${requests}`,
    `--log-file=${opts.logFile}`,
    opts.url,
  ];
}

export interface H2loadRaw {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** true when h2load overran `timeoutMs` and was killed (its log holds what it wrote until then) */
  killed: boolean;
}

/** Runs h2load pinned to `opts.cpu`; kills it after `timeoutMs`. */
export function runH2load(opts: H2loadRunOptions, timeoutMs: number): Promise<H2loadRaw> {
  return runH2loadArgv(h2loadArgv(opts), opts.cpu, timeoutMs);
}

/** Runs `h2load <argv>` pinned to `cpu`; kills it after `timeoutMs`. */
export async function runH2loadArgv(argv: readonly string[], cpu: string, timeoutMs: number): Promise<H2loadRaw> {
  const child = spawnTracked('h2load', 'taskset', ['-c', cpu, 'h2load', ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.process.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.process.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    void stopTracked(child, 1000);
  }, timeoutMs);
  const { code, signal } = await child.exited;
  clearTimeout(timer);
  return { code, signal, stdout, stderr, killed };
}

// ---------------------------------------------------------------------------
// Maximum throughput over HTTP/2 (the h2-ingress figure, bench/h2.ts)
//
// `h2load -t1 -c<clients> -m<streams> -D<s> --warm-up-time=<s>`: h2c with prior knowledge (an
// http:// URL without --h1 or --npn-list), every client keeping `streams` requests in flight for
// `-D` seconds after the warm-up. Its summary then covers the measured window only:
//
//   finished in 6.00s, 75511.00 req/s, 5.69MB/s
//   requests: 377555 total, 377555 started, 377555 done, 377555 succeeded, 0 failed, 0 errored, 0 timeout
//   status codes: 377555 2xx, 0 3xx, 0 4xx, 0 5xx
//
// ("finished in" counts the warm-up; req/s is requests ÷ the -D seconds), and so does --log-file.

export interface H2loadLoadOptions {
  url: string;
  clients: number;
  /** concurrent streams per client (-m) */
  streams: number;
  durationS: number;
  warmupS: number;
  /** per-request log (for percentiles), if any */
  logFile?: string | undefined;
}

export function h2loadLoadArgv(opts: H2loadLoadOptions): string[] {
  const argv = ['-t1', `-c${opts.clients}`, `-m${opts.streams}`, `-D${opts.durationS}`];
  if (opts.warmupS > 0) argv.push(`--warm-up-time=${opts.warmupS}`);
  if (opts.logFile !== undefined) argv.push(`--log-file=${opts.logFile}`);
  argv.push(opts.url);
  return argv;
}

export interface H2loadSummary {
  rps: number;
  total: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  /** responses with status 4xx or 5xx */
  badStatus: number;
  /**
   * h2load's `failed`: per its manual it includes `errored` (stream or connection failures, timed-out
   * connections' requests among them) and HTTP-level failures (status >= 400)
   */
  errorCount: number;
}

/** Parses the summary h2load prints on stdout; throws when its essential lines are missing. */
export function parseH2loadSummary(output: string): H2loadSummary {
  const fin = /^finished in [0-9.]+(?:us|ms|s), ([0-9.]+) req\/s/m.exec(output);
  if (!fin) throw new Error('h2load output has no "finished in …, N req/s" line');
  const req =
    /^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(
      output,
    );
  if (!req) throw new Error('h2load output has no "requests: …" line');
  const codes = /^status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(output);
  const [total, succeeded, failed, errored, timeout] = req.slice(1, 6).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const badStatus = codes ? Number(codes[1]) + Number(codes[2]) : 0;
  return {
    rps: Number(fin[1]),
    total,
    succeeded,
    failed,
    errored,
    timeout,
    badStatus,
    errorCount: Math.max(failed, errored + badStatus),
  };
}
