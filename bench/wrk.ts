// Running wrk and parsing its text output.
//
// `parseWrkOutput` is a pure function (text in, numbers out) so it can be unit
// tested without wrk installed. It understands the output of wrk 4.x with
// `--latency`:
//
//   Running 10s test @ http://127.0.0.1:18101/
//     1 threads and 50 connections
//     Thread Stats   Avg      Stdev     Max   +/- Stdev
//       Latency   620.52us  105.81us   8.11ms   92.41%
//       Req/Sec    80.88k     3.71k   85.36k    81.00%
//     Latency Distribution
//        50%  602.00us
//        75%  640.00us
//        90%  701.00us
//        99%    1.03ms
//     804911 requests in 10.00s, 118.98MB read
//     Socket errors: connect 0, read 12, write 0, timeout 3
//     Non-2xx or 3xx responses: 7
//   Requests/sec:  80484.62
//   Transfer/sec:     11.90MB
//
// Note that wrk counts every status >= 400 in "Non-2xx or 3xx responses" and
// prints the "Socket errors" / "Non-2xx" lines only when they are non-zero.

import { spawnTracked } from './procs.ts';

export interface WrkErrors {
  connect: number;
  read: number;
  write: number;
  timeout: number;
  /** responses with status >= 400 */
  status: number;
}

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  latencyAvgMs: number;
  latencyMaxMs: number;
  /** percentile ("50", "75", "90", "99") -> milliseconds */
  percentilesMs: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  errors: WrkErrors;
  /** socket errors + bad statuses */
  errorCount: number;
}

const TIME_UNITS_MS: Record<string, number> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const METRIC_UNITS: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** Parses a wrk time such as `602.00us`, `1.03ms`, `2.00s`, `1.50m` into milliseconds. */
export function parseWrkTime(text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`cannot parse wrk time ${JSON.stringify(text)}`);
  return Number(m[1]) * (TIME_UNITS_MS[m[2]!] ?? Number.NaN);
}

/** Parses a wrk metric count such as `80.88k`, `1.20M` or `512`. */
export function parseWrkCount(text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)([kMGT]?)$/.exec(text.trim());
  if (!m) throw new Error(`cannot parse wrk count ${JSON.stringify(text)}`);
  return Number(m[1]) * (METRIC_UNITS[m[2]!] ?? Number.NaN);
}

/** Parses the full stdout of `wrk --latency`. Throws if the essential lines are missing. */
export function parseWrkOutput(output: string): WrkResult {
  const rpsMatch = /^Requests\/sec:\s+([0-9.]+)\s*$/m.exec(output);
  if (!rpsMatch) throw new Error('wrk output has no "Requests/sec:" line');
  const rps = Number(rpsMatch[1]);

  const totalMatch = /^\s*([0-9]+) requests in ([0-9.]+(?:us|ms|s|m|h)),/m.exec(output);
  if (!totalMatch) throw new Error('wrk output has no "N requests in T" line');
  const requests = Number(totalMatch[1]);
  const durationS = parseWrkTime(totalMatch[2]!) / 1000;

  const latMatch = /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+\s*$/m.exec(output);
  if (!latMatch) throw new Error('wrk output has no "Latency" thread stats line');
  const latencyAvgMs = parseWrkTime(latMatch[1]!);
  const latencyMaxMs = parseWrkTime(latMatch[3]!);

  const percentilesMs: Record<string, number> = {};
  const distStart = output.indexOf('Latency Distribution');
  if (distStart < 0) throw new Error('wrk output has no "Latency Distribution" (was --latency passed?)');
  const pctRe = /^\s*([0-9]+(?:\.[0-9]+)?)%\s+(\S+)\s*$/gm;
  pctRe.lastIndex = distStart;
  for (let m = pctRe.exec(output); m !== null; m = pctRe.exec(output)) {
    percentilesMs[String(Number(m[1]))] = parseWrkTime(m[2]!);
  }
  const p50Ms = percentilesMs['50'];
  const p99Ms = percentilesMs['99'];
  if (p50Ms === undefined || p99Ms === undefined) throw new Error('wrk latency distribution lacks 50% or 99%');

  const errors: WrkErrors = { connect: 0, read: 0, write: 0, timeout: 0, status: 0 };
  const sockMatch = /Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)/.exec(output);
  if (sockMatch) {
    errors.connect = Number(sockMatch[1]);
    errors.read = Number(sockMatch[2]);
    errors.write = Number(sockMatch[3]);
    errors.timeout = Number(sockMatch[4]);
  }
  const statusMatch = /Non-2xx or 3xx responses: ([0-9]+)/.exec(output);
  if (statusMatch) errors.status = Number(statusMatch[1]);
  const errorCount = errors.connect + errors.read + errors.write + errors.timeout + errors.status;

  return { requests, durationS, rps, latencyAvgMs, latencyMaxMs, percentilesMs, p50Ms, p99Ms, errors, errorCount };
}

export interface WrkRunOptions {
  url: string;
  /** extra arguments, e.g. ['-t1', '-c50'] */
  args: readonly string[];
  durationS: number;
  /** absolute path of a lua script, if any */
  script?: string | undefined;
  /** CPU list for taskset, e.g. '1' */
  cpu: string;
}

export interface WrkRaw {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function wrkArgv(opts: WrkRunOptions): string[] {
  const argv = [...opts.args, `-d${opts.durationS}s`, '--latency'];
  if (opts.script) argv.push('-s', opts.script);
  argv.push(opts.url);
  return argv;
}

/** Runs wrk pinned to `opts.cpu` and returns its raw output. */
export async function runWrkRaw(opts: WrkRunOptions): Promise<WrkRaw> {
  const child = spawnTracked('wrk', 'taskset', ['-c', opts.cpu, 'wrk', ...wrkArgv(opts)], {
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
  const { code, signal } = await child.exited;
  return { code, signal, stdout, stderr };
}

/** Runs wrk and parses the result; throws with wrk's output when it failed or printed nonsense. */
export async function runWrk(opts: WrkRunOptions): Promise<WrkResult> {
  const raw = await runWrkRaw(opts);
  if (raw.code !== 0) {
    throw new Error(`wrk exited with ${raw.code ?? raw.signal}: ${(raw.stderr || raw.stdout).trim().slice(-2000)}`);
  }
  try {
    return parseWrkOutput(raw.stdout);
  } catch (err) {
    throw new Error(`${(err as Error).message}; output:\n${raw.stdout}\n${raw.stderr}`);
  }
}
