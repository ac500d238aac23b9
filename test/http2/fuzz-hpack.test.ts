/**
 * Property-based fuzzing of HPACK (RFC 7541): the decoder on arbitrary and near-valid blocks, and
 * encoder -> decoder round trips with table size changes.
 *
 * Reproducible by default (fixed seed); FUZZ_SEED picks another seed, FUZZ_RUNS the runs per
 * property (FUZZ_PATH, with the seed of a failure report, replays just the shrunk counterexample).
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.ts';
import { HpackDecoder } from '../../src/http2/hpack-decoder.ts';
import { HpackEncoder } from '../../src/http2/hpack-encoder.ts';
import { huffmanDecode, huffmanEncodedLength, huffmanEncodeInto } from '../../src/http2/hpack-huffman.ts';
import { STATIC_NAMES } from '../../src/http2/hpack-static-table.ts';

/** fast-check parameters: the seed and run count above, `scale` times the runs for costly properties. */
const params = fuzzParams(0x6d7867, 500);

/** A decode slower than this is taken as a hang (generous: CI machines are loaded). */
const SLOW_MS = 1000;
const ENTRY_OVERHEAD = 32;
const BIG_LIST = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Arbitraries

const latin1Char = fc
  .oneof({ weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, fc.integer({ min: 0, max: 0xff }))
  .map((c) => String.fromCharCode(c));
const latin1 = (maxLength: number) => fc.string({ unit: latin1Char, maxLength });

const fieldName = fc.oneof(
  fc.constantFrom(
    ...STATIC_NAMES.slice(1),
    'cookie',
    'authorization',
    'set-cookie',
    'content-length',
    'x-request-id',
    'x-custom',
  ),
  latin1(12),
);
const fieldValue = fc.oneof(
  { weight: 5, arbitrary: latin1(24) },
  { weight: 3, arbitrary: fc.constantFrom('', '/', '200', 'gzip', 'GET', 'a'.repeat(30)) },
  { weight: 1, arbitrary: latin1(400) },
  // Entries over half (or all) of a small table.
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 5000 }).map((n) => 'v'.repeat(n)) },
);
/** A field list, flat [name, value, ...]. */
const fieldList = fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 10 }).map((pairs) => pairs.flat());
const tableSize = fc.oneof(
  fc.constantFrom(0, 1, 32, 64, 100, 256, 4096, 8192, 65536),
  fc.integer({ min: 0, max: 10_000 }),
);

/** A prefixed integer (§5.1). */
function putInt(out: number[], flags: number, mask: number, n: number): void {
  if (n < mask) {
    out.push(flags | n);
    return;
  }
  out.push(flags | mask);
  n -= mask;
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

function huffmanBytes(s: string): number[] {
  const b = Buffer.alloc(huffmanEncodedLength(s));
  huffmanEncodeInto(s, b, 0);
  return [...b];
}

const hpackInt = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 80 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 70_000 }) },
  fc.constantFrom(14, 15, 16, 30, 31, 32, 62, 63, 64, 126, 127, 128, 0x7fffffff, 0x80000000, 2 ** 32 - 1, 2 ** 35),
);

/** A string literal (§5.2): raw or Huffman, valid or not, its length sometimes off. */
const stringLiteral = fc
  .record({
    s: latin1(20),
    mode: fc.constantFrom('raw', 'raw', 'huffman', 'huffman', 'junk-huffman'),
    junk: fc.uint8Array({ maxLength: 8 }),
    lenDelta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: -3, max: 3 })),
  })
  .map(({ s, mode, junk, lenDelta }) => {
    const body = mode === 'raw' ? [...Buffer.from(s, 'latin1')] : mode === 'huffman' ? huffmanBytes(s) : [...junk];
    const out: number[] = [];
    putInt(out, mode === 'raw' ? 0 : 0x80, 0x7f, Math.max(0, body.length + lenDelta));
    return out.concat(body);
  });

/** One representation (§6), or a few raw octets. */
const representation: fc.Arbitrary<number[]> = fc.oneof(
  hpackInt.map((i) => {
    const out: number[] = [];
    putInt(out, 0x80, 0x7f, i);
    return out;
  }),
  fc
    .record({
      kind: fc.constantFrom(0x40, 0x00, 0x10),
      nameIndex: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, hpackInt),
      name: stringLiteral,
      value: stringLiteral,
    })
    .map(({ kind, nameIndex, name, value }) => {
      const out: number[] = [];
      putInt(out, kind, kind === 0x40 ? 0x3f : 0x0f, nameIndex);
      return nameIndex === 0 ? out.concat(name, value) : out.concat(value);
    }),
  hpackInt.map((n) => {
    const out: number[] = [];
    putInt(out, 0x20, 0x1f, n);
    return out;
  }),
  // An integer with a run of zero continuation octets (overlong encodings).
  fc
    .record({ first: fc.constantFrom(0xff, 0x7f, 0x3f, 0x1f, 0x0f), n: fc.integer({ min: 0, max: 12 }) })
    .map(({ first, n }) => [first, ...new Array<number>(n).fill(0x80), 0]),
  fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => [...b]),
);

