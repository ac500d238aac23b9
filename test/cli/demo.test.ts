/**
 * The demo as a newcomer runs it: muxgate on examples/demo.yaml with the demo backends, and
 * `npm run demo:load` (demo/load.ts), scaled down. The backends and muxgate take ports of their own here
 * (the demo's fixed ports may be busy on a test machine): the config is the demo's, with its addresses
 * rewritten. The load must see no failure, and its WebSockets and HTTP/1.1 requests must ride at most
 * the 4 upstream connections the demo's HTTP/2 cluster allows.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { startDemoBackend, startDemoH2Backend } from '../../demo/backends.ts';
import { tmpDir } from '../helpers/certs.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';

const run = promisify(execFile);
const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));

describe('demo', () => {
  it('demo:load against the demo config: no failure, HTTP/2 upstream on at most 4 connections', async () => {
    const a = await startDemoBackend('demo-a', 0);
    const b = await startDemoBackend('demo-b', 0);
    const h2 = await startDemoH2Backend('demo-h2', 0);
    after(() => {
      a.close();
      b.close();
      h2.close();
    });
    const port = (s: { address(): unknown }) => (s.address() as AddressInfo).port;
    const yaml = readFileSync(root('examples/demo.yaml'), 'utf8')
      .replaceAll('127.0.0.1:9101', `127.0.0.1:${port(a)}`)
      .replaceAll('127.0.0.1:9102', `127.0.0.1:${port(b)}`)
      .replaceAll('127.0.0.1:9103', `127.0.0.1:${port(h2)}`)
      .replace('address: 127.0.0.1:8080', 'address: 127.0.0.1:0')
      .replace('address: 127.0.0.1:9901', 'address: 127.0.0.1:0');
    const settings = yaml.split('\n').filter((l) => !l.trimStart().startsWith('#'));
    assert.ok(!settings.some((l) => /:(8080|9901|910[123])\b/.test(l)), 'every fixed demo port rewritten');
    const file = `${tmpDir('muxgate-demo-')}/demo.yaml`;
    writeFileSync(file, yaml);
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    const web = portOf(await m.waitFor((l) => l.msg === 'listening'));
    const admin = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
    const load = await run(
      process.execPath,
      [
        root('demo/load.ts'),
        '--clients',
        '100',
        '--websockets',
        '300',
        '--duration',
        '4',
        '--target',
        `http://127.0.0.1:${web}`,
        '--admin',
        `http://127.0.0.1:${admin}`,
      ],
      { timeout: 60_000 },
    );
    assert.match(load.stdout, /100 clients, 300 WebSockets open/);
    assert.match(load.stdout, /failures 0/);
    const h2Connections = [...load.stdout.matchAll(/demo-h2 (\d+) \((\d+) streams\)/g)].map((x) => Number(x[1]));
    assert.ok(h2Connections.length > 0, load.stdout);
    for (const n of h2Connections) assert.ok(n >= 1 && n <= 4, `demo-h2 upstream connections: ${n}`);
    assert.match(load.stdout, /done: \d+ requests, \d+ echoes, 0 failures/);
  });
});
