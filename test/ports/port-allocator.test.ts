import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Logger } from '../../src/core/log.ts';
import type { PortRange } from '../../src/core/sysctl.ts';
import {
  BUDGET_LOG_INTERVAL_MS,
  formatDestination,
  type PortLease,
  PortAllocator,
  type SourcePlan,
  sliceOf,
} from '../../src/ports/port-allocator.ts';

interface LogCall {
  level: 'warn' | 'error' | 'info' | 'debug';
  fields: Record<string, unknown>;
  message: string;
}

/** A pino stand-in that records warn/error/info/debug calls. */
function fakeLogger(): { log: Logger; calls: LogCall[]; messages: (level: LogCall['level']) => string[] } {
  const calls: LogCall[] = [];
  const at =
    (level: LogCall['level']) =>
    (fields: Record<string, unknown>, message: string): void => {
      calls.push({ level, fields, message });
    };
  const log = { warn: at('warn'), error: at('error'), info: at('info'), debug: at('debug') } as unknown as Logger;
  return { log, calls, messages: (level) => calls.filter((c) => c.level === level).map((c) => c.message) };
}

const KERNEL: PortRange = { first: 32768, last: 60999 };

function plan(over: Partial<SourcePlan> = {}): SourcePlan {
  return {
    cluster: 'api',
    sources: ['127.0.0.2', '127.0.0.3'],
    range: { first: 20000, last: 20009 },
    coolingMs: 1000,
    warnRatio: 2, // never warns unless a test lowers it
    ...over,
  };
}

function leaseOk(a: PortAllocator, p: SourcePlan, address: string, port: number, now = 0): PortLease {
  const l = a.lease(p, address, port, now);
  assert.ok(l, `expected a lease for ${address}:${port}`);
  return l;
}