/** An arbitrary block: random octets, or a sequence of (mostly) well-formed representations. */
const block = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.array(representation, { maxLength: 12 }).map((reps) => Uint8Array.from(reps.flat())),
);

type DecodeStep = { kind: 'block'; bytes: Uint8Array; pre: number; post: number } | { kind: 'max'; n: number };

const decodeStep: fc.Arbitrary<DecodeStep> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('block' as const),
      bytes: block,
      pre: fc.integer({ min: 0, max: 5 }),
      post: fc.integer({ min: 0, max: 5 }),
    }),
  },
  fc.record({ kind: fc.constant('max' as const), n: tableSize }),
);

// ---------------------------------------------------------------------------------------------
// Checks

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

function entries(d: HpackDecoder): [string, string][] {
  const r: [string, string][] = [];
  for (let k = 1; k <= d.entryCount; k++) r.push(d.entryAt(k)!);
  return r;
}

/** The decoder's table is consistent: entry sizes add up, no entry past the count. */
function checkTable(d: HpackDecoder, max: number, what: string): void {
  const es = entries(d);
  let size = 0;
  for (const [n, v] of es) size += n.length + v.length + ENTRY_OVERHEAD;
  assert.equal(size, d.tableSize, `${what}: table size is the sum of its entries`);
  assert.equal(d.entryAt(0), undefined);
  assert.equal(d.entryAt(d.entryCount + 1), undefined);
  assert.ok(d.tableSize <= max, `${what}: table size ${d.tableSize} over the maximum ${max}`);
}

/** Decodes block[start, end), timing it. */
function timedDecode(d: HpackDecoder, b: Uint8Array, start: number, end: number, out: string[]) {
  const t = performance.now();
  const r = d.decode(b, start, end, out);
  const ms = performance.now() - t;
  assert.ok(ms < SLOW_MS, `decode of ${end - start} octets took ${ms.toFixed(0)} ms`);
  return r;
}

function pairs(flat: readonly string[]): [string, string][] {
  const r: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) r.push([flat[i]!, flat[i + 1]!]);
  return r;
}

/** The fields the decoder keeps of `fields` under `maxList`: the longest prefix that fits. */
function keptPrefix(fields: readonly string[], maxList: number): { kept: string[]; tooLarge: boolean } {
  let size = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    size += fields[i]!.length + fields[i + 1]!.length + ENTRY_OVERHEAD;
    if (size > maxList) return { kept: fields.slice(0, i), tooLarge: true };
  }
  return { kept: [...fields], tooLarge: false };
}

// ---------------------------------------------------------------------------------------------

