import type { SelectableEndpoint, Selector } from './selector.ts';
import { readWeights } from './weights.ts';

/**
 * Smooth weighted round robin (nginx): each pick adds every healthy endpoint's weight to its
 * running `current`, takes the largest, and subtracts the healthy total from the winner. Unlike
 * plain WRR this interleaves heavy endpoints (weights 5,1,1 give a a b a c a a, not a a a a a b c)
 * so no backend gets a burst. Unhealthy endpoints are skipped and their `current` frozen, so the
 * rotation among the others stays exact. O(n) per pick, which is fine for upstream-sized lists.
 */
export class RoundRobinSelector<E extends SelectableEndpoint> implements Selector<E> {
  private readonly endpoints: readonly E[];
  private readonly weights: Float64Array;
  private readonly current: Float64Array;

  constructor(endpoints: readonly E[]) {
    this.endpoints = endpoints;
    this.weights = readWeights(endpoints);
    this.current = new Float64Array(endpoints.length);
  }

  pick(_hashKey?: string): E | undefined {
    const endpoints = this.endpoints;
    const weights = this.weights;
    const current = this.current;
    let best = -1;
    let bestCurrent = Number.NEGATIVE_INFINITY;
    let total = 0;
    for (let i = 0; i < endpoints.length; i++) {
      if (!endpoints[i]!.healthy) continue;
      const w = weights[i]!;
      const c = current[i]! + w;
      current[i] = c;
      total += w;
      // Strict '>' keeps ties on the earliest endpoint, which makes the sequence deterministic.
      if (c > bestCurrent) {
        bestCurrent = c;
        best = i;
      }
    }
    if (best < 0) return undefined;
    current[best] = bestCurrent - total;
    return endpoints[best];
  }
}
