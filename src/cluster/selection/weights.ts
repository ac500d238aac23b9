import type { SelectableEndpoint } from './selector.ts';

/**
 * Copies endpoint weights into a typed array once, at construction, so picks read a packed array
 * instead of chasing object properties. A weight that is not an integer >= 1 is a bug upstream
 * (config validation should have caught it); failing loudly here beats silently skewing traffic.
 */
export function readWeights(endpoints: readonly SelectableEndpoint[]): Float64Array {
  const weights = new Float64Array(endpoints.length);
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (!Number.isInteger(e.weight) || e.weight < 1) {
      throw new RangeError(`endpoint ${e.key}: weight must be an integer >= 1, got ${e.weight}`);
    }
    weights[i] = e.weight;
  }
  return weights;
}

/** True if at least one endpoint is healthy; lets slow fallback paths bail out before a long walk. */
export function anyHealthy(endpoints: readonly SelectableEndpoint[]): boolean {
  for (let i = 0; i < endpoints.length; i++) {
    if (endpoints[i]!.healthy) return true;
  }
  return false;
}
