import { fmix32, murmur3 } from './hash.ts';
import { indexesByKey } from './key-order.ts';
import { RandomSelector } from './random.ts';
import type { SelectableEndpoint, Selector } from './selector.ts';
import { anyHealthy, readWeights } from './weights.ts';

/** The paper's default: prime (so every skip walks the whole table) and ~100x a typical endpoint count. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Envoy's upper bound: 20 MB of table, and a build that still takes well under a second. */
export const MAX_MAGLEV_TABLE_SIZE = 5000011;

// Two independent hashes of the endpoint key, for its permutation's offset and skip.
const OFFSET_SEED = 0x6d61676c; // "magl"
const SKIP_SEED = 0x65763031; // "ev01"

/**
 * If a key's slot belongs to an unhealthy endpoint, re-derive a slot this many times before
 * scanning. Each rehash lands on a random slot, i.e. a weight-proportional healthy endpoint, so the
 * ejected endpoint's keys spread evenly; with 20% ejected, 8 misses in a row happen for ~3 keys in a
 * million. The scan after that keeps the worst case bounded and deterministic.
 */
const MAX_REHASHES = 8;
const GOLDEN_RATIO = 0x9e3779b9;

/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size M where each
 * endpoint takes turns claiming the next free slot of its own permutation (offset + j * skip) mod M.
 * Lookup is one hash and one array read, every endpoint gets an almost equal share of slots (scaled
 * by weight), and removing an endpoint moves few keys between the survivors. Weights follow Envoy:
 * in round r an endpoint claims a slot only if r * weight has caught up with its claims * maxWeight.
 */
export class MaglevSelector<E extends SelectableEndpoint> implements Selector<E> {
  private readonly endpoints: readonly E[];
  /** table[slot] = index into `endpoints`; empty when there are no endpoints. */
  private readonly table: Int32Array;
  private readonly fallback: RandomSelector<E>;

  constructor(endpoints: readonly E[], random: () => number, tableSize = DEFAULT_MAGLEV_TABLE_SIZE) {
    if (!isPrime(tableSize) || tableSize > MAX_MAGLEV_TABLE_SIZE) {
      throw new RangeError(`maglevTableSize must be a prime <= ${MAX_MAGLEV_TABLE_SIZE}, got ${tableSize}`);
    }
    this.endpoints = endpoints;
    this.fallback = new RandomSelector(endpoints, random);
    this.table = populate(endpoints, tableSize);
  }

  /** Slot count, for tests and diagnostics. */
  get tableSize(): number {
    return this.table.length;
  }

  /** Endpoint index owning `slot`; exposed so tests can check how the table is shared. */
  ownerOfSlot(slot: number): number {
    return this.table[slot] ?? -1;
  }

  pick(hashKey: string | undefined): E | undefined {
    if (hashKey === undefined) return this.fallback.pick(undefined);
    const table = this.table;
    const size = table.length;
    if (size === 0) return undefined;
    let h = murmur3(hashKey);
    let slot = h % size;
    let e = this.endpoints[table[slot]!]!;
    if (e.healthy) return e;
    // Deterministic in the key, so a key stays on the same healthy endpoint while its owner is out.
    for (let salt = 0; salt < MAX_REHASHES; salt++) {
      h = fmix32((h + GOLDEN_RATIO) | 0);
      slot = h % size;
      e = this.endpoints[table[slot]!]!;
      if (e.healthy) return e;
    }
    if (!anyHealthy(this.endpoints)) return undefined;
    for (let step = 1; step < size; step++) {
      e = this.endpoints[table[(slot + step) % size]!]!;
      if (e.healthy) return e;
    }
    return undefined;
  }
}

function populate(endpoints: readonly SelectableEndpoint[], size: number): Int32Array {
  const n = endpoints.length;
  const table = new Int32Array(n === 0 ? 0 : size).fill(-1);
  if (n === 0) return table;
  const weights = readWeights(endpoints);
  // Everything below is indexed by rank in key order; see key-order.ts for why.
  const byKey = indexesByKey(endpoints);
  const next = new Float64Array(n); // next slot of each permutation to try
  const skip = new Float64Array(n);
  const weight = new Float64Array(n);
  const target = new Float64Array(n); // claims so far * maxWeight
  let maxWeight = 0;
  for (let r = 0; r < n; r++) {
    const index = byKey[r]!;
    const key = endpoints[index]!.key;
    next[r] = murmur3(key, OFFSET_SEED) % size;
    skip[r] = (murmur3(key, SKIP_SEED) % (size - 1)) + 1;
    weight[r] = weights[index]!;
    if (weight[r]! > maxWeight) maxWeight = weight[r]!;
  }
  let filled = 0;
  for (let round = 1; filled < size; round++) {
    for (let r = 0; r < n && filled < size; r++) {
      if (round * weight[r]! < target[r]!) continue;
      target[r] = target[r]! + maxWeight;
      let c = next[r]!;
      while (table[c]! >= 0) c = (c + skip[r]!) % size;
      table[c] = byKey[r]!;
      next[r] = (c + skip[r]!) % size;
      filled++;
    }
  }
  return table;
}

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}
