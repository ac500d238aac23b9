/**
 * The memory trim, in this test process's own V8 heap: one trim after start; then a burst of
 * long-lived allocations grows the young generation, and once the event loop is idle a trim runs and
 * the young generation is small again.
 * Busy or disabled, no trim runs. (Each test file runs in its own process, so nothing else shares
 * this event loop.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapSpaceStatistics } from 'node:v8';
import { createLogger } from '../../src/core/log.ts';
import { MemoryTrim, type MemoryTrimSettings } from '../../src/core/memory-trim.ts';

const MiB = 1024 * 1024;

function youngBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** Long-lived objects allocated across turns of the event loop, like connections opening, until V8 grows the young generation. */
async function burst(keep: unknown[]): Promise<void> {
  for (let turn = 0; turn < 400 && youngBytes() <= 4 * MiB; turn++) {
    for (let i = 0; i < 5000; i++) keep.push({ i, name: `item-${i}`, parts: [i, i + 1, i + 2, i + 3] });
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(youngBytes() > 4 * MiB, `the young generation grew (${youngBytes()} bytes)`);
}

const settings = (over: Partial<MemoryTrimSettings> = {}): MemoryTrimSettings => ({
  enabled: true,
  idle_below: 0.05,
  young_above: 2 * MiB,
  min_interval: 1,
  ...over,
});

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(50);
  return cond();
}

describe('MemoryTrim', () => {
  it('trims once after start, then only after a burst, once the process is idle', async () => {
    const trim = new MemoryTrim(settings(), createLogger('silent'));
    trim.apply(settings());
    try {
      assert.ok(await waitFor(() => trim.counters.trims === 1, 10_000), 'the start-up trim ran within 10 s');
      // Idle, young generation small: nothing more to give back.
      await sleep(2500);
      assert.equal(trim.counters.trims, 1, 'no trim without a burst');
      const keep: unknown[] = [];
      await burst(keep);
      const grown = youngBytes();
      assert.ok(await waitFor(() => trim.counters.trims === 2, 10_000), 'a trim ran within 10 s of idling');
      assert.ok(youngBytes() < grown / 2, `young generation ${grown} -> ${youngBytes()} bytes`);
      assert.ok(trim.counters.last_pause_ms > 0);
      assert.ok(keep.length > 0, 'the live objects are still there');
    } finally {
      trim.stop();
    }
  });

  it('does not trim while the event loop is busy, nor when disabled', async () => {
    const keep: unknown[] = [];
    await burst(keep);
    const busy = new MemoryTrim(settings(), createLogger('silent'));
    busy.apply(settings());
    // 3 s of work in 20 ms slices: the checks (once a second) run between slices and see a busy loop.
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      const slice = Date.now() + 20;
      while (Date.now() < slice) keep.length;
      await new Promise((r) => setImmediate(r));
    }
    busy.stop();
    assert.equal(busy.counters.trims, 0);

    const off = new MemoryTrim(settings({ enabled: false }), createLogger('silent'));
    off.apply(settings({ enabled: false }));
    await sleep(2500);
    off.stop();
    assert.equal(off.counters.trims, 0);
    assert.ok(youngBytes() > 2 * MiB, 'nothing else trimmed in between');
  });

  it('runs a trim on demand', () => {
    const trim = new MemoryTrim(settings(), createLogger('silent'));
    assert.equal(trim.trim(), true);
    assert.equal(trim.counters.trims, 1);
  });
});
