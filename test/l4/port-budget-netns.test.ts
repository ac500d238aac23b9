/**
 * The port-budget proofs, in a network namespace this test creates (so the narrowed
 * ip_local_port_range and the thousands of sockets touch nothing else on the machine). The scenario
 * itself runs inside the namespace: test/l4/netns/budget-scenario.ts.
 *
 * Needs root (ip netns add, and writing the namespace's sysctls) and ~16,500 file descriptors per
 * process; without them the tests skip and say why.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import { openFileLimits } from '../../src/core/sysctl.ts';

const SCENARIO = fileURLToPath(new URL('./netns/budget-scenario.ts', import.meta.url));
const NS_PREFIX = `muxgate-test-${process.pid}`;
/** 7,600 tunnels: the scenario process holds client + backend sockets, muxgate two per tunnel. */
const FDS_NEEDED = 16_500;

function whyNot(): string | null {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace (ip netns add)';
  if (spawnSync('ip', ['-V']).error !== undefined) return 'the ip command (Debian iproute2) is not installed';
  const hard = openFileLimits().hard;
  if (hard !== null && hard < FDS_NEEDED) {
    return `needs ${FDS_NEEDED} file descriptors per process for 7,600 tunnels; the hard limit here is ${hard}`;
  }
  const probe = makeNamespace(`${NS_PREFIX}-probe`);
  if (typeof probe === 'string') return probe;
  probe.remove();
  return null;
}

/**
 * A fresh namespace per scenario: the one before leaves its narrowed range and its fixed ports full of
 * TIME_WAIT, and the scenario relies on nothing else binding a port in its namespace.
 */
function makeNamespace(name: string): { name: string; remove(): void } | string {
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  const remove = () => void spawnSync('ip', ['netns', 'del', name]);
  const up = spawnSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { encoding: 'utf8' });
  if (up.status !== 0) {
    remove();
    return `cannot bring up loopback in the namespace: ${up.stderr.trim()}`;
  }
  return { name, remove };
}

interface Step {
  step: string;
  ok?: number | boolean;
  failed?: number;
  budgets?: { source: string; in_use: number; cooling: number; free: number; size: number }[];
  log?: Record<string, unknown> | null;
  backend_open?: number;
  range?: string;
  message?: string;
  problems?: Record<string, unknown>[];
}

/** Runs the scenario in the namespace; resolves with its steps by name. */
async function scenario(mode: 'kernel' | 'sources'): Promise<Map<string, Step>> {
  const ns = makeNamespace(`${NS_PREFIX}-${mode}`);
  if (typeof ns === 'string') throw new Error(ns);
  try {
    return await runIn(ns.name, mode);
  } finally {
    ns.remove();
  }
}

function runIn(ns: string, mode: 'kernel' | 'sources'): Promise<Map<string, Step>> {
  return new Promise((resolve, reject) => {
    const hard = openFileLimits().hard;
    const raise = hard === null ? '' : `ulimit -n ${hard}; `;
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, 'sh', '-c', `${raise}exec "$0" "$1" "$2"`, process.execPath, SCENARIO, mode],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    child.stderr.on('data', (c: Buffer) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      const steps = new Map<string, Step>();
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const s = JSON.parse(line) as Step;
        steps.set(s.step, s);
      }
      if (steps.has('error')) reject(new Error(`scenario failed: ${steps.get('error')?.message}\n${err}`));
      else if (!steps.has('again')) reject(new Error(`scenario ended early; stdout:\n${out}\nstderr:\n${err}`));
      else resolve(steps);
    });
  });
}

describe('port budget in a network namespace (ip_local_port_range narrowed to 1,000 ports)', () => {
  let skip: string | null = null;
  before(() => {
    skip = whyNot();
  });

  test('without source_addresses: 1,000 tunnels hold, the 1,001st is closed with the budget logged, and service resumes', async (t) => {
    if (skip !== null) {
      t.skip(skip);
      return;
    }
    const steps = await scenario('kernel');
    t.diagnostic(JSON.stringify([...steps.values()].map(({ problems: _, ...s }) => s)));
    assert.equal(steps.get('ready')?.range, '20000\t20999');
    const fill = steps.get('fill');
    assert.equal(fill?.ok, 1000, 'every port of the range carries a tunnel, each echo-verified');
    assert.equal(fill?.failed, 0);
    assert.deepEqual(fill?.budgets, [{ source: 'kernel', in_use: 1000, cooling: 0, free: 0, size: 1000 }]);
    const beyond = steps.get('beyond');
    assert.equal(beyond?.ok, false, 'the 1,001st tunnel is closed');
    assert.equal(beyond?.backend_open, 1000, 'the backend never saw a 1,001st connection');
    assert.equal(beyond?.log?.msg, 'upstream ports exhausted');
    assert.equal(beyond?.log?.in_use, 1000);
    assert.equal(beyond?.log?.size, 1000);
    assert.equal(beyond?.log?.range, '20000-20999');
    const again = steps.get('again');
    assert.equal(again?.ok, 1000, 'after the tunnels close, the ports serve new tunnels');
    assert.equal(again?.failed, 0);
  });

  test('with 8 source addresses: 7,600 tunnels to one backend IP:port, and again after they close', async (t) => {
    if (skip !== null) {
      t.skip(skip);
      return;
    }
    const steps = await scenario('sources');
    t.diagnostic(JSON.stringify([...steps.values()].map(({ problems: _, ...s }) => s)));
    const fill = steps.get('fill');
    assert.equal(fill?.ok, 7600, '>= 7,500 concurrent tunnels, each echo-verified');
    assert.equal(fill?.failed, 0);
    assert.equal(fill?.backend_open, 7600, 'all of them to the one backend IP:port');
    assert.equal(fill?.budgets?.length, 8, 'one budget per source address');
    for (const b of fill?.budgets ?? []) {
      assert.equal(b.size, 1000, `${b.source}: the narrowed range`);
      assert.equal(b.in_use, 950, `${b.source}: spread evenly (most free ports first)`);
    }
    const soon = steps.get('soon');
    assert.equal(soon?.ok, 1000, 'right after 7,600 tunnels closed, new ones connect');
    const again = steps.get('again');
    assert.equal(again?.ok, 7600, 'the whole budget is back');
    assert.equal(again?.failed, 0);
  });
});
