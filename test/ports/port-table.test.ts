import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PortTable } from '../../src/ports/port-table.ts';
import { prng } from '../helpers/prng.ts';

const table = (first: number, last: number, coolingMs = 1000) =>
  new PortTable('10.0.0.1', '10.0.0.9:80', first, last, coolingMs);

/** take() until it returns -1 (bounded, so a broken table cannot loop forever). */
function drain(t: PortTable, now: number, max = 100_000): number[] {
  const out: number[] = [];
  for (let i = 0; i < max; i++) {
    const p = t.take(now);
    if (p === -1) return out;
    out.push(p);
  }
  assert.fail(`take() never returned -1 after ${max} ports`);
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

describe('PortTable: take', () => {
  test('hands out every port of the range exactly once, then -1', () => {
    const t = table(40000, 40099);
    assert.equal(t.size, 100);
    const ports = drain(t, 0);
    assert.equal(ports.length, 100);
    assert.deepEqual(
      [...ports].sort((a, b) => a - b),
      range(40000, 40099),
    );
    assert.equal(new Set(ports).size, 100);
    assert.equal(t.take(0), -1);
    assert.equal(t.inUse, 100);
    assert.equal(t.free, 0);
    assert.equal(t.usedRatio, 1);
    assert.equal(t.taken, 100);
  });

  test('a one-port range', () => {
    const t = table(5000, 5000);
    assert.equal(t.take(0), 5000);
    assert.equal(t.take(0), -1);
    t.release(5000);
    assert.equal(t.take(0), 5000);
  });

  test('in order from the start of the range on a fresh table', () => {
    const t = table(2000, 2004);
    assert.deepEqual(drain(t, 0), [2000, 2001, 2002, 2003, 2004]);
  });
});

describe('PortTable: round robin', () => {
  test('a released port is handed out after every other free port', () => {
    const t = table(1000, 1009);
    assert.deepEqual([t.take(0), t.take(0), t.take(0)], [1000, 1001, 1002]);
    t.release(1001);
    // 1003..1009 first, then 1001; 1000 and 1002 are still in use.
    assert.deepEqual(drain(t, 0), [1003, 1004, 1005, 1006, 1007, 1008, 1009, 1001]);
  });

  test('after every port was taken, ports come back in the order they were released', () => {
    const t = table(1000, 1004);
    drain(t, 0);
    t.release(1003);
    t.release(1001);
    assert.deepEqual(drain(t, 0), [1003, 1001]);
  });

  test('the port released last is reused last, even after the cursor wrapped', () => {
    // A port possibly in TIME_WAIT (1003, released a moment ago) waits behind one free for longer.
    const t = table(1000, 1009);
    drain(t, 0);
    t.release(1009);
    t.release(1003);
    assert.deepEqual(drain(t, 0), [1009, 1003]);
  });
});

describe('PortTable: release and cool', () => {
  test('release/cool of a port not in use is a no-op', () => {
    const t = table(3000, 3009, 100);
    const p = t.take(0);
    assert.equal(p, 3000);
    // Free ports, out-of-range ports, a port released twice, a cooling port cooled or released again.
    t.release(3005);
    t.cool(3006, 0);
    t.release(2999);
    t.release(3010);
    t.cool(99999, 0);
    assert.deepEqual(
      { inUse: t.inUse, cooling: t.cooling, free: t.free, failed: t.failed },
      {
        inUse: 1,
        cooling: 0,
        free: 9,
        failed: 0,
      },
    );
    t.release(p);
    t.release(p);
    assert.equal(t.inUse, 0);
    assert.equal(t.free, 10);

    const q = t.take(0);
    t.cool(q, 0);
    t.cool(q, 50);
    t.release(q);
    assert.deepEqual(
      { inUse: t.inUse, cooling: t.cooling, free: t.free, failed: t.failed },
      {
        inUse: 0,
        cooling: 1,
        free: 9,
        failed: 1,
      },
    );
    // The second cool() did not push the deadline: it is still 0 + 100.
    t.expire(100);
    assert.equal(t.cooling, 0);
  });

  test('a cooled port is unavailable until now + coolingMs, then take() returns it', () => {
    const t = table(4000, 4002, 50);
    assert.deepEqual(drain(t, 0), [4000, 4001, 4002]);
    t.cool(4001, 100);
    assert.deepEqual({ inUse: t.inUse, cooling: t.cooling, free: t.free }, { inUse: 2, cooling: 1, free: 0 });
    assert.equal(t.usedRatio, 1, 'cooling ports count as used');
    assert.equal(t.take(100), -1);
    assert.equal(t.take(149), -1);
    assert.equal(t.cooling, 1);
    assert.equal(t.take(150), 4001);
    assert.deepEqual({ inUse: t.inUse, cooling: t.cooling, free: t.free }, { inUse: 3, cooling: 0, free: 0 });
    assert.equal(t.failed, 1);
  });

  test('a cooling port is skipped while other ports are free', () => {
    const t = table(4000, 4003, 50);
    assert.equal(t.take(0), 4000);
    t.cool(4000, 0);
    // The cursor goes on past 4003 and wraps; 4000 stays out until t=50.
    assert.deepEqual(drain(t, 10), [4001, 4002, 4003]);
    t.release(4002);
    assert.deepEqual(drain(t, 49), [4002]);
    t.release(4001);
    assert.deepEqual(drain(t, 50).sort(), [4000, 4001]);
  });

  test('expire() frees cooled ports in FIFO order as their time comes', () => {
    const t = table(6000, 6009, 100);
    const ports = drain(t, 0);
    ports.forEach((p, i) => {
      t.cool(p, i * 10); // port 6000+i cools until i*10 + 100
    });
    assert.equal(t.cooling, 10);
    assert.equal(t.failed, 10);
    t.expire(99);
    assert.equal(t.cooling, 10);
    t.expire(100);
    assert.equal(t.cooling, 9);
    t.expire(145);
    assert.equal(t.cooling, 5);
    assert.equal(t.free, 5);
    // Exactly the first five came back.
    assert.deepEqual(drain(t, 145).sort(), [6000, 6001, 6002, 6003, 6004]);
    t.expire(1000);
    assert.equal(t.cooling, 0);
    assert.equal(t.free, 5);
  });
});

describe('PortTable: FIFO compaction', () => {
  test('more than 1024 cooled ports, partly expired, stay correct', () => {
    const coolingMs = 10_000;
    const t = table(20000, 22999, coolingMs);
    const taken = drain(t, 0);
    assert.equal(taken.length, 3000);
    // Cool 2000 ports one ms apart: port 20000+i until i + coolingMs.
    for (let i = 0; i < 2000; i++) t.cool(20000 + i, i);
    assert.equal(t.cooling, 2000);
    assert.equal(t.inUse, 1000);

    // 1500 expire: past 1024 and past half the queue, so the queue is compacted.
    t.expire(1499 + coolingMs);
    assert.equal(t.cooling, 500);
    assert.equal(t.free, 1500);

    // Cool more after the compaction; they queue behind the 500 left.
    for (let i = 2000; i < 2600; i++) t.cool(20000 + i, 1600 + i);
    assert.equal(t.cooling, 1100);
    assert.equal(t.inUse, 400);

    // The ports that expired are exactly 20000..21499.
    const back = drain(t, 1499 + coolingMs);
    assert.deepEqual(
      back.sort((a, b) => a - b),
      range(20000, 21499),
    );

    // The rest of the first batch expires on time, one by one.
    t.expire(1500 + coolingMs - 1);
    assert.equal(t.cooling, 1100);
    t.expire(1500 + coolingMs);
    assert.equal(t.cooling, 1099);
    assert.equal(t.take(1500 + coolingMs), 21500);
    t.expire(1999 + coolingMs);
    assert.equal(t.cooling, 600);
    // The second batch: port 20000+i until 1600 + i + coolingMs.
    t.expire(1600 + 2299 + coolingMs);
    assert.equal(t.cooling, 300);
    t.expire(1600 + 2599 + coolingMs);
    assert.equal(t.cooling, 0);
    assert.equal(t.inUse + t.free, 3000);
    assert.deepEqual(
      drain(t, 1600 + 2599 + coolingMs).sort((a, b) => a - b),
      range(21501, 22599),
    );
    assert.equal(t.inUse, 3000);
  });

  test('more than 1024 expired but less than half the queue: no compaction, still correct', () => {
    const coolingMs = 10_000;
    const t = table(30000, 32999, coolingMs);
    drain(t, 0);
    for (let i = 0; i < 3000; i++) t.cool(30000 + i, i);
    t.expire(1099 + coolingMs); // 1100 expired, 1900 left
    assert.equal(t.cooling, 1900);
    t.expire(1100 + coolingMs);
    assert.equal(t.cooling, 1899);
    t.expire(2999 + coolingMs);
    assert.equal(t.cooling, 0);
    assert.equal(drain(t, 2999 + coolingMs).length, 3000);
  });
});

/** The obvious implementation: sets, and a deadline per cooling port. */
class ModelTable {
  readonly inUse = new Set<number>();
  readonly cooling = new Map<number, number>();
  readonly ports: number[];
  readonly coolingMs: number;
  constructor(first: number, last: number, coolingMs: number) {
    this.ports = range(first, last);
    this.coolingMs = coolingMs;
  }
  expire(now: number): void {
    for (const [p, until] of this.cooling) if (until <= now) this.cooling.delete(p);
  }
  free(): number[] {
    return this.ports.filter((p) => !this.inUse.has(p) && !this.cooling.has(p));
  }
  release(p: number): void {
    this.inUse.delete(p);
  }
  cool(p: number, now: number): void {
    if (!this.inUse.delete(p)) return;
    this.cooling.set(p, now + this.coolingMs);
  }
}

interface Scenario {
  seed: number;
  size: number;
  coolingMs: number;
  /** Cumulative thresholds: take below `take`, release below `release`, cool below `cool`, else expire. */
  take: number;
  release: number;
  cool: number;
  maxStep: number;
}

const SCENARIOS: Scenario[] = [
  { seed: 1, size: 50, coolingMs: 100, take: 0.45, release: 0.75, cool: 0.95, maxStep: 5 },
  { seed: 2, size: 97, coolingMs: 30, take: 0.45, release: 0.75, cool: 0.95, maxStep: 5 },
  { seed: 0xdeadbeef, size: 7, coolingMs: 200, take: 0.6, release: 0.8, cool: 0.95, maxStep: 5 },
  // Many ports cooling at once: the queue head passes 1024 and the FIFO is compacted along the way.
  { seed: 42, size: 2500, coolingMs: 300, take: 0.5, release: 0.52, cool: 0.99, maxStep: 1 },
];

describe('PortTable: against a model', () => {
  for (const s of SCENARIOS) {
    test(`random take/release/cool/expire sequence (seed ${s.seed}, ${s.size} ports)`, () => {
      const random = prng(s.seed);
      const first = 50000;
      const last = first + s.size - 1;
      const t = table(first, last, s.coolingMs);
      const m = new ModelTable(first, last, s.coolingMs);
      const pick = (xs: readonly number[]) => xs[Math.floor(random() * xs.length)];
      let now = 0;
      let taken = 0;
      let failed = 0;
      let maxCooling = 0;
      let compactions = 0;
      // The FIFO's private state, only to check the compaction path was taken.
      const fifo = t as unknown as { coolHead: number; coolPorts: number[] };
      const log: string[] = [];
      for (let op = 0; op < 5000; op++) {
        now += Math.floor(random() * (s.maxStep + 1));
        const headBefore = fifo.coolHead;
        const r = random();
        if (r < s.take) {
          m.expire(now);
          const free = m.free();
          const p = t.take(now);
          log.push(`take@${now}=${p}`);
          if (free.length === 0) assert.equal(p, -1, `op ${op}: take() with nothing free`);
          else {
            assert.ok(free.includes(p), `op ${op}: take() returned ${p}, not free in the model`);
            m.inUse.add(p);
            taken++;
          }
        } else if (r < s.release) {
          // Mostly ports in use, sometimes any port of the range or just outside it.
          const p = random() < 0.8 ? pick([...m.inUse]) : first - 1 + Math.floor(random() * (s.size + 2));
          if (p === undefined) continue;
          log.push(`release ${p}`);
          t.release(p);
          m.release(p);
        } else if (r < s.cool) {
          const p = random() < 0.8 ? pick([...m.inUse]) : first + Math.floor(random() * s.size);
          if (p === undefined) continue;
          log.push(`cool ${p}@${now}`);
          if (m.inUse.has(p)) failed++;
          t.cool(p, now);
          m.cool(p, now);
        } else {
          log.push(`expire@${now}`);
          t.expire(now);
          m.expire(now);
        }
        // Counts only settle after expire; compare after bringing both up to `now`.
        t.expire(now);
        m.expire(now);
        maxCooling = Math.max(maxCooling, m.cooling.size);
        if (fifo.coolHead < headBefore && fifo.coolPorts.length > 0) compactions++;
        const want = {
          inUse: m.inUse.size,
          cooling: m.cooling.size,
          free: m.free().length,
          usedRatio: (m.inUse.size + m.cooling.size) / s.size,
          taken,
          failed,
        };
        const got = {
          inUse: t.inUse,
          cooling: t.cooling,
          free: t.free,
          usedRatio: t.usedRatio,
          taken: t.taken,
          failed: t.failed,
        };
        assert.deepEqual(got, want, `op ${op}, last ops: ${log.slice(-8).join(', ')}`);
      }
      // The sequence did exercise cooling (and, for the big table, the FIFO compaction).
      assert.ok(maxCooling > 0);
      if (s.size > 1024) assert.ok(compactions > 0, `no compaction; max cooling at once: ${maxCooling}`);
    });
  }
});
