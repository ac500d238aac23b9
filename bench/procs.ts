// Registry of every child process the harness starts, so that all of them are
// stopped and waited for at the end, on errors and on Ctrl-C. Stopping one also
// stops the processes it started itself (nginx and muxgate workers), by pid.

import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Tracked {
  name: string;
  process: ChildProcess;
  pid: number;
  /** set once the process has exited */
  exit: ExitInfo | undefined;
  exited: Promise<ExitInfo>;
}

const live = new Set<Tracked>();

export function spawnTracked(name: string, command: string, args: readonly string[], options: SpawnOptions): Tracked {
  const proc = spawn(command, args, options);
  let resolveExit: (e: ExitInfo) => void = () => {};
  const exited = new Promise<ExitInfo>((resolve) => {
    resolveExit = resolve;
  });
  const tracked: Tracked = { name, process: proc, pid: proc.pid ?? -1, exit: undefined, exited };
  // 'close' would wait for stdio to end; 'exit' is what matters for liveness.
  proc.on('exit', (code, signal) => {
    tracked.exit = { code, signal };
    live.delete(tracked);
    resolveExit(tracked.exit);
  });
  proc.on('error', (err) => {
    // spawn failure (ENOENT...): no 'exit' event follows.
    if (tracked.exit) return;
    tracked.exit = { code: null, signal: null };
    live.delete(tracked);
    tracked.name += ` (spawn error: ${err.message})`;
    resolveExit(tracked.exit);
  });
  if (proc.pid !== undefined) live.add(tracked);
  return tracked;
}

/** `(pid, state, ppid)` from /proc/<pid>/stat, or undefined when it is gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** True while `pid` exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

/** Pids of every running descendant of `pid` (nginx or muxgate workers), from the ppid of each /proc entry. */
export function descendantPids(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    const p = Number(e);
    if (!Number.isInteger(p)) continue;
    const s = procStat(p);
    if (s === undefined || s.state === 'Z') continue;
    const list = children.get(s.ppid);
    if (list) list.push(p);
    else children.set(s.ppid, [p]);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. Its descendants (seen
 * before the SIGTERM) get the same grace to exit with it, then SIGKILL: a worker must not outlive the
 * master that was killed.
 */
export async function stopTracked(t: Tracked, graceMs = 3000): Promise<ExitInfo> {
  if (t.exit) return t.exit;
  const descendants = descendantPids(t.pid);
  try {
    t.process.kill('SIGTERM');
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  const first = await Promise.race([t.exited, timeout]);
  clearTimeout(timer);
  if (first === 'timeout') {
    try {
      t.process.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  const exit = await t.exited;
  const deadline = Date.now() + (first === 'timeout' ? 0 : graceMs);
  while (descendants.some(isRunning) && Date.now() < deadline) await sleep(50);
  for (const pid of descendants.filter(isRunning)) killPid(pid, 'SIGKILL');
  return exit;
}

/** Stops every process still running (in parallel) and waits for all of them. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((t) => stopTracked(t)));
}

/** Last resort for process 'exit': synchronous SIGKILL of anything left, and of its descendants. */
export function killAllSync(): void {
  for (const t of live) {
    const descendants = descendantPids(t.pid);
    try {
      t.process.kill('SIGKILL');
    } catch {
      // ignore
    }
    for (const pid of descendants) killPid(pid, 'SIGKILL');
  }
}

/** Resident set size in KiB from /proc/<pid>/status, or undefined if unavailable. */
export function readRssKiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+([0-9]+) kB/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// CPU time

let clkTck: number | undefined;
/** clock ticks per second of /proc/<pid>/stat times */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(r.stdout?.trim());
    clkTck = r.status === 0 && n > 0 ? n : 100;
  }
  return clkTck;
}

/**
 * The name, utime and stime (clock ticks) in a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` file;
 * undefined when the process or thread is gone.
 */
export function cpuTimes(statPath: string): { name: string; user: number; kernel: number } | undefined {
  try {
    const stat = readFileSync(statPath, 'utf8');
    // "pid (comm) state ppid …": fields from the state on; utime and stime are fields 14 and 15
    const close = stat.lastIndexOf(')');
    const rest = stat.slice(close + 2).split(' ');
    const user = Number(rest[11]);
    const kernel = Number(rest[12]);
    if (!Number.isFinite(user) || !Number.isFinite(kernel)) return undefined;
    return { name: stat.slice(stat.indexOf('(') + 1, close), user, kernel };
  } catch {
    return undefined;
  }
}

/** utime + stime of a process (every thread), in clock ticks; undefined when it is gone. */
export function cpuTicks(pid: number): number | undefined {
  const t = cpuTimes(`/proc/${pid}/stat`);
  return t === undefined ? undefined : t.user + t.kernel;
}

/** utime + stime summed over processes; undefined when one is gone. */
export const sumTicks = (pids: readonly number[]): number | undefined => {
  let total = 0;
  for (const pid of pids) {
    const t = cpuTicks(pid);
    if (t === undefined) return undefined;
    total += t;
  }
  return total;
};

/**
 * Puts `pid` (all its threads) in a new cgroup allowed `share` of one core (CFS quota over a 100 ms
 * period; cgroup v1 `cpu` or v2; root). Returns the cgroup's directory, for removeCgroup once the
 * process has exited.
 */
export function limitCpu(pid: number, share: number): string {
  if (!(share > 0 && share <= 1)) throw new Error(`--cpu-quota: a share of a core in (0, 1], not ${share}`);
  const period = 100_000;
  const quota = Math.round(period * share);
  const v1 = '/sys/fs/cgroup/cpu';
  if (existsSync(`${v1}/cpu.cfs_quota_us`)) {
    const dir = `${v1}/muxgate-bench-${pid}`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/cpu.cfs_period_us`, String(period));
    writeFileSync(`${dir}/cpu.cfs_quota_us`, String(quota));
    writeFileSync(`${dir}/cgroup.procs`, String(pid));
    return dir;
  }
  const dir = `/sys/fs/cgroup/muxgate-bench-${pid}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/cpu.max`, `${quota} ${period}`);
  writeFileSync(`${dir}/cgroup.procs`, String(pid));
  return dir;
}

/** Removes a cgroup limitCpu made; its process must have exited (an empty cgroup). */
export function removeCgroup(dir: string): void {
  rmdirSync(dir);
}
