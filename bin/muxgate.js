#!/usr/bin/env node
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
const { main } = await import('../src/cli/main.ts');
process.exit(await main(process.argv.slice(2)));
