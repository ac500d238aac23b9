/**
 * The data path's duration histogram: each observation lands in the first bucket whose bound it does
 * not exceed (a bound is inclusive, as Prometheus `le`), above the last bound in the overflow bucket;
 * snapshots carry bounds in seconds; two workers' snapshots add up bucket by bucket.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addHistogram,
  DURATION_BOUNDS_MS,
  DurationHistogram,
  histogramSnapshot,
} from '../../src/core/duration-histogram.ts';

describe('DurationHistogram', () => {
  it('puts each observation in its bucket, bounds inclusive, overflow last', () => {
    const h = new DurationHistogram();
    for (const ms of [0, 0.5, 0.51, 1, 10_000, 60_000, 60_001, 3_600_000]) h.observe(ms);
    const c = Array.from(h.counts);
    assert.equal(c.length, DURATION_BOUNDS_MS.length + 1);
    assert.equal(c[0], 2, '0 and 0.5 ms: le 0.0005');
    assert.equal(c[1], 2, '0.51 and 1 ms: le 0.001');
    assert.equal(c[DURATION_BOUNDS_MS.indexOf(10_000)], 1);
    assert.equal(c[DURATION_BOUNDS_MS.indexOf(60_000)], 1);
    assert.equal(c.at(-1), 2, 'above 60 s: +Inf only');
    assert.equal(
      c.reduce((a, b) => a + b, 0),
      8,
    );
    assert.equal(h.sumMs, 0 + 0.5 + 0.51 + 1 + 10_000 + 60_000 + 60_001 + 3_600_000);
  });

  it('snapshots in seconds and adds two workers bucket by bucket', () => {
    const a = new DurationHistogram();
    const b = new DurationHistogram();
    a.observe(3);
    b.observe(3);
    b.observe(700);
    const sa = histogramSnapshot(a);
    const sb = histogramSnapshot(b);
    assert.equal(sa.bounds_s[0], 0.0005);
    assert.equal(sa.bounds_s.at(-1), 60);
    addHistogram(sa, sb);
    assert.equal(sa.counts[DURATION_BOUNDS_MS.indexOf(5)], 2);
    assert.equal(sa.counts[DURATION_BOUNDS_MS.indexOf(1000)], 1);
    assert.ok(Math.abs(sa.sum_s - 0.706) < 1e-12);
    // The snapshot is a copy: later observations do not change it.
    a.observe(1);
    assert.equal(sa.counts[1], 0);
  });
});