describe('HPACK decoder fuzz', () => {
  test('arbitrary blocks on one decoder: no throw, no hang, table within its maximum', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 64, 256, 4096, 65536),
        fc.constantFrom(0, 64, 1000, BIG_LIST),
        fc.array(decodeStep, { minLength: 1, maxLength: 8 }),
        (maxTable, maxList, steps) => {
          // Twins: one decodes each block in place inside a larger Buffer, the other a plain
          // Uint8Array view of a copy of just the block. Nothing outside [start, end) may matter.
          // The second remembers short literals (as upstream connections do): it must decode alike.
          const inPlace = new HpackDecoder(maxTable, maxList);
          const copied = new HpackDecoder(maxTable, maxList, true);
          let max: number = maxTable;
          for (const [i, step] of steps.entries()) {
            if (step.kind === 'max') {
              inPlace.setMaxTableSize(step.n);
              copied.setMaxTableSize(step.n);
              max = step.n;
              continue;
            }
            const { bytes, pre, post } = step;
            const big = Buffer.alloc(pre + bytes.length + post, 0x80 | i);
            big.set(bytes, pre);
            const ab = new ArrayBuffer(bytes.length + 3);
            const view = new Uint8Array(ab, 3, bytes.length);
            view.set(bytes);
            const out1: string[] = [];
            const out2: string[] = [];
            const r1 = timedDecode(inPlace, big, pre, pre + bytes.length, out1);
            const r2 = timedDecode(copied, view, 0, view.length, out2);
            assert.ok(r1 === null || r1 === 'compression' || r1 === 'too_large', `result ${String(r1)}`);
            assert.equal(r1, r2, `step ${i}: in place and copied decode alike`);
            assert.deepEqual(out1, out2, `step ${i}`);
            assert.equal(out1.length % 2, 0);
            for (const s of out1) assert.ok(isLatin1(s));
            if (r1 === null) {
              let size = 0;
              for (let k = 0; k < out1.length; k += 2) size += out1[k]!.length + out1[k + 1]!.length + ENTRY_OVERHEAD;
              assert.ok(size <= maxList, 'a list within the limit');
            }
            assert.deepEqual(entries(inPlace), entries(copied), `step ${i}: tables in step`);
            // After a compression error the context is dead (the connection closes); the table
            // must still be consistent, but need not have honoured a pending size change.
            checkTable(inPlace, r1 === 'compression' ? Number.POSITIVE_INFINITY : max, `step ${i}`);
          }
        },
      ),
      params(),
    );
  });

  test('a truncated block is refused or decodes to a prefix of its fields', () => {
    fc.assert(
      fc.property(
        fc.array(fieldList, { maxLength: 4 }),
        fieldList,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (history, fields, cutAt) => {
          const e = new HpackEncoder();
          const d = new HpackDecoder(4096, BIG_LIST);
          for (const h of history) {
            const b = e.encode(h);
            assert.equal(d.decode(b, 0, b.length, []), null);
          }
          const b = e.encode(fields);
          const cut = Math.floor(b.length * cutAt);
          const out: string[] = [];
          const r = timedDecode(d, b, 0, cut, out);
          if (r === 'compression') return;
          assert.equal(r, null);
          assert.deepEqual(out, fields.slice(0, out.length), 'a prefix of the fields');
          checkTable(d, 4096, 'after a truncated block');
        },
      ),
      params(),
    );
  });

  test('Huffman: latin1 round-trips; a string that decodes re-encodes to the same octets', () => {
    fc.assert(
      fc.property(latin1(64), fc.uint8Array({ maxLength: 24 }), (s, junk) => {
        const enc = Buffer.from(huffmanBytes(s));
        assert.equal(huffmanDecode(enc, 0, enc.length), s);
        const framed = Buffer.concat([Buffer.from([0xff]), junk, Buffer.from([0x00])]);
        const d = huffmanDecode(framed, 1, 1 + junk.length);
        if (d === null) return;
        assert.ok(isLatin1(d));
        // Huffman codes are prefix-free and padding must be the most significant bits of EOS,
        // shorter than an octet: a valid string has exactly one encoding.
        assert.deepEqual(Buffer.from(huffmanBytes(d)), Buffer.from(junk));
      }),
      params(),
    );
  });
});

type RoundTripStep =
  | { kind: 'block'; fields: string[]; pre: number; roomCut: number }
  | { kind: 'size'; sizes: number[] };

const roundTripStep: fc.Arbitrary<RoundTripStep> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('block' as const),
      fields: fieldList,
      pre: fc.integer({ min: 0, max: 4 }),
      roomCut: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  fc.record({ kind: fc.constant('size' as const), sizes: fc.array(tableSize, { minLength: 1, maxLength: 3 }) }),
);