describe('PortAllocator.lease', () => {
  test('picks the source with the most free ports for the destination', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const p = plan();
    // Ties go to the first source; after that the emptier one wins, so leases alternate.
    const first = leaseOk(a, p, '10.0.0.9', 80);
    assert.equal(first.table.source, '127.0.0.2');
    assert.equal(first.port, 20000);
    assert.equal(first.table.destination, '10.0.0.9:80');
    const second = leaseOk(a, p, '10.0.0.9', 80);
    assert.equal(second.table.source, '127.0.0.3');
    assert.equal(second.port, 20000, 'each source has its own table: same port number');

    // Fill 127.0.0.3's table partly by hand: the next leases go to 127.0.0.2 until it has fewer free.
    for (let i = 0; i < 4; i++) assert.notEqual(second.table.take(0), -1);
    assert.equal(second.table.free, 5);
    assert.equal(first.table.free, 9);
    const sources: string[] = [];
    for (let i = 0; i < 4; i++) sources.push(leaseOk(a, p, '10.0.0.9', 80).table.source);
    assert.deepEqual(sources, ['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2']);
    assert.equal(first.table.free, 5);
    // Now equal again: the first source wins the tie.
    assert.equal(leaseOk(a, p, '10.0.0.9', 80).table.source, '127.0.0.2');
    assert.equal(leaseOk(a, p, '10.0.0.9', 80).table.source, '127.0.0.3');
  });

  test('counts cooled ports that expired as free when comparing sources', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const p = plan({ coolingMs: 100 });
    const l1 = leaseOk(a, p, '10.0.0.9', 80, 0); // .2
    const l2 = leaseOk(a, p, '10.0.0.9', 80, 0); // .3
    assert.equal(l1.table.source, '127.0.0.2');
    // .2 loses three ports to cooling; .3 keeps one more in use.
    for (let i = 0; i < 3; i++) l1.table.cool(l1.table.take(0), 0);
    l2.table.take(0);
    assert.equal(leaseOk(a, p, '10.0.0.9', 80, 50).table.source, '127.0.0.3');
    // At t=100 .2's cooled ports are back: .2 has 9 free, .3 has 7.
    assert.equal(leaseOk(a, p, '10.0.0.9', 80, 100).table.source, '127.0.0.2');
  });

  test('two destinations get independent tables: the same port is leased for both at once', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const p = plan({ sources: ['127.0.0.2'], range: { first: 20000, last: 20001 } });
    const toA = [leaseOk(a, p, '10.0.0.9', 80), leaseOk(a, p, '10.0.0.9', 80)];
    const toB = [leaseOk(a, p, '10.0.0.9', 81), leaseOk(a, p, '10.0.0.10', 80)];
    assert.deepEqual(
      toA.map((l) => l.port),
      [20000, 20001],
    );
    assert.deepEqual(
      toB.map((l) => l.port),
      [20000, 20000],
    );
    assert.notEqual(toA[0]?.table, toB[0]?.table);
    assert.deepEqual(
      toB.map((l) => l.table.destination),
      ['10.0.0.9:81', '10.0.0.10:80'],
    );
    // A's table is full; B's are not affected by it.
    assert.equal(a.lease(p, '10.0.0.9', 80, 0), null);
    assert.equal(leaseOk(a, p, '10.0.0.9', 81).port, 20001);
  });

  test('sources of the other address family are skipped', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const p = plan({ sources: ['::1', '127.0.0.2', 'fd00::2'] });
    for (let i = 0; i < 5; i++) assert.equal(leaseOk(a, p, '10.0.0.9', 80).table.source, '127.0.0.2');
    const v6 = [leaseOk(a, p, 'fd00::9', 443), leaseOk(a, p, 'fd00::9', 443)];
    assert.deepEqual(
      v6.map((l) => l.table.source),
      ['::1', 'fd00::2'],
    );
    assert.equal(v6[0]?.table.destination, '[fd00::9]:443');
    assert.ok(a.budgets(0).every((b) => b.source !== '::1' || b.destination.startsWith('[')));
  });

  test('reaches() is false when no source has the destination family; lease() then returns null', () => {
    const { log, calls } = fakeLogger();
    const a = new PortAllocator(log, () => KERNEL);
    const v6only = plan({ sources: ['::1'] });
    const v4only = plan({ sources: ['127.0.0.2'] });
    assert.equal(a.reaches(v6only, '10.0.0.9'), false);
    assert.equal(a.reaches(v6only, '::2'), true);
    assert.equal(a.reaches(v4only, '10.0.0.9'), true);
    assert.equal(a.reaches(v4only, '::2'), false);
    assert.equal(a.reaches(plan({ sources: [] }), '10.0.0.9'), false);
    assert.equal(a.lease(v6only, '10.0.0.9', 80, 0), null);
    assert.deepEqual(a.budgets(0), [], 'no table is made for a family no source has');
    assert.equal(calls.length, 0);
  });

  test('all sources exhausted: null, counted, error logged at most once per interval', () => {
    const { log, calls, messages } = fakeLogger();
    const a = new PortAllocator(log, () => KERNEL);
    const p = plan({ range: { first: 20000, last: 20001 } });
    const got: string[] = [];
    for (let i = 0; i < 4; i++) {
      const l = leaseOk(a, p, '10.0.0.9', 80);
      got.push(`${l.table.source}:${l.port}`);
    }
    assert.deepEqual(got.sort(), ['127.0.0.2:20000', '127.0.0.2:20001', '127.0.0.3:20000', '127.0.0.3:20001']);
    assert.equal(a.exhausted, 0);

    assert.equal(a.lease(p, '10.0.0.9', 80, 1000), null);
    assert.equal(a.exhausted, 1);
    assert.deepEqual(messages('error'), ['upstream ports exhausted']);
    const fields = calls[0]?.fields;
    assert.equal(fields?.cluster, 'api');
    assert.equal(fields?.destination, '10.0.0.9:80');
    assert.deepEqual(fields?.sources, [
      {
        source: '127.0.0.2',
        destination: '10.0.0.9:80',
        range: '20000-20001',
        size: 2,
        in_use: 2,
        cooling: 0,
        free: 0,
        warn_ratio: 1,
      },
      {
        source: '127.0.0.3',
        destination: '10.0.0.9:80',
        range: '20000-20001',
        size: 2,
        in_use: 2,
        cooling: 0,
        free: 0,
        warn_ratio: 1,
      },
    ]);
    assert.equal(typeof fields?.hint, 'string');

    // Within the interval: counted, not logged.
    assert.equal(a.lease(p, '10.0.0.9', 80, 1000 + BUDGET_LOG_INTERVAL_MS - 1), null);
    assert.equal(a.lease(p, '10.0.0.9', 80, 1000 + BUDGET_LOG_INTERVAL_MS / 2), null);
    assert.equal(a.exhausted, 3);
    assert.equal(messages('error').length, 1);
    // Another destination has its own budget and its own log.
    leaseOk(a, plan({ range: { first: 20000, last: 20000 }, sources: ['127.0.0.2'] }), '10.0.0.10', 80, 2000);
    assert.equal(a.lease(plan({ sources: ['127.0.0.2'] }), '10.0.0.10', 80, 2000), null);
    assert.equal(messages('error').length, 2);
    assert.equal(calls[1]?.fields.destination, '10.0.0.10:80');
    // The interval is over: logged again.
    assert.equal(a.lease(p, '10.0.0.9', 80, 1000 + BUDGET_LOG_INTERVAL_MS), null);
    assert.equal(a.exhausted, 5);
    assert.equal(messages('error').length, 3);
  });

  test('a released port can be leased again after exhaustion', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const p = plan({ sources: ['127.0.0.2'], range: { first: 20000, last: 20000 } });
    const l = leaseOk(a, p, '10.0.0.9', 80);
    assert.equal(a.lease(p, '10.0.0.9', 80, 0), null);
    l.table.release(l.port);
    assert.equal(leaseOk(a, p, '10.0.0.9', 80).port, 20000);
    // A cooled port comes back after coolingMs.
    const again = leaseOk(a, p, '10.0.0.10', 80, 0);
    again.table.cool(again.port, 0);
    assert.equal(a.lease(p, '10.0.0.10', 80, 999), null);
    assert.equal(leaseOk(a, p, '10.0.0.10', 80, 1000).port, 20000);
  });

  test('warns "source port budget running low" when the used ratio crosses warnRatio, once per interval', () => {
    const { log, calls, messages } = fakeLogger();
    const a = new PortAllocator(log, () => KERNEL);
    const p = plan({ sources: ['127.0.0.2'], warnRatio: 0.5 });
    for (let i = 0; i < 4; i++) leaseOk(a, p, '10.0.0.9', 80, 0);
    assert.deepEqual(messages('warn'), [], '4 of 10 used: below 0.5');
    leaseOk(a, p, '10.0.0.9', 80, 0); // 5 of 10
    assert.deepEqual(messages('warn'), ['source port budget running low']);
    assert.deepEqual(calls[0]?.fields, {
      cluster: 'api',
      source: '127.0.0.2',
      destination: '10.0.0.9:80',
      range: '20000-20009',
      size: 10,
      in_use: 5,
      cooling: 0,
      free: 5,
      warn_ratio: 0.5,
    });
    leaseOk(a, p, '10.0.0.9', 80, 1);
    leaseOk(a, p, '10.0.0.9', 80, BUDGET_LOG_INTERVAL_MS - 1);
    assert.equal(messages('warn').length, 1);
    const l = leaseOk(a, p, '10.0.0.9', 80, BUDGET_LOG_INTERVAL_MS);
    assert.equal(messages('warn').length, 2);
    assert.equal(calls[1]?.fields.in_use, 8);

    // Cooling ports count towards the ratio too.
    const other = plan({ sources: ['127.0.0.3'], warnRatio: 0.3 });
    const c1 = leaseOk(a, other, '10.0.0.9', 80, 0);
    c1.table.cool(c1.port, 0);
    leaseOk(a, other, '10.0.0.9', 80, 0);
    assert.equal(messages('warn').length, 2, '1 cooling + 2 in use would be needed');
    leaseOk(a, other, '10.0.0.9', 80, 0);
    assert.equal(messages('warn').length, 3);
    assert.equal(calls.at(-1)?.fields.cooling, 1);
    l.table.release(l.port);
  });

  test('the table takes the range and cooling of the first plan that made it', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    const l1 = leaseOk(a, plan({ sources: ['127.0.0.2'], range: { first: 20000, last: 20001 } }), '10.0.0.9', 80);
    const l2 = leaseOk(a, plan({ sources: ['127.0.0.2'], range: { first: 30000, last: 30999 } }), '10.0.0.9', 80);
    assert.equal(l1.table, l2.table);
    assert.equal(l2.port, 20001);
  });
});

