import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * The files of the newest dump of a callgrind run started with `--callgrind-out-file=<out>
 * --separate-threads=yes`: one per thread, `<out>.<n>-<thread>` (n counts `callgrind_control --dump`s,
 * each counting since the zeroing or the dump before; thread 1 is the main thread), paths with their thread.
 */
export function newestDump(out: string): { path: string; thread: number }[] {
  const dir = dirname(out);
  const base = basename(out);
  const files = readdirSync(dir)
    .map((f) => ({ f, m: new RegExp(`^${base}\\.(\\d+)-(\\d+)$`).exec(f) }))
    .filter((d) => d.m !== null)
    .map((d) => ({ path: join(dir, d.f), n: Number(d.m![1]), thread: Number(d.m![2]) }));
  const last = Math.max(...files.map((d) => d.n));
  const dump = files.filter((d) => d.n === last).map(({ path, thread }) => ({ path, thread }));
  if (!dump.some((d) => d.thread === 1)) throw new Error(`no dump of the main thread of ${out}`);
  return dump;
}
