import type { SelectableEndpoint, Selector } from './selector.ts';
import { readWeights } from './weights.ts';

/**
 * Rejection sampling is exact (a uniform draw over all weight, retried on unhealthy hits, is a
 * uniform draw over healthy weight) and O(log n) while most endpoints are healthy; past this many
 * misses, one linear pass over the healthy subset bounds the cost when most are ejected.
 */
const MAX_REJECTIONS = 4;

/** Weighted random pick. Also the keyless fallback of the hash-based selectors. */
export class RandomSelector<E extends SelectableEndpoint> implements Selector<E> {
  private readonly endpoints: readonly E[];
  private readonly weights: Float64Array;
  /** cumulative[i] = sum of weights[0..i]; strictly increasing since weights are >= 1. */
  private readonly cumulative: Float64Array;
  private readonly total: number;
  private readonly random: () => number;

  constructor(endpoints: readonly E[], random: () => number) {
    this.endpoints = endpoints;
    this.random = random;
    this.weights = readWeights(endpoints);
    this.cumulative = new Float64Array(endpoints.length);
    let sum = 0;
    for (let i = 0; i < endpoints.length; i++) {
      sum += this.weights[i]!;
      this.cumulative[i] = sum;
    }
    this.total = sum;
  }

  pick(_hashKey?: string): E | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    for (let attempt = 0; attempt < MAX_REJECTIONS; attempt++) {
      const e = this.endpoints[this.indexOf(this.random() * this.total)]!;
      if (e.healthy) return e;
    }
    return this.pickHealthySlow();
  }

  /** Smallest i with r < cumulative[i]; clamped, since r can round up to `total`. */
  private indexOf(r: number): number {
    const cumulative = this.cumulative;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r < cumulative[mid]!) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private pickHealthySlow(): E | undefined {
    const endpoints = this.endpoints;
    let healthyTotal = 0;
    for (let i = 0; i < endpoints.length; i++) {
      if (endpoints[i]!.healthy) healthyTotal += this.weights[i]!;
    }
    if (healthyTotal === 0) return undefined;
    let r = this.random() * healthyTotal;
    let last: E | undefined;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      if (!e.healthy) continue;
      r -= this.weights[i]!;
      if (r < 0) return e;
      last = e;
    }
    // Only reached when float rounding leaves r at exactly 0 after the last healthy endpoint.
    return last;
  }
}