describe('PortAllocator: kernel-chosen ports', () => {
  test('kernelOpened/kernelClosed count per destination; budgets() lists them as source "kernel"', () => {
    const a = new PortAllocator(fakeLogger().log, () => ({ first: 1024, last: 1123 }));
    const b1 = a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 0);
    const b2 = a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 0);
    const b3 = a.kernelOpened('::1', 8080, 'web', 0.6, 0);
    assert.equal(b1, b2, 'one budget per destination');
    assert.notEqual(b1, b3);
    assert.equal(b1.inUse, 2);
    assert.equal(b1.size, 100);
    assert.equal(b3.destination, '[::1]:8080');
    a.kernelClosed(b1);
    assert.deepEqual(a.budgets(0), [
      {
        source: 'kernel',
        destination: '10.0.0.9:80',
        range: '1024-1123',
        size: 100,
        in_use: 1,
        cooling: 0,
        free: 99,
        warn_ratio: 0.8,
      },
      {
        source: 'kernel',
        destination: '[::1]:8080',
        range: '1024-1123',
        size: 100,
        in_use: 1,
        cooling: 0,
        free: 99,
        warn_ratio: 0.6,
      },
    ]);
  });

  test('budgets() lists tables (cooled ports expired as of now) before kernel budgets', () => {
    const a = new PortAllocator(fakeLogger().log, () => KERNEL);
    a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 0);
    const l = leaseOk(a, plan({ sources: ['127.0.0.2'], coolingMs: 100 }), '10.0.0.9', 80, 0);
    leaseOk(a, plan({ sources: ['127.0.0.2'] }), '10.0.0.9', 80, 0);
    l.table.cool(l.port, 0);
    const row = {
      source: '127.0.0.2',
      destination: '10.0.0.9:80',
      range: '20000-20009',
      size: 10,
      in_use: 1,
      warn_ratio: 1,
    };
    assert.deepEqual(a.budgets(99), [
      { ...row, cooling: 1, free: 8 },
      {
        source: 'kernel',
        destination: '10.0.0.9:80',
        range: '32768-60999',
        size: 28232,
        in_use: 1,
        cooling: 0,
        free: 28231,
        warn_ratio: 0.8,
      },
    ]);
    assert.deepEqual(a.budgets(100)[0], { ...row, cooling: 0, free: 9 });
  });

  test('free never goes below 0 in budgets()', () => {
    const a = new PortAllocator(fakeLogger().log, () => ({ first: 40000, last: 40001 }));
    for (let i = 0; i < 3; i++) a.kernelOpened('10.0.0.9', 80, 'api', 2, 0);
    assert.equal(a.budgets(0)[0]?.free, 0);
    assert.equal(a.budgets(0)[0]?.in_use, 3);
  });

  test('kernelOpened warns once per interval when the kernel budget crosses the ratio', () => {
    const { log, calls, messages } = fakeLogger();
    const a = new PortAllocator(log, () => ({ first: 40000, last: 40009 }));
    for (let i = 0; i < 7; i++) a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 0);
    assert.deepEqual(messages('warn'), []);
    const b = a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 5);
    assert.deepEqual(messages('warn'), ['source port budget running low']);
    assert.deepEqual(calls[0]?.fields, {
      cluster: 'api',
      source: 'kernel',
      destination: '10.0.0.9:80',
      range: '40000-40009',
      in_use: 8,
      size: 10,
      warn_ratio: 0.8,
      hint: 'set source_addresses on the cluster to multiply the budget',
    });
    a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 5 + BUDGET_LOG_INTERVAL_MS - 1);
    assert.equal(messages('warn').length, 1);
    a.kernelClosed(b);
    a.kernelClosed(b);
    a.kernelClosed(b); // 6 of 10: below the ratio, no warning even after the interval
    a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 5 + BUDGET_LOG_INTERVAL_MS); // 7
    assert.equal(messages('warn').length, 1);
    a.kernelOpened('10.0.0.9', 80, 'api', 0.8, 5 + BUDGET_LOG_INTERVAL_MS); // 8
    assert.equal(messages('warn').length, 2);
  });

  test('kernelExhausted counts every time and logs at most once per interval per destination', () => {
    const { log, calls, messages } = fakeLogger();
    const a = new PortAllocator(log, () => ({ first: 40000, last: 40009 }));
    const b = a.kernelOpened('10.0.0.9', 80, 'api', 2, 0);
    const other = a.kernelOpened('10.0.0.10', 80, 'api', 2, 0);
    a.kernelExhausted(b, 'api', 100);
    a.kernelExhausted(b, 'api', 100 + BUDGET_LOG_INTERVAL_MS - 1);
    assert.equal(a.exhausted, 2);
    assert.deepEqual(messages('error'), ['upstream ports exhausted']);
    assert.deepEqual(calls[0]?.fields, {
      cluster: 'api',
      destination: '10.0.0.9:80',
      source: 'kernel',
      range: '40000-40009',
      in_use: 1,
      size: 10,
      hint: 'set source_addresses on the cluster, or add endpoint ports, to multiply the budget',
    });
    a.kernelExhausted(other, 'api', 200);
    assert.equal(messages('error').length, 2);
    a.kernelExhausted(b, 'api', 100 + BUDGET_LOG_INTERVAL_MS);
    assert.equal(a.exhausted, 4);
    assert.equal(messages('error').length, 3);
  });
});

