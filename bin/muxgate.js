#!/usr/bin/env -S node --max-semi-space-size=8
// The muxgate command. Plain JavaScript on purpose (the project's one .js file): it turns on Node's
// compile cache before any TypeScript is loaded, so from the second start on the cached,
// type-stripped code is used and Node never loads its TypeScript stripper (~30 MB of resident
// memory in every process, workers included).
import { enableCompileCache } from 'node:module';
import { setFlagsFromString } from 'node:v8';

// V8 moves allocation sites whose objects often survive a young-generation GC to the old
// generation ("pretenuring"). Under load a proxy's per-request objects live for one round trip,
// which is long enough to trip that heuristic, and then every request's objects go straight to the
// old generation and need full mark-compact GCs (measured: ~10 a second and a third less
// throughput for 16 KiB POSTs, bench/analysis.md). Set before any of muxgate's code is loaded.
setFlagsFromString('--no-allocation-site-pretenuring');
enableCompileCache();
// The shebang's --max-semi-space-size=8 (also in `npm start` and the bench's command line; V8 reads
// it only at startup, so it cannot be set here): V8 grows its young generation to 2 × 32 MiB
// semi-spaces under any burst of long-lived allocations (10,000 WebSockets opening) and keeps them,
// ~64 MiB of RSS that idle connections then appear to cost. Under steady load V8 keeps the
// semi-space at 8 MiB or less anyway (--trace-gc-nvp on get-12b and h2-upstream), so the cap does
// not change how often it scavenges there. Workers are forked with the same flags.
const { main } = await import('../src/cli/main.ts');
process.exit(await main(process.argv.slice(2)));
