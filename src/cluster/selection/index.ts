import { LeastRequestSelector } from './least-request.ts';
import { MaglevSelector } from './maglev.ts';
import { RandomSelector } from './random.ts';
import { RingHashSelector } from './ring-hash.ts';
import { RoundRobinSelector } from './round-robin.ts';
import type { LbPolicy, SelectableEndpoint, Selector } from './selector.ts';

export type { LbPolicy, SelectableEndpoint, Selector } from './selector.ts';

export interface SelectorOptions {
  /** ring_hash: minimum number of virtual nodes (default 1024, capped at 65536). */
  minRingSize?: number;
  /** maglev: lookup table size, must be prime (default 65537). */
  maglevTableSize?: number;
  /** Source of randomness in [0, 1); injectable so tests are deterministic. Defaults to Math.random. */
  random?: () => number;
}

/**
 * Builds the selector for `policy` over `endpoints`. All precomputation (weights, rings, tables)
 * happens here, so call it again when the endpoint list changes rather than mutating the list.
 * Throws RangeError on invalid weights or options.
 */
export function createSelector<E extends SelectableEndpoint>(
  policy: LbPolicy,
  endpoints: readonly E[],
  opts: SelectorOptions = {},
): Selector<E> {
  const random = opts.random ?? Math.random;
  switch (policy) {
    case 'round_robin':
      return new RoundRobinSelector(endpoints);
    case 'least_request':
    // Power of two choices on `active`: requests in flight for HTTP, open connections for TCP.
    case 'least_connections':
      return new LeastRequestSelector(endpoints, random);
    case 'random':
      return new RandomSelector(endpoints, random);
    case 'ring_hash':
      return new RingHashSelector(endpoints, random, opts.minRingSize);
    case 'maglev':
      return new MaglevSelector(endpoints, random, opts.maglevTableSize);
    default: {
      // Unreachable for typed callers; guards policies that arrive unchecked from config.
      const unknown: never = policy;
      throw new RangeError(`unknown load-balancing policy: ${String(unknown)}`);
    }
  }
}
