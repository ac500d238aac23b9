import type { SelectableEndpoint, Selector } from './selector.ts';
import { readWeights } from './weights.ts';

/** See random.ts: rejection sampling stays exact; the bounded retries cap the cost when many are ejected. */
const MAX_REJECTIONS = 4;

/**
 * Power of two choices: sample two distinct healthy endpoints uniformly and send the request to the
 * one with fewer in-flight requests per unit of weight. Comparing two random candidates instead of
 * scanning for the global minimum avoids the herd effect where every proxy worker piles onto the
 * same momentarily idle backend, while still bounding the max load exponentially better than random.
 */
export class LeastRequestSelector<E extends SelectableEndpoint> implements Selector<E> {
  private readonly endpoints: readonly E[];
  private readonly weights: Float64Array;
  private readonly random: () => number;

  constructor(endpoints: readonly E[], random: () => number) {
    this.endpoints = endpoints;
    this.random = random;
    this.weights = readWeights(endpoints);
  }

  pick(_hashKey?: string): E | undefined {
    const a = this.randomHealthy(-1);
    if (a < 0) return undefined;
    const b = this.randomHealthy(a);
    const ea = this.endpoints[a]!;
    if (b < 0) return ea;
    const eb = this.endpoints[b]!;
    // active_a / w_a <= active_b / w_b, cross-multiplied to avoid division; ties go to the first
    // draw, which is itself random.
    return ea.active * this.weights[b]! <= eb.active * this.weights[a]! ? ea : eb;
  }

  /** Index of a uniformly random healthy endpoint other than `exclude`, or -1 if there is none. */
  private randomHealthy(exclude: number): number {
    const endpoints = this.endpoints;
    const n = endpoints.length;
    if (n === 0) return -1;
    for (let attempt = 0; attempt < MAX_REJECTIONS; attempt++) {
      const i = Math.min(Math.floor(this.random() * n), n - 1);
      if (i !== exclude && endpoints[i]!.healthy) return i;
    }
    let count = 0;
    for (let i = 0; i < n; i++) {
      if (i !== exclude && endpoints[i]!.healthy) count++;
    }
    if (count === 0) return -1;
    let target = Math.min(Math.floor(this.random() * count), count - 1);
    for (let i = 0; i < n; i++) {
      if (i === exclude || !endpoints[i]!.healthy) continue;
      if (target === 0) return i;
      target--;
    }
    return -1;
  }
}
