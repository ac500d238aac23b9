/**
 * A fixed-bucket histogram of durations, kept by the data path for `/metrics` (request duration per
 * listener, pool wait per endpoint). Observing is a short scan and two additions on a typed array:
 * no allocation, no label lookup. The stats snapshot copies the counts; the admin side turns them into
 * Prometheus buckets (cumulative, in seconds) and sums them over workers.
 */

/** Bucket upper bounds in ms (Prometheus `le` = bound ÷ 1000); one more bucket above the last. */
export const DURATION_BOUNDS_MS: readonly number[] = [
  0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
];

export class DurationHistogram {
  /** Observations per bucket (not cumulative); the last is above every bound. */
  readonly counts = new Float64Array(DURATION_BOUNDS_MS.length + 1);
  sumMs = 0;

  observe(ms: number): void {
    const b = DURATION_BOUNDS_MS;
    let i = 0;
    while (i < b.length && ms > b[i]!) i++;
    this.counts[i] = this.counts[i]! + 1;
    this.sumMs += ms;
  }
}

/** A histogram in the stats snapshot: bounds in seconds, counts per bucket (the last one +Inf). */
export interface HistogramSnapshot {
  bounds_s: number[];
  counts: number[];
  sum_s: number;
}

export function histogramSnapshot(h: DurationHistogram): HistogramSnapshot {
  return {
    bounds_s: DURATION_BOUNDS_MS.map((ms) => ms / 1000),
    counts: Array.from(h.counts),
    sum_s: h.sumMs / 1000,
  };
}

/** Adds `b` into `a` (the same bounds: every worker runs the same code). */
export function addHistogram(a: HistogramSnapshot, b: HistogramSnapshot): void {
  for (let i = 0; i < a.counts.length; i++) a.counts[i] = a.counts[i]! + (b.counts[i] ?? 0);
  a.sum_s += b.sum_s;
}