describe('sliceOf', () => {
  const ranges: PortRange[] = [
    { first: 32768, last: 60999 },
    { first: 1024, last: 1030 },
    { first: 20000, last: 20004 },
    { first: 5000, last: 5000 + 12 },
    { first: 7000, last: 7002 }, // fewer ports than 4 or 5 workers
  ];
  for (const range of ranges) {
    test(`${range.first}-${range.last}: contiguous, non-overlapping slices covering the range, for 1..5 workers`, () => {
      const size = range.last - range.first + 1;
      for (let count = 1; count <= 5; count++) {
        const slices = Array.from({ length: count }, (_, i) => sliceOf(range, i, count));
        if (size < count) {
          // One port each for the first workers, none for the rest: never the same port twice.
          slices.forEach((s, i) => {
            const want =
              i < size
                ? { first: range.first + i, last: range.first + i }
                : { first: range.first, last: range.first - 1 };
            assert.deepEqual(s, want);
          });
          continue;
        }
        const each = Math.floor(size / count);
        assert.equal(slices[0]?.first, range.first, `count ${count}`);
        assert.equal(slices.at(-1)?.last, range.last, `count ${count}`);
        slices.forEach((s, i) => {
          assert.ok(s.first <= s.last, `count ${count} slice ${i}: ${JSON.stringify(s)}`);
          const next = slices[i + 1];
          if (next) assert.equal(next.first, s.last + 1, `count ${count}: slice ${i + 1} starts after slice ${i}`);
          const want = i === count - 1 ? size - each * (count - 1) : each;
          assert.equal(s.last - s.first + 1, want, `count ${count} slice ${i} size`);
        });
      }
    });
  }

  test('the last slice takes the remainder', () => {
    const r = { first: 1000, last: 1009 }; // 10 ports
    assert.deepEqual(
      [0, 1, 2].map((i) => sliceOf(r, i, 3)),
      [
        { first: 1000, last: 1002 },
        { first: 1003, last: 1005 },
        { first: 1006, last: 1009 },
      ],
    );
    assert.deepEqual(sliceOf(r, 0, 1), r);
  });

  test('with fewer ports than workers, the first workers get one port each and the rest an empty range', () => {
    const r = { first: 1000, last: 1002 };
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((i) => sliceOf(r, i, 5)),
      [
        { first: 1000, last: 1000 },
        { first: 1001, last: 1001 },
        { first: 1002, last: 1002 },
        { first: 1000, last: 999 },
        { first: 1000, last: 999 },
      ],
    );
  });
});

