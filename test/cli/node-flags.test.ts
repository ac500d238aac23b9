/**
 * muxgate's Node flags are given in three places that must agree: the shebang of bin/muxgate.js
 * (the `muxgate` command), `npm start`, and the bench's command line (which runs `node bin/muxgate.js`
 * so that the pid it measures is muxgate's own), and node accepts them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MUXGATE_NODE_FLAGS } from '../../bench/servers.ts';

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

describe('Node flags', () => {
  it('are the same on the shebang, in npm start and in the bench', () => {
    const shebang = readFileSync(root('bin/muxgate.js'), 'utf8').split('\n')[0]!;
    assert.equal(shebang, `#!/usr/bin/env -S node ${MUXGATE_NODE_FLAGS.join(' ')}`);
    const pkg = JSON.parse(readFileSync(root('package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.start, `node ${MUXGATE_NODE_FLAGS.join(' ')} demo/start.ts`);
  });

  it('are accepted by node when the command runs through its shebang', () => {
    // A misspelt flag makes node exit with "bad option" before muxgate runs; node 26 first on PATH,
    // as npm puts it for `npx muxgate`.
    const bin = dirname(process.execPath);
    const out = execFileSync(root('bin/muxgate.js'), ['version'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
    });
    assert.match(out, /^muxgate \d+\.\d+\.\d+/);
  });
});
