// The functions a proxy spent its instructions in, per request, from a `cpu-per-request.ts --callgrind` run:
//   node bench/callgrind-top.ts <dir>/callgrind.out <pid> <requests> [--top 60]
// Self instructions of each function on the main thread (callgrind_annotate), with JIT-compiled JavaScript named
// through the /tmp/perf-<pid>.map that Node's --perf-basic-prof wrote (callgrind itself sees only their addresses).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { newestDump } from './callgrind-dumps.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '60' } },
});
const [out, pid, requestsArg] = positionals;
if (out === undefined || pid === undefined || requestsArg === undefined) {
  throw new Error('usage: node bench/callgrind-top.ts <callgrind.out> <pid> <requests> [--top N]');
}
const requests = Number(requestsArg);

/** JIT code ranges, sorted by start: [start, end, name]. */
function jitRanges(): [number, number, string][] {
  const map = `/tmp/perf-${pid}.map`;
  if (!existsSync(map)) return [];
  const ranges: [number, number, string][] = [];
  for (const line of readFileSync(map, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m === null) continue;
    const start = Number.parseInt(m[1] ?? '', 16);
    ranges.push([start, start + Number.parseInt(m[2] ?? '', 16), m[3] ?? '']);
  }
  return ranges.sort((a, b) => a[0] - b[0]);
}

const ranges = jitRanges();
function nameOf(addr: number): string {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (addr < r[0]) hi = mid - 1;
    else if (addr >= r[1]) lo = mid + 1;
    else return r[2];
  }
  return `0x${addr.toString(16)}`;
}

const text = execFileSync(
  'callgrind_annotate',
  ['--inclusive=no', '--threshold=100', newestDump(out).find((d) => d.thread === 1)!.path],
  {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  },
);
const self = new Map<string, number>();
let total = 0;
for (const line of text.split('\n')) {
  const m = /^\s*([\d,]+) \([\s\d.]+%\)\s+(.*)$/.exec(line);
  if (m === null) continue;
  const ir = Number((m[1] ?? '').replaceAll(',', ''));
  const where = m[2] ?? '';
  if (where === 'PROGRAM TOTALS') {
    total = ir;
    continue;
  }
  const fn = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$/.exec(where);
  const name = fn !== null ? nameOf(Number.parseInt(fn[1] ?? '', 16)) : where.replace(/^[^:]*:/, '');
  self.set(name, (self.get(name) ?? 0) + ir);
}
// callgrind_annotate lists inclusive-looking totals for frames that only call (main, the event loop):
// a function's self count cannot exceed the program's, and those frames sit at ~100 %; leave them out.
const rows = [...self].filter(([, ir]) => ir < total * 0.5).sort((a, b) => b[1] - a[1]);
process.stdout.write(`${Math.round(total / requests)} instructions/request in all\n`);
for (const [name, ir] of rows.slice(0, Number(values.top))) {
  process.stdout.write(
    `${(ir / requests).toFixed(0).padStart(7)}  ${((100 * ir) / total).toFixed(2).padStart(5)} %  ${name.slice(0, 150)}\n`,
  );
}
