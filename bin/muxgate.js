#!/usr/bin/env node
// The muxgate command. Plain JavaScript on purpose (the project's one .js file): it turns on Node's
// compile cache before any TypeScript is loaded, so from the second start on the cached,
// type-stripped code is used and Node never loads its TypeScript stripper (~30 MB of resident
// memory in every process, workers included).
import { enableCompileCache } from 'node:module';

enableCompileCache();
const { main } = await import('../src/cli/main.ts');
process.exit(await main(process.argv.slice(2)));