describe('HPACK round trip fuzz', () => {
  test('encoder -> decoder: the same fields, tables in step, size changes honoured', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 100, 256, 4096, 16384),
        fc.oneof(fc.constant(BIG_LIST), fc.integer({ min: 0, max: 2000 })),
        fc.array(roundTripStep, { minLength: 1, maxLength: 10 }),
        (ownCap, maxList, steps) => {
          const e = new HpackEncoder(ownCap);
          // A twin that first tries encodeInto with too little room: a refusal must leave no trace.
          const twin = new HpackEncoder(ownCap);
          const d = new HpackDecoder(4096, maxList);
          let max = 4096;
          for (const [i, step] of steps.entries()) {
            if (step.kind === 'size') {
              // SETTINGS_HEADER_TABLE_SIZE changes (possibly several before one block): our decoder
              // enforces each, the peer's encoder follows them.
              for (const n of step.sizes) {
                d.setMaxTableSize(n);
                e.setMaxTableSize(n);
                twin.setMaxTableSize(n);
                max = n;
              }
              continue;
            }
            const { fields, pre, roomCut } = step;
            const b = e.encode(fields);
            const small = new Uint8Array(pre + Math.floor(b.length * 2 * roomCut));
            const n = twin.encodeInto(fields, small, pre);
            let b2: Uint8Array;
            if (n < 0) b2 = twin.encode(fields);
            else b2 = small.subarray(pre, n);
            assert.deepEqual(Buffer.from(b2), Buffer.from(b), `step ${i}: encodeInto (refused or not) = encode`);
            const big = Buffer.alloc(pre + b.length + 2, 0xff);
            b.copy(big, pre);
            const out: string[] = [];
            const r = timedDecode(d, big, pre, pre + b.length, out);
            const { kept, tooLarge } = keptPrefix(fields, maxList);
            assert.equal(r, tooLarge ? 'too_large' : null, `step ${i}`);
            assert.deepEqual(pairs(out), pairs(kept), `step ${i}`);
            assert.equal(d.tableSize, e.tableSize, `step ${i}: decoder and encoder tables in step`);
            assert.equal(twin.tableSize, e.tableSize);
            checkTable(d, max, `step ${i}`);
            assert.ok(e.tableSize <= Math.min(max, ownCap), `step ${i}: encoder table within its caps`);
          }
        },
      ),
      params(),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Blocks kept whole (HpackDecoder.decodeList) and encodings given again (HpackEncoder.repeatLength):
// each against the plain path, which must give exactly the same lists, octets and tables.

let keptAnswers = 0;
let totalRepeats = 0;

type MemoStep =
  | { kind: 'block'; bytes: Uint8Array }
  | { kind: 'again'; back: number }
  | { kind: 'max'; n: number }
  | { kind: 'table-literal'; value: string }
  | { kind: 'table-ref'; index: number; insert: string }
  | { kind: 'sized-literal'; size: number; value: string };

/** Blocks that repeat: random ones, an earlier one again, our own size settings, and literals indexed into the table. */
const memoStep: fc.Arbitrary<MemoStep> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('block' as const), bytes: block }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('again' as const), back: fc.integer({ min: 1, max: 4 }) }) },
  fc.record({ kind: fc.constant('max' as const), n: tableSize }),
  // x-v: <value>, a literal with incremental indexing: it changes what a reference like 0xbe means.
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('table-literal' as const),
      value: fc.constantFrom('a', 'b', 'cc', 'x\ry'),
    }),
  },
  // :status 200 and the newest (or second newest) table entry: its meaning moves with every insert.
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('table-ref' as const),
      index: fc.constantFrom(62, 63),
      insert: fc.constantFrom('', 'd', 'e'),
    }),
  },
  // A size update, then x-v indexed: kept, it would skip the update when given again.
  fc.record({
    kind: fc.constant('sized-literal' as const),
    size: fc.constantFrom(0, 40, 100, 4096),
    value: fc.constantFrom('a', 'b'),
  }),
);

