import { murmur3 } from './hash.ts';
import { indexesByKey } from './key-order.ts';
import { RandomSelector } from './random.ts';
import type { SelectableEndpoint, Selector } from './selector.ts';
import { anyHealthy, readWeights } from './weights.ts';

export const DEFAULT_MIN_RING_SIZE = 1024;
/** Caps memory (8 bytes per entry) and build time however large the weights or minRingSize get. */
export const MAX_RING_SIZE = 65536;

/**
 * Ring entries are sorted as one packed float: hash * 2^21 + rank of the owner's key. Sorting a
 * Float64Array is a fast native numeric sort, and breaking hash ties by key rank (not list position)
 * makes the ring independent of endpoint order, e.g. shuffled DNS answers.
 */
const RANK_SPACE = 2 ** 21;

/**
 * Consistent hash ring (Ketama-like). Each endpoint owns virtual nodes proportional to its weight,
 * each at murmur3(`${key}_${i}`); a request key is served by the first node clockwise from its hash.
 * Adding or removing an endpoint normally moves only the keys on its nodes (see nodesPerEndpoint for
 * the exception), and an unhealthy owner's keys spill onto the following nodes, i.e. spread over
 * the others in proportion to their weight.
 */
export class RingHashSelector<E extends SelectableEndpoint> implements Selector<E> {
  private readonly endpoints: readonly E[];
  /** Node hashes, ascending. */
  private readonly hashes: Uint32Array;
  /** owners[j] = index into `endpoints` of the node at hashes[j]. */
  private readonly owners: Int32Array;
  private readonly fallback: RandomSelector<E>;

  constructor(endpoints: readonly E[], random: () => number, minRingSize = DEFAULT_MIN_RING_SIZE) {
    if (!Number.isInteger(minRingSize) || minRingSize < 1) {
      throw new RangeError(`minRingSize must be an integer >= 1, got ${minRingSize}`);
    }
    if (endpoints.length >= RANK_SPACE) throw new RangeError(`too many endpoints for ring_hash: ${endpoints.length}`);
    this.endpoints = endpoints;
    this.fallback = new RandomSelector(endpoints, random);
    const weights = readWeights(endpoints);
    const nodeCounts = nodesPerEndpoint(weights, Math.min(minRingSize, MAX_RING_SIZE));

    const byKey = indexesByKey(endpoints);
    let size = 0;
    for (let i = 0; i < nodeCounts.length; i++) size += nodeCounts[i]!;
    const packed = new Float64Array(size);
    let j = 0;
    for (let rank = 0; rank < byKey.length; rank++) {
      const index = byKey[rank]!;
      const key = endpoints[index]!.key;
      for (let v = 0; v < nodeCounts[index]!; v++) packed[j++] = murmur3(`${key}_${v}`) * RANK_SPACE + rank;
    }
    packed.sort();

    this.hashes = new Uint32Array(size);
    this.owners = new Int32Array(size);
    for (let k = 0; k < size; k++) {
      const p = packed[k]!;
      this.hashes[k] = Math.floor(p / RANK_SPACE);
      this.owners[k] = byKey[p % RANK_SPACE]!;
    }
  }

  pick(hashKey: string | undefined): E | undefined {
    if (hashKey === undefined) return this.fallback.pick(undefined);
    const hashes = this.hashes;
    const size = hashes.length;
    if (size === 0) return undefined;
    const h = murmur3(hashKey);
    // First node with hash >= h; past the last node the ring wraps to the first.
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    if (lo === size) lo = 0;
    const owner = this.endpoints[this.owners[lo]!]!;
    if (owner.healthy) return owner;
    return this.walkClockwise(lo);
  }

  /** Next healthy node after `start`. Checks for any healthy endpoint first so a dead cluster costs O(n), not O(ring). */
  private walkClockwise(start: number): E | undefined {
    if (!anyHealthy(this.endpoints)) return undefined;
    const size = this.hashes.length;
    for (let step = 1; step < size; step++) {
      const e = this.endpoints[this.owners[(start + step) % size]!]!;
      if (e.healthy) return e;
    }
    return undefined;
  }
}

/**
 * Virtual nodes per endpoint: weight * a per-unit count, the smallest power of two that reaches
 * minRingSize. Rounding to a power of two (rather than exactly minRingSize / totalWeight) keeps the
 * per-unit count, and so every surviving node, unchanged when an endpoint joins or leaves unless the
 * total weight crosses a power-of-two boundary; otherwise any membership change would shift every
 * endpoint's node set and remap keys between endpoints that did not change (Envoy-style exact
 * scaling moves 5-13% of the other keys on every change). The price is paid at the boundary: with
 * the default 1024, going from 8 equal endpoints to 7 doubles the per-unit count and moves ~40% of
 * the other keys. The ring holds minRingSize to 2x minRingSize nodes (or totalWeight, if larger);
 * past the cap, counts scale down proportionally, at least one node each.
 */
function nodesPerEndpoint(weights: Float64Array, minRingSize: number): Int32Array {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i]!;
  const counts = new Int32Array(weights.length);
  if (total === 0) return counts;
  let perUnit = 1;
  while (perUnit * total < minRingSize) perUnit *= 2;
  if (perUnit * total > MAX_RING_SIZE) perUnit = MAX_RING_SIZE / total;
  for (let i = 0; i < weights.length; i++) counts[i] = Math.max(1, Math.round(weights[i]! * perUnit));
  return counts;
}