describe('PortAllocator: worker slices', () => {
  test('two workers never lease the same port for the same (source, destination)', () => {
    const p = plan({ range: { first: 20000, last: 20099 } });
    const w0 = new PortAllocator(fakeLogger().log, () => KERNEL, { index: 0, count: 2 });
    const w1 = new PortAllocator(fakeLogger().log, () => KERNEL, { index: 1, count: 2 });
    const seen = new Map<string, string>();
    for (const [name, w] of [
      ['w0', w0],
      ['w1', w1],
    ] as const) {
      for (const dest of ['10.0.0.9', '10.0.0.10']) {
        let n = 0;
        for (let l = w.lease(p, dest, 80, 0); l !== null; l = w.lease(p, dest, 80, 0)) {
          const key = `${l.table.source}>${l.table.destination}#${l.port}`;
          assert.equal(seen.get(key), undefined, `${name} leased ${key}, already leased by ${seen.get(key)}`);
          seen.set(key, name);
          n++;
        }
        // Each worker gets its half for each of the two sources.
        assert.equal(n, 100, `${name} ${dest}`);
      }
    }
    assert.equal(seen.size, 400);
    const w0Ports = [...seen].filter(([, w]) => w === 'w0').map(([k]) => Number(k.split('#')[1]));
    assert.equal(Math.min(...w0Ports), 20000);
    assert.equal(Math.max(...w0Ports), 20049);
  });
});

describe('formatDestination', () => {
  test('brackets IPv6 addresses only', () => {
    assert.equal(formatDestination('10.0.0.9', 80), '10.0.0.9:80');
    assert.equal(formatDestination('::1', 443), '[::1]:443');
    assert.equal(formatDestination('fd00::9', 8080), '[fd00::9]:8080');
    assert.equal(formatDestination('2001:db8:1:2:3:4:5:6', 80), '[2001:db8:1:2:3:4:5:6]:80');
  });
});
