import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { murmur3 } from '../../src/cluster/selection/hash.ts';
import { createSelector } from '../../src/cluster/selection/index.ts';
import { MaglevSelector } from '../../src/cluster/selection/maglev.ts';
import type { LbPolicy, SelectableEndpoint, Selector } from '../../src/cluster/selection/selector.ts';

interface Ep extends SelectableEndpoint {
  healthy: boolean;
  active: number;
}

function endpoints(...weights: number[]): Ep[] {
  return weights.map((weight, i) => ({ key: `10.0.0.${i + 1}:8080`, weight, healthy: true, active: 0 }));
}

/** mulberry32: a tiny seeded PRNG so every statistical assertion below is reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pick `n` times and return how often each endpoint (by list position) was chosen. */
function counts(selector: Selector<Ep>, eps: readonly Ep[], n: number, key?: (i: number) => string): number[] {
  const out = eps.map(() => 0);
  for (let i = 0; i < n; i++) {
    const e = selector.pick(key?.(i));
    assert.ok(e, 'expected a pick');
    out[eps.indexOf(e)]!++;
  }
  return out;
}

function assertShares(actual: number[], weights: number[], tolerance: number, relative = false): void {
  const total = actual.reduce((a, b) => a + b, 0);
  const weightTotal = weights.reduce((a, b) => a + b, 0);
  actual.forEach((count, i) => {
    const expected = weights[i]! / weightTotal;
    const share = count / total;
    const err = relative ? Math.abs(share - expected) / expected : Math.abs(share - expected);
    assert.ok(err <= tolerance, `endpoint ${i}: share ${share.toFixed(4)} vs expected ${expected.toFixed(4)}`);
  });
}

