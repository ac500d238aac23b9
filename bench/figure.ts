// What bench/run.ts hands to the runner of each figure that is not a plain wrk
// scenario (bench/fixed-rate.ts, bench/idle-memory.ts, bench/workers.ts).

import type { ProxyName } from './servers.ts';

export interface FigureContext {
  /** configs, logs and scratch files of this run */
  runDir: string;
  rounds: number;
  durationS: number;
  warmupS: number;
  proxies: readonly ProxyName[];
  /** true once the run was interrupted (Ctrl-C): stop after the current measurement */
  stopped(): boolean;
  /** call after recording each result (rewrites the report) */
  recorded(): void;
  /** server -> why it could not be started */
  startFailures: Map<string, string>;
  /** "scenario/server" -> why its sanity check failed */
  checkFailures: Map<string, string>;
}

/** `list` rotated left by `by`: the order of the servers changes from one round to the next. */
export function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length === 0) return [];
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}