describe('HPACK memo fuzz', () => {
  test('decodeList (blocks kept whole, inserts made again) = decode, list by list and table by table', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(BIG_LIST), fc.integer({ min: 0, max: 300 })),
        fc.array(memoStep, { minLength: 1, maxLength: 24 }),
        (maxList, steps) => {
          const memo = new HpackDecoder(4096, maxList, true);
          const plain = new HpackDecoder(4096, maxList);
          const sent: Uint8Array[] = [];
          const lists = new Set<readonly string[]>();
          for (const [i, step] of steps.entries()) {
            if (step.kind === 'max') {
              memo.setMaxTableSize(step.n);
              plain.setMaxTableSize(step.n);
              continue;
            }
            let bytes: Uint8Array;
            if (step.kind === 'block') bytes = step.bytes;
            else if (step.kind === 'table-literal') {
              // :status 200, then x-v indexed; and a reference to the newest entry after it.
              bytes = Uint8Array.from([0x88, 0x40, 3, 0x78, 0x2d, 0x76, step.value.length, ...Buffer.from(step.value)]);
            } else if (step.kind === 'table-ref') {
              // and, in some, x-v indexed after the reference (kept, it would answer with what the entry meant before)
              const insert = step.insert === '' ? [] : [0x40, 3, 0x78, 0x2d, 0x76, 1, step.insert.charCodeAt(0)];
              bytes = Uint8Array.from([0x88, 0x80 | step.index, ...insert]);
            } else if (step.kind === 'sized-literal') {
              const b: number[] = [];
              putInt(b, 0x20, 0x1f, step.size);
              bytes = Uint8Array.from([...b, 0x88, 0x40, 3, 0x78, 0x2d, 0x76, 1, step.value.charCodeAt(0)]);
            } else {
              const earlier = sent[sent.length - step.back];
              if (earlier === undefined) continue;
              bytes = earlier;
            }
            sent.push(bytes);
            // At an offset in a larger buffer, as frames arrive.
            const buf = Buffer.alloc(bytes.length + 3, 0xee);
            buf.set(bytes, 2);
            const got = memo.decodeList(buf, 2, 2 + bytes.length);
            const out: string[] = [];
            const want = plain.decode(buf, 2, 2 + bytes.length, out);
            if (typeof got === 'string') assert.equal(got, want, `step ${i}: the same error`);
            else {
              assert.equal(want, null, `step ${i}: decodeList succeeded where decode did not`);
              assert.deepEqual([...got], out, `step ${i}: the same fields`);
              if (lists.has(got)) keptAnswers++;
              lists.add(got);
              assert.equal(memo.clean, plain.clean, `step ${i}: the same verdict on the characters`);
            }
            assert.deepEqual(entries(memo), entries(plain), `step ${i}: the same table`);
            assert.equal(memo.tableSize, plain.tableSize, `step ${i}`);
            // After a compression error the connection is gone: nothing more is decoded on it.
            if (want === 'compression') break;
          }
        },
      ),
      params(2),
    );
    // The property is only worth something if kept blocks answered, inserts and table references among them.
    assert.ok(keptAnswers > 100, `kept blocks answered ${keptAnswers} times`);
  });

  test('repeatLength/writeKept (a block given again) = encodeInto, octet for octet, and decodes to the fields', () => {
    type EncStep =
      | { kind: 'fields'; fields: string[] }
      | { kind: 'again'; back: number }
      | { kind: 'change'; at: number; value: string }
      | { kind: 'size'; n: number };
    const small = fc.array(
      fc.tuple(
        fc.constantFrom(':method', ':path', 'x-forwarded-for', 'x-a', 'cookie', 'authorization'),
        fc.constantFrom('GET', '/', '/a', '1.2.3.4', 'v', 'w'.repeat(60)),
      ),
      { maxLength: 6 },
    );
    const encStep: fc.Arbitrary<EncStep> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('fields' as const), fields: small.map((p) => p.flat()) }) },
      {
        weight: 5,
        arbitrary: fc.record({ kind: fc.constant('again' as const), back: fc.integer({ min: 1, max: 3 }) }),
      },
      // The caller changes the array it encoded last, in place, and sends it again.
      fc.record({ kind: fc.constant('change' as const), at: fc.nat(20), value: fc.constantFrom('GET', '/b', 'v') }),
      fc.record({ kind: fc.constant('size' as const), n: fc.constantFrom(0, 64, 200, 4096) }),
    );
    fc.assert(
      fc.property(fc.array(encStep, { minLength: 1, maxLength: 30 }), (steps) => {
        const e = new HpackEncoder();
        const plain = new HpackEncoder();
        const d = new HpackDecoder(4096, BIG_LIST);
        const lists: string[][] = [];
        let repeats = 0;
        for (const [i, step] of steps.entries()) {
          let fields: string[];
          if (step.kind === 'size') {
            e.setMaxTableSize(step.n);
            plain.setMaxTableSize(step.n);
            d.setMaxTableSize(step.n);
            continue;
          } else if (step.kind === 'fields') fields = step.fields;
          else if (step.kind === 'again') {
            const earlier = lists[lists.length - step.back];
            if (earlier === undefined) continue;
            // Sometimes the same array, sometimes an equal copy.
            fields = step.back % 2 === 0 ? [...earlier] : earlier;
          } else {
            const last = lists[lists.length - 1];
            if (last === undefined || last.length === 0) continue;
            last[step.at % last.length] = step.value;
            fields = last;
          }
          lists.push(fields);
          const out = Buffer.alloc(4096);
          const again = e.repeatLength(fields);
          let end: number;
          if (again >= 0) {
            repeats++;
            end = e.writeKept(out, 1);
            assert.equal(end - 1, again);
          } else end = e.encodeInto(fields, out, 1);
          const want = plain.encode(fields);
          assert.deepEqual(out.subarray(1, end), want, `step ${i}: the same octets`);
          const decoded: string[] = [];
          assert.equal(d.decode(out, 1, end, decoded), null);
          assert.deepEqual(decoded, fields, `step ${i}: decodes to the fields`);
          assert.equal(e.tableSize, plain.tableSize);
        }
        totalRepeats += repeats;
      }),
      params(2),
    );
    assert.ok(totalRepeats > 100, `blocks given again ${totalRepeats} times`);
  });
});