const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`);

function mapping(selector: Selector<Ep>): string[] {
  return keys.map((k) => selector.pick(k)!.key);
}

describe('murmur3', () => {
  // MurmurHash3_x86_32 vectors from SMHasher users (Ian Boyd's set and others). Byte-level vectors
  // are written as the equivalent ASCII strings; the multi-byte ones check the inline UTF-8 encoder.
  const vectors: [string, number, number][] = [
    ['', 0, 0],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['\x21\x43\x65', 0, 0x7e4a8634],
    ['\x21\x43', 0, 0xa0f7b07a],
    ['\x21', 0, 0x72661cf4],
    ['\0\0\0\0', 0, 0x2362f9de],
    ['\0\0\0', 0, 0x85f0b427],
    ['\0\0', 0, 0x30f4c306],
    ['\0', 0, 0x514e28b7],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['aaa', 0x9747b28c, 0x283e0130],
    ['aa', 0x9747b28c, 0x5d211726],
    ['a', 0x9747b28c, 0x7fa09ea6],
    ['abcd', 0x9747b28c, 0xf0478627],
    ['abc', 0x9747b28c, 0xc84a62dd],
    ['ab', 0x9747b28c, 0x74875592],
    ['abc', 0, 0xb3dd93fa],
    ['test', 0, 0xba6bd213],
    ['hello', 0, 0x248bfa47],
    ['Hello, world!', 0, 0xc0363e43],
    ['Hello, world!', 0x9747b28c, 0x24884cba],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 0, 0xee925b90],
    ['a'.repeat(256), 0x9747b28c, 0x37405bdc],
    ['ππππππππ', 0x9747b28c, 0xd58063c1],
  ];
  for (const [input, seed, expected] of vectors) {
    it(`${JSON.stringify(input.length > 20 ? `${input.slice(0, 20)}…` : input)} seed ${seed}`, () => {
      assert.equal(murmur3(input, seed), expected);
    });
  }

  /** Straightforward byte-array murmur3, checked against the byte-only vectors, to fuzz the string path. */
  function murmur3Bytes(buf: Uint8Array, seed: number): number {
    const scramble = (k: number) => Math.imul(((x) => (x << 15) | (x >>> 17))(Math.imul(k, 0xcc9e2d51)), 0x1b873593);
    let h = seed | 0;
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      h ^= scramble(buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
      h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    }
    let k = 0;
    for (let b = buf.length - 1; b >= i; b--) k = (k << 8) | buf[b]!;
    if (buf.length > i) h ^= scramble(k);
    h ^= buf.length;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  it('matches hashing Buffer.from(str, "utf8") for any string', () => {
    assert.equal(murmur3Bytes(Uint8Array.of(0x21, 0x43, 0x65, 0x87), 0), 0xf55b516b);
    assert.equal(murmur3Bytes(Uint8Array.of(0x21, 0x43, 0x65, 0x87), 0x5082edee), 0x2362f9de);
    assert.equal(murmur3Bytes(Uint8Array.of(0xff, 0xff, 0xff, 0xff), 0), 0x76293b50);
    const random = seeded(42);
    for (let t = 0; t < 2000; t++) {
      // Mix ASCII, 2- and 3-byte code units, surrogate pairs and lone surrogates.
      let s = '';
      const len = Math.floor(random() * 24);
      for (let j = 0; j < len; j++) {
        const r = random();
        s +=
          r < 0.4
            ? String.fromCharCode(Math.floor(random() * 128))
            : r < 0.8
              ? String.fromCharCode(Math.floor(random() * 65536))
              : '🌵';
      }
      const seed = Math.floor(random() * 2 ** 32);
      assert.equal(murmur3(s, seed), murmur3Bytes(Buffer.from(s, 'utf8'), seed), JSON.stringify(s));
    }
  });

  it('hashes lone surrogates as U+FFFD, like Buffer.from', () => {
    assert.equal(murmur3('a\ud800b'), murmur3('a\ufffdb'));
    assert.equal(murmur3('\udc00'), murmur3('\ufffd'));
  });
});

describe('round_robin', () => {
  it('follows the smooth WRR order for weights 1,2,3', () => {
    const eps = endpoints(1, 2, 3);
    const rr = createSelector('round_robin', eps);
    const seq = Array.from({ length: 12 }, () => eps.indexOf(rr.pick(undefined)!));
    assert.deepEqual(seq, [2, 1, 0, 2, 1, 2, 2, 1, 0, 2, 1, 2]);
  });

  it('gives exact proportions over whole cycles', () => {
    const eps = endpoints(1, 2, 3);
    assert.deepEqual(counts(createSelector('round_robin', eps), eps, 6000), [1000, 2000, 3000]);
  });

  it('skips unhealthy endpoints and keeps the others exact', () => {
    const eps = endpoints(1, 2, 3);
    eps[1]!.healthy = false;
    assert.deepEqual(counts(createSelector('round_robin', eps), eps, 400), [100, 0, 300]);
  });

  it('returns undefined when nothing is healthy or the list is empty', () => {
    const eps = endpoints(1, 2);
    for (const e of eps) e.healthy = false;
    assert.equal(createSelector('round_robin', eps).pick(undefined), undefined);
    assert.equal(createSelector('round_robin', []).pick(undefined), undefined);
  });
});

describe('least_request', () => {
  it('never picks the busiest endpoint when two idle ones exist', () => {
    const eps = endpoints(1, 1, 1);
    eps[0]!.active = 10;
    const c = counts(createSelector('least_request', eps, { random: seeded(1) }), eps, 3000);
    assert.equal(c[0], 0);
    assert.equal(c[1]! + c[2]!, 3000);
  });

  it('compares load per unit of weight', () => {
    const eps = endpoints(4, 1);
    eps[0]!.active = 4; // 1 per weight unit
    eps[1]!.active = 2; // 2 per weight unit
    const lr = createSelector('least_request', eps, { random: seeded(2) });
    for (let i = 0; i < 100; i++) assert.equal(lr.pick(undefined), eps[0]);
  });

  it('spreads evenly under equal load', () => {
    const eps = endpoints(1, 1, 1, 1);
    assertShares(counts(createSelector('least_request', eps, { random: seeded(3) }), eps, 40_000), [1, 1, 1, 1], 0.01);
  });

  it('handles one, none and mostly unhealthy', () => {
    const eps = endpoints(1, 1, 1, 1, 1, 1, 1, 1);
    for (const e of eps) e.healthy = false;
    const lr = createSelector('least_request', eps, { random: seeded(4) });
    assert.equal(lr.pick(undefined), undefined);
    eps[5]!.healthy = true;
    for (let i = 0; i < 100; i++) assert.equal(lr.pick(undefined), eps[5]);
    eps[2]!.healthy = true;
    eps[2]!.active = 1;
    const c = counts(lr, eps, 1000);
    assert.equal(c[5], 1000);
  });
});

describe('random', () => {
  it('follows weights within 1% over 100k picks', () => {
    const eps = endpoints(1, 2, 3, 4);
    assertShares(counts(createSelector('random', eps, { random: seeded(5) }), eps, 100_000), [1, 2, 3, 4], 0.01);
  });

  it('never picks unhealthy endpoints and reweights the rest', () => {
    const eps = endpoints(1, 2, 3, 4);
    eps[3]!.healthy = false;
    const c = counts(createSelector('random', eps, { random: seeded(6) }), eps, 60_000);
    assert.equal(c[3], 0);
    assertShares(c.slice(0, 3), [1, 2, 3], 0.01);
  });

  it('finds the last healthy endpoint among many ejected ones, and none when all are', () => {
    const eps = endpoints(...Array.from({ length: 50 }, () => 1));
    for (const e of eps) e.healthy = false;
    const r = createSelector('random', eps, { random: seeded(7) });
    assert.equal(r.pick(undefined), undefined);
    eps[37]!.healthy = true;
    for (let i = 0; i < 200; i++) assert.equal(r.pick(undefined), eps[37]);
  });
});

for (const policy of ['ring_hash', 'maglev'] as const satisfies readonly LbPolicy[]) {
  describe(`${policy} (shared consistent-hash behaviour)`, () => {
    it('is sticky per key and independent of endpoint order', () => {
      const eps = endpoints(1, 1, 1, 1, 1);
      const first = mapping(createSelector(policy, eps));
      assert.deepEqual(mapping(createSelector(policy, eps)), first);
      assert.deepEqual(mapping(createSelector(policy, [...eps].reverse())), first);
    });

    it('spreads 1000 keys roughly in proportion to weight', () => {
      const eps = endpoints(1, 2, 3);
      const c = counts(createSelector(policy, eps), eps, keys.length, (i) => keys[i]!);
      assertShares(c, [1, 2, 3], 0.05);
    });

    it('moves keys to a healthy endpoint when the owner is unhealthy, and only those keys', () => {
      const eps = endpoints(1, 1, 1, 1, 1);
      const sel = createSelector(policy, eps);
      const before = mapping(sel);
      eps[2]!.healthy = false;
      const after = mapping(sel);
      const landed = new Set<string>();
      for (let i = 0; i < keys.length; i++) {
        if (before[i] === eps[2]!.key) {
          assert.notEqual(after[i], eps[2]!.key);
          landed.add(after[i]!);
        } else {
          assert.equal(after[i], before[i]);
        }
      }
      // The orphaned keys spread over the survivors instead of all landing on one neighbour.
      assert.ok(landed.size >= 3, `orphaned keys landed on only ${landed.size} endpoints`);
      assert.deepEqual(mapping(sel), after, 'fallback must be sticky');
      eps[2]!.healthy = true;
      assert.deepEqual(mapping(sel), before, 'keys return once the owner is healthy again');
    });

    it('returns undefined when all are unhealthy; picks randomly without a key', () => {
      const eps = endpoints(1, 3);
      const sel = createSelector(policy, eps, { random: seeded(8) });
      assertShares(counts(sel, eps, 20_000), [1, 3], 0.02);
      for (const e of eps) e.healthy = false;
      assert.equal(sel.pick('user-1'), undefined);
      assert.equal(sel.pick(undefined), undefined);
      assert.equal(createSelector(policy, []).pick('user-1'), undefined);
    });
  });
}

describe('ring_hash', () => {
  it('only remaps the keys of an endpoint removed from the list', () => {
    const eps = endpoints(1, 1, 1, 1, 1);
    const before = mapping(createSelector('ring_hash', eps));
    const after = mapping(
      createSelector(
        'ring_hash',
        eps.filter((_, i) => i !== 3),
      ),
    );
    let others = 0;
    let kept = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === eps[3]!.key) continue;
      others++;
      if (after[i] === before[i]) kept++;
    }
    assert.ok(kept / others > 0.9);
    assert.equal(kept, others, 'a ring keeps every other node in place');
  });

  it('honours minRingSize', () => {
    const eps = endpoints(1, 2, 3);
    const small = mapping(createSelector('ring_hash', eps, { minRingSize: 6 }));
    const big = mapping(createSelector('ring_hash', eps, { minRingSize: 60_000 }));
    assert.notDeepEqual(small, big);
    assert.throws(() => createSelector('ring_hash', eps, { minRingSize: 0 }), RangeError);
  });
});

describe('maglev', () => {
  it('fills the table and gives each endpoint a share within 10% of its weight', () => {
    const eps = endpoints(1, 2, 3, 4);
    const m = new MaglevSelector(eps, seeded(9));
    assert.equal(m.tableSize, 65537);
    const slots = eps.map(() => 0);
    for (let s = 0; s < m.tableSize; s++) {
      const owner = m.ownerOfSlot(s);
      assert.ok(owner >= 0 && owner < eps.length, `slot ${s} is empty`);
      slots[owner]!++;
    }
    assertShares(slots, [1, 2, 3, 4], 0.1, true);
  });

  it('keeps most keys in place when one of 5 endpoints is removed', () => {
    const eps = endpoints(1, 1, 1, 1, 1);
    const before = mapping(createSelector('maglev', eps));
    const after = mapping(
      createSelector(
        'maglev',
        eps.filter((_, i) => i !== 3),
      ),
    );
    let others = 0;
    let kept = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === eps[3]!.key) continue;
      others++;
      if (after[i] === before[i]) kept++;
    }
    assert.ok(kept / others > 0.9, `only ${kept}/${others} kept`);
  });

  it('rejects a table size that is not prime', () => {
    assert.throws(() => createSelector('maglev', endpoints(1), { maglevTableSize: 65536 }), RangeError);
    assert.equal(createSelector('maglev', endpoints(1, 1), { maglevTableSize: 251 }).pick('k')?.healthy, true);
  });
});

describe('createSelector', () => {
  it('rejects weights that are not integers >= 1', () => {
    for (const policy of ['round_robin', 'least_request', 'random', 'ring_hash', 'maglev'] as const) {
      assert.throws(() => createSelector(policy, endpoints(1, 0)), RangeError);
      assert.throws(() => createSelector(policy, endpoints(1.5)), RangeError);
    }
  });
});
