/**
 * Zero-downtime upgrade of the muxgate binary (README "Operating"): a second process binds the same
 * ports (SO_REUSEPORT), the first gets SIGTERM, stops accepting and drains. Under a steady load of
 * keep-alive clients and clients opening a connection per request, no request fails.
 *
 * Runs in a network namespace this test creates, with net.ipv4.tcp_migrate_req = 1 there (connections
 * still in the old socket's accept queue when it closes move to the new one instead of being reset:
 * the setting the README asks for). Needs root for that; skips and says why otherwise.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

const SCENARIO = fileURLToPath(new URL('./netns/upgrade-scenario.ts', import.meta.url));
const NS = `muxgate-upgrade-${process.pid}`;

function whyNot(): string | null {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0)
    return 'needs root to create a network namespace (ip netns add) and set its tcp_migrate_req';
  if (spawnSync('ip', ['-V']).error !== undefined) return 'the ip command (Debian iproute2) is not installed';
  if (!existsSync('/proc/sys/net/ipv4/tcp_migrate_req')) return 'net.ipv4.tcp_migrate_req needs Linux 5.14 or later';
  return null;
}
const skip = whyNot();

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

describe('zero-downtime upgrade', { skip: skip ?? false }, () => {
  before(() => {
    run('ip', ['netns', 'add', NS]);
    run('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // /proc/sys/net is the reading process's namespace's (no procps needed for sysctl).
    run('ip', ['netns', 'exec', NS, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/tcp_migrate_req']);
    run('ip', ['netns', 'exec', NS, 'sh', '-c', 'test "$(cat /proc/sys/net/ipv4/tcp_migrate_req)" = 1']);
  });
  after(() => void spawnSync('ip', ['netns', 'del', NS]));

  it('a new process takes over the port while the old one drains: no request fails', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', NS, process.execPath, SCENARIO], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('exit', (code) => {
        clearTimeout(t);
        if (code === 0) resolve(stdout);
        else reject(new Error(`scenario exited ${code}: ${stderr}${stdout}`));
      });
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as {
      served: Record<'a' | 'both' | 'draining' | 'b', number>;
      failures: string[];
      failed: number;
      aCode: number;
      bCode: number;
    };
    assert.equal(r.failed, 0, `failed requests: ${r.failures.join('; ')}`);
    assert.equal(r.aCode, 0, 'the old process drained and exited 0');
    assert.equal(r.bCode, 0);
    for (const phase of ['a', 'both', 'b'] as const)
      assert.ok(r.served[phase] > 50, `served in ${phase}: ${JSON.stringify(r.served)}`);
  });
});
