/**
 * The access log of a real muxgate process: batched (nothing reaches the file until the buffer fills
 * or the interval passes), yet nothing lost when SIGTERM arrives with lines still buffered, with two
 * workers appending to one file; and the default destination (stdout) of the one-line proxy.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Backend, httpBackend } from '../helpers/backend.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';

let dir: string;
let backend: Backend<import('node:http').Server>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muxgate-access-'));
  backend = await httpBackend((req, res) => res.end(`saw ${req.url}\n`));
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await backend.close();
});

async function get(port: number, path: string): Promise<void> {
  // A connection each, so that the kernel spreads them over the workers.
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } });
  assert.equal(r.status, 200);
  await r.text();
}

describe('access log of a running process', () => {
  it('holds lines in its buffer and writes every one of them on SIGTERM (workers: 2, one file)', async () => {
    const file = join(dir, 'access.log');
    const config = join(dir, 'muxgate.yaml');
    writeFileSync(
      config,
      `workers: 2
access_log: { path: ${JSON.stringify(file)}, buffer: 1MiB, flush_interval: 1h }
admin: false
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: up }] }
clusters:
  up: { endpoints: ["${backend.addr}"] }
`,
    );
    const m = startMuxgate(['start', '-c', config]);
    let stopped = false;
    try {
      await m.waitFor((l) => l.msg === 'all workers listening');
      const port = portOf(m.lines.find((l) => l.msg === 'listening')!);
      const n = 300;
      for (let i = 0; i < n; i += 10) await Promise.all(Array.from({ length: 10 }, (_, k) => get(port, `/r${i + k}`)));
      // 300 lines of ~250 bytes are far below the 1 MiB buffer and the interval is an hour: nothing written yet.
      assert.equal(statSync(file).size, 0, 'lines are buffered, not written one by one');
      assert.equal(await m.stop('SIGTERM'), 0);
      stopped = true;
      const lines = readFileSync(file, 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.equal(lines.length, n, 'one line per request, none lost at exit');
      assert.deepEqual(lines.map((l) => l.path).sort(), Array.from({ length: n }, (_, i) => `/r${i}`).sort());
    } finally {
      if (!stopped) await m.stop('SIGKILL');
    }
  });

  it('the one-line proxy logs to stdout by default, each line complete JSON', async () => {
    const m = startMuxgate(['proxy', '--listen', '127.0.0.1:0', '--to', backend.addr]);
    try {
      const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
      for (let i = 0; i < 20; i++) await get(port, `/one${i}`);
      // flush_interval defaults to 1 s: the lines arrive without a signal.
      await m.waitFor((l) => l.path === '/one19', 10_000);
      const access = m.lines.filter((l) => typeof l.path === 'string' && String(l.path).startsWith('/one'));
      assert.equal(access.length, 20);
      for (const l of access) assert.equal(l.status, 200);
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });
});
