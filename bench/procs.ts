// Registry of every child process the harness starts, so that all of them are
// stopped and waited for at the end, on errors and on Ctrl-C.

import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

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

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopTracked(t: Tracked, graceMs = 3000): Promise<ExitInfo> {
  if (t.exit) return t.exit;
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
  if (first !== 'timeout') return first;
  try {
    t.process.kill('SIGKILL');
  } catch {
    // already gone
  }
  return t.exited;
}

/** Stops every process still running (in parallel) and waits for all of them. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((t) => stopTracked(t)));
}

/** Last resort for process 'exit': synchronous SIGKILL of anything left. */
export function killAllSync(): void {
  for (const t of live) {
    try {
      t.process.kill('SIGKILL');
    } catch {
      // ignore
    }
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
