/**
 * An admin API bound beyond loopback refuses every POST unless a token is configured. The address
 * is a 10.x address in a network namespace this test creates (nothing listens outside the machine);
 * muxgate and curl run inside it. Needs root for `ip netns`; skips and says why otherwise.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { tmpDir } from '../helpers/certs.ts';
import { BIN } from '../helpers/cli.ts';

const NS = `muxgate-admin-${process.pid}`;
const ADDR = '10.213.0.1';
const TOKEN = 'token-for-the-exposed-admin-api';

function whyNot(): string | null {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace (ip netns add)';
  if (spawnSync('ip', ['-V']).error !== undefined) return 'the ip command (Debian iproute2) is not installed';
  if (spawnSync('curl', ['--version']).error !== undefined) return 'curl is not installed';
  return null;
}
const skip = whyNot();

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** curl inside the namespace: [status, body]. */
function curlIn(...args: string[]): [number, string] {
  const r = spawnSync('ip', ['netns', 'exec', NS, 'curl', '-sS', '-m', '10', '-w', '\n%{http_code}', ...args], {
    encoding: 'utf8',
  });
  const lines = r.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return [status, lines.join('\n')];
}

/** Starts muxgate in the namespace with this config; resolves once its admin API listens. */
function startIn(config: string): Promise<ChildProcess> {
  const file = `${tmpDir('muxgate-admin-ns-')}/m.yaml`;
  writeFileSync(file, config);
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, BIN, 'start', '-c', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  after(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`muxgate did not start: ${out}`)), 15_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('"admin listening"')) {
        clearTimeout(t);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`muxgate exited ${code}: ${out}`)));
  });
}

const config = (port: number, token: string | null) => `access_log: { enabled: false }
admin: { address: "${ADDR}:${port}"${token === null ? '' : `, token: ${token}`} }
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: up }] }
clusters:
  up: { endpoints: ["127.0.0.1:9"] }
`;

describe('admin API beyond loopback', { skip: skip ?? false }, () => {
  before(() => {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    // A non-loopback address, on the namespace's own lo (dummy and veth links need kernel modules
    // a container may lack); muxgate sees a bind beyond 127.0.0.0/8 and ::1, which is what counts.
    ip('-n', NS, 'addr', 'add', `${ADDR}/32`, 'dev', 'lo');
  });
  after(() => void spawnSync('ip', ['netns', 'del', NS]));

  it('without a token: reads are served, every POST is refused with admin_token_required', async () => {
    await startIn(config(9901, null));
    const [status] = curlIn(`http://${ADDR}:9901/stats`);
    assert.equal(status, 200);
    const [post, body] = curlIn('-X', 'POST', `http://${ADDR}:9901/reload`);
    assert.equal(post, 403);
    assert.equal(JSON.parse(body).error, 'admin_token_required');
    const [drain] = curlIn('-X', 'POST', `http://${ADDR}:9901/clusters/up/endpoints/127.0.0.1:9/drain`);
    assert.equal(drain, 403);
  });

  it('with a token: a POST carrying it is served', async () => {
    await startIn(config(9902, TOKEN));
    assert.equal(curlIn('-X', 'POST', `http://${ADDR}:9902/clusters/up/endpoints/127.0.0.1:9/drain`)[0], 401);
    const [ok, body] = curlIn(
      '-X',
      'POST',
      '-H',
      `authorization: Bearer ${TOKEN}`,
      `http://${ADDR}:9902/clusters/up/endpoints/127.0.0.1:9/drain`,
    );
    assert.equal(ok, 200, body);
  });
});
