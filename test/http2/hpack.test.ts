import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { HpackDecoder } from '../../src/http2/hpack-decoder.ts';
import { HpackEncoder } from '../../src/http2/hpack-encoder.ts';
import {
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  huffmanDecode,
  huffmanEncodedLength,
  huffmanEncodeInto,
} from '../../src/http2/hpack-huffman.ts';
import { STATIC_COUNT, STATIC_NAMES, STATIC_VALUES } from '../../src/http2/hpack-static-table.ts';
import { prng } from '../helpers/prng.ts';

/** Hex as the RFC prints it, spaces and line breaks allowed. */
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const BIG_LIST = 1 << 20;

type Field = [string, string];

/** Decodes a whole block; the fields as pairs, or the error. */
function decode(d: HpackDecoder, block: Uint8Array): Field[] | string {
  const out: string[] = [];
  const err = d.decode(block, 0, block.length, out);
  return err ?? pairs(out);
}

function pairs(flat: readonly string[]): Field[] {
  const r: Field[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) r.push([flat[i]!, flat[i + 1]!]);
  return r;
}

function table(d: HpackDecoder): Field[] {
  const r: Field[] = [];
  for (let k = 1; k <= d.entryCount; k++) r.push(d.entryAt(k)!);
  return r;
}

function huffman(s: string): string {
  const out = Buffer.alloc(huffmanEncodedLength(s));
  assert.equal(huffmanEncodeInto(s, out, 0), out.length);
  return out.toString('hex');
}

describe('HPACK Huffman code', () => {
  test('the table is the canonical code of its lengths, complete, with EOS all ones', () => {
    assert.equal(HUFFMAN_CODES.length, 257);
    assert.equal(HUFFMAN_LENGTHS.length, 257);
    const order = [...Array(257).keys()].sort((a, b) => HUFFMAN_LENGTHS[a]! - HUFFMAN_LENGTHS[b]! || a - b);
    let code = 0;
    let len = HUFFMAN_LENGTHS[order[0]!]!;
    for (const sym of order) {
      code *= 2 ** (HUFFMAN_LENGTHS[sym]! - len);
      len = HUFFMAN_LENGTHS[sym]!;
      assert.equal(HUFFMAN_CODES[sym], code, `symbol ${sym}`);
      code++;
    }
    // The last code of a complete code is all ones; one past it overflows its length exactly.
    assert.equal(code, 2 ** len);
    assert.equal(HUFFMAN_CODES[256], 2 ** 30 - 1);
  });

  test('RFC 7541 Appendix C strings', () => {
    const cases: [string, string][] = [
      ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
      ['no-cache', 'a8eb10649cbf'],
      ['custom-key', '25a849e95ba97d7f'],
      ['custom-value', '25a849e95bb8e8b4bf'],
      ['302', '6402'],
      ['307', '640eff'],
      ['private', 'aec3771a4b'],
      ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
      ['Mon, 21 Oct 2013 20:13:22 GMT', 'd07abe941054d444a8200595040b8166e084a62d1bff'],
      ['https://www.example.com', '9d29ad171863c78f0b97c8e9ae82ae43d3'],
      ['gzip', '9bd9ab'],
      [
        'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
        '94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
      ],
    ];
    for (const [s, h] of cases) {
      assert.equal(huffman(s), h, s);
      const b = hex(h);
      assert.equal(huffmanDecode(b, 0, b.length), s);
    }
  });

  test('every octet round-trips, alone, in a run, and from an offset', () => {
    let all = '';
    for (let c = 0; c < 256; c++) {
      const s = String.fromCharCode(c);
      all += s;
      const b = hex(huffman(s));
      assert.equal(b.length, Math.ceil(HUFFMAN_LENGTHS[c]! / 8));
      assert.equal(huffmanDecode(b, 0, b.length), s, `octet ${c}`);
    }
    const twice = all + all.split('').reverse().join('');
    const b = Buffer.concat([Buffer.from([1, 2, 3]), hex(huffman(twice)), Buffer.from([4])]);
    assert.equal(huffmanDecode(b, 3, b.length - 1), twice);
    assert.equal(huffmanDecode(b, 3, 3), '');
    assert.equal(huffmanEncodedLength(''), 0);
  });

  test('invalid encodings are refused (RFC 7541 §5.2)', () => {
    const bad: [string, string][] = [
      ['ffffffff', 'EOS (30 ones) in the string'],
      ['1fffffffff', "'a' then EOS"],
      ['ff', '8 bits of padding'],
      ['1fff', "'a' then 11 bits of padding"],
      ['18', "'a' then padding 000"],
      ['1e', "'a' then padding 110"],
      ['fe', 'padding 11111110'],
    ];
    for (const [h, why] of bad) {
      const b = hex(h);
      assert.equal(huffmanDecode(b, 0, b.length), null, why);
    }
    // 7 bits of ones is the most padding allowed.
    assert.equal(huffmanDecode(hex('1f'), 0, 1), 'a');
  });
});

describe('HPACK static table', () => {
  test('has the 61 entries of RFC 7541 Appendix A', () => {
    assert.equal(STATIC_COUNT, 61);
    assert.deepEqual([STATIC_NAMES[1], STATIC_VALUES[1]], [':authority', '']);
    assert.deepEqual([STATIC_NAMES[8], STATIC_VALUES[8]], [':status', '200']);
    assert.deepEqual([STATIC_NAMES[16], STATIC_VALUES[16]], ['accept-encoding', 'gzip, deflate']);
    assert.deepEqual([STATIC_NAMES[61], STATIC_VALUES[61]], ['www-authenticate', '']);
  });
});

interface Step {
  name: string;
  wire: string;
  headers: Field[];
  /** Dynamic table after the block, newest first, and its size. */
  table: Field[];
  size: number;
}

const C2: Step[] = [
  {
    name: 'C.2.1 literal with indexing',
    wire: '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572',
    headers: [['custom-key', 'custom-header']],
    table: [['custom-key', 'custom-header']],
    size: 55,
  },
  {
    name: 'C.2.2 literal without indexing',
    wire: '040c 2f73 616d 706c 652f 7061 7468',
    headers: [[':path', '/sample/path']],
    table: [],
    size: 0,
  },
  {
    name: 'C.2.3 literal never indexed',
    wire: '1008 7061 7373 776f 7264 0673 6563 7265 74',
    headers: [['password', 'secret']],
    table: [],
    size: 0,
  },
  { name: 'C.2.4 indexed', wire: '82', headers: [[':method', 'GET']], table: [], size: 0 },
];

const REQ1: Field[] = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const REQ2: Field[] = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: Field[] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];
const AUTH: Field = [':authority', 'www.example.com'];
const NO_CACHE: Field = ['cache-control', 'no-cache'];
const CUSTOM: Field = ['custom-key', 'custom-value'];

const requests = (wires: string[]): Step[] => [
  { name: 'first request', wire: wires[0]!, headers: REQ1, table: [AUTH], size: 57 },
  { name: 'second request', wire: wires[1]!, headers: REQ2, table: [NO_CACHE, AUTH], size: 110 },
  { name: 'third request', wire: wires[2]!, headers: REQ3, table: [CUSTOM, NO_CACHE, AUTH], size: 164 },
];

const C3 = requests([
  '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
  '8286 84be 5808 6e6f 2d63 6163 6865',
  '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
]);
const C4 = requests([
  '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
  '8286 84be 5886 a8eb 1064 9cbf',
  '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
]);

const DATE1: Field = ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'];
const DATE2: Field = ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'];
const LOCATION: Field = ['location', 'https://www.example.com'];
const PRIVATE: Field = ['cache-control', 'private'];
const COOKIE: Field = ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'];
const GZIP: Field = ['content-encoding', 'gzip'];

const responses = (wires: string[]): Step[] => [
  {
    name: 'first response',
    wire: wires[0]!,
    headers: [[':status', '302'], PRIVATE, DATE1, LOCATION],
    table: [LOCATION, DATE1, PRIVATE, [':status', '302']],
    size: 222,
  },
  {
    name: 'second response',
    wire: wires[1]!,
    headers: [[':status', '307'], PRIVATE, DATE1, LOCATION],
    table: [[':status', '307'], LOCATION, DATE1, PRIVATE],
    size: 222,
  },
  {
    name: 'third response',
    wire: wires[2]!,
    headers: [[':status', '200'], PRIVATE, DATE2, LOCATION, GZIP, COOKIE],
    table: [COOKIE, GZIP, DATE2],
    size: 215,
  },
];

const C5 = responses([
  `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
   2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
   6c65 2e63 6f6d`,
  '4803 3330 37c1 c0bf',
  `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
   54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
   5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
   3d31`,
]);
const C6 = responses([
  `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
   2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
  '4883 640e ffc1 c0bf',
  `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
   77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
   9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
]);

function runSteps(steps: Step[], tableSize: number, shared: boolean): void {
  let d = new HpackDecoder(tableSize, BIG_LIST);
  for (const s of steps) {
    if (!shared) d = new HpackDecoder(tableSize, BIG_LIST);
    assert.deepEqual(decode(d, hex(s.wire)), s.headers, s.name);
    assert.deepEqual(table(d), s.table, s.name);
    assert.equal(d.tableSize, s.size, s.name);
  }
}

describe('HPACK decoder: RFC 7541 Appendix C', () => {
  test('C.2 field representations', () => runSteps(C2, 4096, false));
  test('C.3 requests without Huffman coding', () => runSteps(C3, 4096, true));
  test('C.4 requests with Huffman coding', () => runSteps(C4, 4096, true));
  test('C.5 responses without Huffman coding, table size 256', () => runSteps(C5, 256, true));
  test('C.6 responses with Huffman coding, table size 256', () => runSteps(C6, 256, true));
});

describe('HPACK encoder', () => {
  const flat = (f: Field[]) => f.flat();

  test('reproduces the C.4 blocks byte for byte (same choices as the RFC encoder)', () => {
    const e = new HpackEncoder();
    for (const s of C4) assert.equal(e.encode(flat(s.headers)).toString('hex'), hex(s.wire).toString('hex'), s.name);
    assert.equal(e.tableSize, 164);
  });

  test('indexes repeats, and not sensitive or per-message fields', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder(4096, BIG_LIST);
    const fields: Field[] = [
      ['x-tenant', 'blue'],
      ['authorization', 'Bearer abc'],
      ['cookie', 'a=1'],
      ['cookie', 'session=0123456789abcdef0123'],
      ['content-length', '1234'],
      [':path', `/${'p'.repeat(100)}`],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ];
    const first = e.encode(flat(fields));
    assert.deepEqual(decode(d, first), fields);
    // Only x-tenant, the long cookie and date (shared by responses within a second) entered the table.
    assert.deepEqual(table(d), [
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['cookie', 'session=0123456789abcdef0123'],
      ['x-tenant', 'blue'],
    ]);
    assert.equal(e.tableSize, d.tableSize);
    const again = e.encode(flat([fields[0]!, fields[3]!, fields[1]!]));
    assert.equal(again[0], 0x80 | 64);
    assert.equal(again[1], 0x80 | 63);
    // authorization: never indexed (0001xxxx) with the static name 23 (15 + 8).
    assert.deepEqual([...again.subarray(2, 4)], [0x1f, 23 - 15]);
    assert.deepEqual(decode(d, again), [fields[0], fields[3], fields[1]]);
  });

  test('uses a dynamic name reference and Huffman only when shorter', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder(4096, BIG_LIST);
    const b1 = e.encode(['x-custom', 'aaaa']);
    const b2 = e.encode(['x-custom', '\x00\x01\x02']);
    // Incremental indexing, name index 62.
    assert.equal(b2[0], 0x40 | 62);
    // Raw value: Huffman would take 3 × 13+ bits.
    assert.deepEqual([...b2.subarray(1)], [3, 0, 1, 2]);
    assert.deepEqual(decode(d, b1), [['x-custom', 'aaaa']]);
    assert.deepEqual(decode(d, b2), [['x-custom', '\x00\x01\x02']]);
  });

  test('entries over half the table are not indexed', () => {
    const e = new HpackEncoder(256);
    const d = new HpackDecoder(4096, BIG_LIST);
    const b = e.encode(['x-a', 'v'.repeat(100), 'x-b', 'v'.repeat(60)]);
    // Size update to 256 first, then x-a (135 > 128) without indexing, x-b (95) indexed.
    assert.deepEqual([...b.subarray(0, 3)], [0x3f, 0xe1, 0x01]);
    assert.deepEqual(decode(d, b), [
      ['x-a', 'v'.repeat(100)],
      ['x-b', 'v'.repeat(60)],
    ]);
    assert.equal(d.tableSize, 95);
    assert.equal(e.tableSize, 95);
  });

  test('a size that went down then up is signalled as the minimum, then the final', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder(4096, BIG_LIST);
    assert.deepEqual(decode(d, e.encode(['x-a', '1'])), [['x-a', '1']]);
    e.setMaxTableSize(0);
    d.setMaxTableSize(0);
    e.setMaxTableSize(4096);
    d.setMaxTableSize(4096);
    const b = e.encode(['x-a', '1']);
    assert.deepEqual([...b.subarray(0, 4)], [0x20, 0x3f, 0xe1, 0x1f]);
    assert.deepEqual(decode(d, b), [['x-a', '1']]);
    // The dip emptied the table, so x-a was a new literal again.
    assert.equal(b[4], 0x40);
    assert.equal(d.tableSize, e.tableSize);
    // No change, no update.
    e.setMaxTableSize(4096);
    assert.equal(e.encode(['x-a', '1'])[0], 0x80 | 62);
  });

  test('a raised size is signalled once', () => {
    const e = new HpackEncoder(65536);
    e.setMaxTableSize(8192);
    assert.deepEqual([...e.encode([])], [0x3f, 0xe1, 0x3f]);
  });

  test('the own cap limits the table whatever the peer allows', () => {
    const e = new HpackEncoder(100);
    e.setMaxTableSize(65536);
    const b = e.encode([]);
    assert.deepEqual([...b], [0x3f, 100 - 31]);
  });

  test('encodeInto: -1 on too little room, with no state change; writes at pos', () => {
    const fields = ['x-a', 'one', 'x-b', 'two', 'x-a', 'one'];
    const ref = new HpackEncoder(1024).encode(fields);
    const e = new HpackEncoder(1024);
    assert.equal(e.encodeInto(fields, new Uint8Array(10), 0), -1);
    assert.equal(e.tableSize, 0);
    const out = new Uint8Array(200);
    const end = e.encodeInto(fields, out, 7);
    assert.deepEqual(Buffer.from(out.subarray(7, end)), ref);
  });
});

describe('HPACK decoder errors', () => {
  const err = (h: string, d = new HpackDecoder(4096, BIG_LIST)) => decode(d, hex(h));

  test('index 0 and indices past the tables', () => {
    assert.equal(err('80'), 'compression');
    assert.equal(err('be'), 'compression');
    assert.equal(err('7e 01 61'), 'compression', 'literal with indexing, name index 62 of none');
    assert.equal(err('0f 2f 01 61'), 'compression', 'literal without indexing, name index 62 of none');
    const d = new HpackDecoder(4096, BIG_LIST);
    assert.deepEqual(err('40 01 61 01 62', d), [['a', 'b']]);
    assert.deepEqual(err('be', d), [['a', 'b']]);
    assert.equal(err('bf', d), 'compression');
  });

  test('truncated representations', () => {
    for (const h of ['ff', 'ff 80', '40', '40 01', '40 01 61', '40 01 61 05 61 62', '04', '44 82 1f', '00 83 61']) {
      assert.equal(err(h), 'compression', h);
    }
  });

  test('integer overflow', () => {
    assert.equal(err('ff ff ff ff ff 0f'), 'compression', 'index above 2^31');
    assert.equal(err('ff 80 80 80 80 80 00'), 'compression', 'more continuation octets than 2^31 needs');
    assert.equal(err('40 7f ff ff ff ff 0f'), 'compression', 'string length above 2^31');
  });

  test('bad Huffman strings', () => {
    assert.equal(err('40 01 61 84 ff ff ff ff'), 'compression', 'EOS');
    assert.equal(err('40 01 61 82 1f ff'), 'compression', 'padding over 7 bits');
    assert.equal(err('40 01 61 81 18'), 'compression', 'padding not ones');
    assert.equal(err('40 81 ff 01 61'), 'compression', 'bad Huffman name');
  });

  test('dynamic table size updates', () => {
    assert.equal(err('3f e2 1f'), 'compression', '4097 above the 4096 advertised');
    assert.deepEqual(err('3f e1 1f 82'), [[':method', 'GET']]);
    assert.equal(err('82 20'), 'compression', 'after a field');
    const d = new HpackDecoder(4096, BIG_LIST);
    assert.deepEqual(err('40 01 61 01 62', d), [['a', 'b']]);
    assert.deepEqual(err('20 3f 0a', d), [], 'two updates, an empty field list');
    assert.equal(d.tableSize, 0);
  });

  test('a lowered setting requires an update no larger at the start of the next block', () => {
    const d = new HpackDecoder(4096, BIG_LIST);
    d.setMaxTableSize(100);
    assert.equal(err('82', d), 'compression');
    const d2 = new HpackDecoder(4096, BIG_LIST);
    d2.setMaxTableSize(100);
    assert.equal(err('3f 46 82', d2), 'compression', '101 is above the new setting');
    const d3 = new HpackDecoder(4096, BIG_LIST);
    d3.setMaxTableSize(100);
    d3.setMaxTableSize(4096);
    assert.equal(err('3f e1 1f 82', d3), 'compression', 'the dip to 100 must be signalled');
    assert.deepEqual(err('3f 45 3f e1 1f 82', d3), [[':method', 'GET']]);
    assert.deepEqual(err('82', d3), [[':method', 'GET']], 'owed once only');
    const d4 = new HpackDecoder(4096, BIG_LIST);
    d4.setMaxTableSize(8192);
    assert.deepEqual(err('82', d4), [[':method', 'GET']], 'a raised setting needs no update');
  });

  test('an entry larger than the table empties it', () => {
    const d = new HpackDecoder(100, BIG_LIST);
    assert.deepEqual(err('40 01 61 01 62', d), [['a', 'b']]);
    assert.equal(d.tableSize, 34);
    const big = `40 01 63 44 ${'78'.repeat(68)}`;
    assert.equal((err(big, d) as Field[])[0]![1].length, 68);
    assert.equal(d.tableSize, 0);
    assert.equal(d.entryCount, 0);
  });

  test('a list over maxListSize is too_large, and the table stays in step', () => {
    const d = new HpackDecoder(4096, 150);
    const a = `${'78'.repeat(60)}`;
    const out: string[] = [];
    const block = hex(`40 03 782d61 3c ${a} 40 03 782d62 3c ${a.replace(/78/g, '79')} 82`);
    assert.equal(d.decode(block, 0, block.length, out), 'too_large');
    assert.deepEqual(out, ['x-a', 'x'.repeat(60)]);
    assert.equal(d.entryCount, 2);
    assert.deepEqual(decode(d, hex('be')), [['x-b', 'y'.repeat(60)]]);
    assert.deepEqual(decode(d, hex('bf')), [['x-a', 'x'.repeat(60)]]);
  });

  test('decodes only block[start, end)', () => {
    const d = new HpackDecoder(4096, BIG_LIST);
    const b = hex('ff 82 86 ff');
    const out: string[] = [];
    assert.equal(d.decode(b, 1, 3, out), null);
    assert.deepEqual(out, [':method', 'GET', ':scheme', 'http']);
  });

  test('string octets are kept as latin1, names untouched', () => {
    const d = new HpackDecoder(4096, BIG_LIST);
    assert.deepEqual(err('00 02 4142 03 00ff80', d), [['AB', '\x00\xff\x80']]);
  });
});

interface Story {
  source: string;
  cases: { seqno: number; header_table_size?: number; wire: string; headers: Record<string, string>[] }[];
}

const FIXTURES = new URL('./fixtures/hpack/', import.meta.url);
const stories: [string, Story][] = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => [f, JSON.parse(readFileSync(new URL(f, FIXTURES), 'utf8')) as Story]);

const caseFields = (headers: Record<string, string>[]) => headers.flatMap((h) => Object.entries(h));

describe('HPACK hpack-test-case stories', () => {
  test('the fixtures are there', () => assert.ok(stories.length >= 8));

  for (const [file, story] of stories) {
    test(`decodes ${file}`, () => {
      // the plain decoder, and one that remembers short literals (upstream connections): the same fields
      for (const memo of [false, true]) {
        const d = new HpackDecoder(4096, BIG_LIST, memo);
        for (const c of story.cases) {
          if (c.header_table_size !== undefined) d.setMaxTableSize(c.header_table_size);
          assert.deepEqual(decode(d, hex(c.wire)), caseFields(c.headers), `case ${c.seqno}, memo ${memo}`);
        }
      }
    });

    test(`round-trips ${file}`, () => {
      const e = new HpackEncoder();
      const d = new HpackDecoder(4096, BIG_LIST);
      for (const c of story.cases) {
        if (c.header_table_size !== undefined) {
          d.setMaxTableSize(c.header_table_size);
          e.setMaxTableSize(c.header_table_size);
        }
        const fields = caseFields(c.headers);
        assert.deepEqual(decode(d, e.encode(fields.flat())), fields, `case ${c.seqno}`);
        assert.equal(e.tableSize, d.tableSize);
      }
    });
  }
});

describe('HPACK decoder string memo (upstream connections)', () => {
  test('colliding and repeated literals, Huffman or not, always decode to their own value', () => {
    const e = new HpackEncoder();
    const plain = new HpackDecoder(4096, BIG_LIST);
    const memo = new HpackDecoder(4096, BIG_LIST, true);
    const rnd = prng(0x3e3);
    // 300 distinct values over 32 slots, each sent many times, never indexed (x-never-*: literal every time)
    const values = Array.from({ length: 300 }, (_, i) => `v${i}-${'abcdefghij'.slice(0, i % 10)}`);
    for (let round = 0; round < 20; round++) {
      const fields: string[] = [];
      for (let k = 0; k < 25; k++) fields.push('authorization', values[Math.floor(rnd() * values.length)]!);
      const block = e.encode(fields);
      const got = decode(memo, block);
      assert.deepEqual(got, decode(plain, block));
      assert.deepEqual(
        (got as Field[]).map(([, v]) => v),
        fields.filter((_, i) => i % 2 === 1),
      );
    }
    // the same octet as a raw value (0x07) and as a Huffman-coded one ('0', 00000 and three bits of padding):
    // two strings, whichever comes first
    assert.deepEqual(decode(memo, hex('00 01 61 01 07 00 01 61 81 07')), [
      ['a', '\x07'],
      ['a', '0'],
    ]);
    assert.deepEqual(decode(memo, hex('00 01 61 81 07 00 01 61 01 07')), [
      ['a', '0'],
      ['a', '\x07'],
    ]);
  });
});

describe('HPACK randomized round trip', () => {
  test('3000 field lists with table size changes on both sides', () => {
    const rnd = prng(0x5eed);
    const int = (n: number) => Math.floor(rnd() * n);
    const latin1 = (len: number) => {
      let s = '';
      for (let i = 0; i < len; i++) s += String.fromCharCode(rnd() < 0.7 ? 0x20 + int(95) : int(256));
      return s;
    };
    const names = [
      ...STATIC_NAMES.slice(1),
      'cookie',
      'x-request-id',
      'x-forwarded-for',
      'x-custom-a',
      'x-custom-b',
      'x-\xe9',
    ];
    const values = Array.from({ length: 40 }, () => latin1(int(30)));
    const sizes = [0, 1, 64, 256, 1000, 4096, 8192, 65536];
    const caps = [0, 100, 4096, 16384];
    let e = new HpackEncoder();
    let d = new HpackDecoder(4096, BIG_LIST);
    let small = new Uint8Array(64);
    let refusals = 0;
    for (let n = 0; n < 3000; n++) {
      if (n % 500 === 0) {
        e = new HpackEncoder(caps[int(caps.length)]);
        d = new HpackDecoder(4096, BIG_LIST);
      }
      if (rnd() < 0.03) {
        // Sometimes two changes before one block.
        for (let k = 1 + int(2); k > 0; k--) {
          const s = sizes[int(sizes.length)]!;
          d.setMaxTableSize(s);
          e.setMaxTableSize(s);
        }
      }
      const fields: string[] = [];
      for (let k = int(12); k >= 0; k--) {
        const name = rnd() < 0.9 ? names[int(names.length)]! : `x-${latin1(1 + int(10)).toLowerCase()}`;
        const r = rnd();
        const value = r < 0.5 ? values[int(values.length)]! : r < 0.97 ? latin1(int(60)) : latin1(1000 + int(3000));
        fields.push(name, value);
      }
      let block: Uint8Array;
      const end = e.encodeInto(fields, small, 0);
      if (end < 0) {
        refusals++;
        block = e.encode(fields);
        if (block.length > small.length) small = new Uint8Array(block.length);
      } else {
        block = small.slice(0, end);
      }
      const out: string[] = [];
      assert.equal(d.decode(block, 0, block.length, out), null, `list ${n}`);
      assert.deepEqual(out, fields, `list ${n}`);
      assert.equal(e.tableSize, d.tableSize, `list ${n}`);
    }
    assert.ok(refusals > 0);
  });
});

describe('HPACK decoder: blocks known clean (RFC 9113 §8.2.1 character rules)', () => {
  /** Decodes `block` and says whether the decoder knows it clean. */
  const clean = (d: HpackDecoder, block: Buffer): boolean => {
    assert.ok(Array.isArray(decode(d, block)), 'decodes');
    return d.clean;
  };
  const lit = (name: string, value: string, indexed = false) => {
    const str = (s: string) => Buffer.concat([Buffer.of(s.length), Buffer.from(s, 'latin1')]);
    return Buffer.concat([Buffer.of(indexed ? 0x40 : 0x00), str(name), str(value)]);
  };

  for (const memo of [false, true]) {
    test(`literals, each time they come (${memo ? 'with' : 'without'} the string memo)`, () => {
      const d = new HpackDecoder(4096, BIG_LIST, memo);
      const cases: [string, Buffer, boolean][] = [
        ['static entries only', hex('82 86 84 41 0f 7777772e6578616d706c652e636f6d'), true],
        ['a lower-case name and a plain value', lit('x-a', 'b c'), true],
        ['a pseudo-field name (the message rules check which)', lit(':foo', 'bar'), true],
        ['an empty value', lit('x-a', ''), true],
        ['CR in a value', lit('x-a', 'a\rb'), false],
        ['LF in a value', lit('x-a', 'a\nb'), false],
        ['NUL in a value', lit('x-a', 'a\0b'), false],
        ['a leading space', lit('x-a', ' a'), false],
        ['a trailing tab', lit('x-a', 'a\t'), false],
        ['an upper-case name', lit('X-A', 'b'), false],
        ['an empty name', lit('', 'b'), false],
        ['a name with a space', lit('x a', 'b'), false],
      ];
      for (let round = 0; round < 3; round++) {
        for (const [what, block, want] of cases) assert.equal(clean(d, block), want, `${what}, round ${round}`);
      }
    });
  }

  test('a bad entry in the dynamic table taints references until it is evicted, and only it', () => {
    // Table of 110 octets: each entry below is 36 or 37 (name + value + 32).
    const d = new HpackDecoder(110, BIG_LIST, true);
    assert.equal(clean(d, lit('x-a', '1', true)), true); // 62: x-a
    assert.equal(clean(d, lit('x-b', 'v\n', true)), false); // 62: x-b (bad), 63: x-a
    assert.equal(clean(d, hex('bf')), false, 'a clean entry while a bad one is in the table: not known clean');
    assert.equal(clean(d, hex('be')), false, 'the bad entry');
    assert.equal(clean(d, lit('x-c', '2', true)), true); // 62: x-c, 63: x-b, 64: x-a
    assert.equal(clean(d, lit('x-d', '3', true)), true); // evicts x-a: 62 x-d, 63 x-c, 64 x-b
    assert.deepEqual(d.entryAt(3), ['x-b', 'v\n']);
    assert.equal(clean(d, hex('c0')), false, 'the bad entry outlives the eviction of a clean one');
    assert.equal(clean(d, lit('x-e', '4', true)), true); // evicts x-b
    assert.equal(clean(d, hex('be bf c0')), true, 'once the bad entry is gone, references are clean again');
    // A literal that names a table entry: the name is judged on its own.
    assert.equal(clean(d, lit('x-f', 'v\r', true)), false); // evicts x-c: 62 x-f (bad) 63 x-e 64 x-d
    assert.equal(clean(d, Buffer.concat([Buffer.of(0x0f, 0x2f), Buffer.of(1), Buffer.from('z')])), true);
  });
});

describe('HPACK blocks kept whole and given again', () => {
  // x-v: <value> as a literal with incremental indexing (a new name), after :status 200
  const insertXv = (v: string) =>
    Buffer.concat([hex('88 40 03 782d76'), Buffer.of(v.length), Buffer.from(v, 'latin1')]);
  const pairsOf = (d: HpackDecoder) => Array.from({ length: d.entryCount }, (_, k) => d.entryAt(k + 1));

  test('an nginx-like block (literals indexed, no reference to the table) answers with the same list and the same inserts', () => {
    const memo = new HpackDecoder(4096, BIG_LIST, true);
    const plain = new HpackDecoder(4096, BIG_LIST);
    const block = insertXv('one');
    const first = memo.decodeList(block, 0, block.length);
    const second = memo.decodeList(block, 0, block.length);
    assert.ok(Array.isArray(first));
    assert.equal(second, first, 'the same list, not decoded again');
    for (let i = 0; i < 2; i++) assert.equal(plain.decode(block, 0, block.length, []), null);
    assert.deepEqual(pairsOf(memo), pairsOf(plain), 'each answer inserted x-v again');
    assert.equal(memo.entryCount, 2);
    // Without the memo (a downstream connection's decoder), a new list each time.
    const fresh = new HpackDecoder(4096, BIG_LIST);
    assert.notEqual(fresh.decodeList(block, 0, block.length), fresh.decodeList(block, 0, block.length));
  });

  test('after a long run of blocks that never repeat, a block that does is kept again (within 64)', () => {
    const d = new HpackDecoder(4096, BIG_LIST, true);
    // literal without indexing, :path by static name: a new value each time
    const path = (v: string) => Buffer.concat([hex('04'), Buffer.of(v.length), Buffer.from(v, 'latin1')]);
    for (let i = 0; i < 200; i++) {
      const b = path(`/p${i}`);
      d.decodeList(b, 0, b.length);
    }
    const again = path('/same');
    let previous: unknown = null;
    let answeredAt = -1;
    for (let i = 0; i < 70 && answeredAt < 0; i++) {
      const list = d.decodeList(again, 0, again.length);
      assert.deepEqual(list, [':path', '/same']);
      if (list === previous) answeredAt = i;
      previous = list;
    }
    assert.ok(answeredAt > 0 && answeredAt <= 65, `kept again at repeat ${answeredAt}`);
    // and from then on at every repeat
    assert.equal(d.decodeList(again, 0, again.length), previous);
  });

  test('the encoder, too: after fields that never repeat, repeated ones are given again (within 64)', () => {
    const e = new HpackEncoder();
    for (let i = 0; i < 200; i++) e.encode([':method', 'GET', 'x-n', String(i)]); // x-n indexed: not kept
    for (let i = 0; i < 200; i++) e.encode([':path', `/long/path/${i}/${'q'.repeat(40)}`]); // never indexed, kept at first
    const fields = [':method', 'GET', ':path', '/'];
    let repeatedAt = -1;
    for (let i = 0; i < 70 && repeatedAt < 0; i++) {
      if (e.repeatLength(fields) >= 0) repeatedAt = i;
      else e.encode(fields);
    }
    assert.ok(repeatedAt > 0 && repeatedAt <= 65, `given again at repeat ${repeatedAt}`);
    const out = Buffer.alloc(16);
    const n = e.repeatLength(fields);
    assert.deepEqual(out.subarray(0, e.writeKept(out, 0)), new HpackEncoder().encode(fields).subarray(0, n));
  });

  test('the same octets referring to the table decode anew once the table changed', () => {
    const d = new HpackDecoder(4096, BIG_LIST, true);
    const ref = hex('88 be'); // :status 200, the newest entry
    const one = insertXv('one');
    d.decodeList(one, 0, one.length);
    assert.deepEqual(d.decodeList(ref, 0, ref.length), [':status', '200', 'x-v', 'one']);
    const kept = d.decodeList(ref, 0, ref.length);
    assert.deepEqual(kept, [':status', '200', 'x-v', 'one']);
    const two = insertXv('two');
    d.decodeList(two, 0, two.length);
    assert.deepEqual(d.decodeList(ref, 0, ref.length), [':status', '200', 'x-v', 'two'], 'entry 62 is now x-v: two');
  });

  test('an entry that breaks the field rules, inserted by a block given again, still counts as one', () => {
    // Two "x\ry" entries (the second from the kept block), then a table of 100 octets evicts the older
    // one: the other is still there, and a reference to it must not be taken as clean.
    const d = new HpackDecoder(4096, BIG_LIST, true);
    const bad = insertXv('x\ry');
    d.decodeList(bad, 0, bad.length);
    assert.equal(d.clean, false);
    d.decodeList(bad, 0, bad.length);
    assert.equal(d.clean, false);
    const shrinkThenA = Buffer.concat([hex('3f 45'), insertXv('a')]); // size update to 100, then x-v: a
    d.decodeList(shrinkThenA, 0, shrinkThenA.length);
    assert.deepEqual(pairsOf(d), [
      ['x-v', 'a'],
      ['x-v', 'x\ry'],
    ]);
    const ref = hex('88 bf'); // the remaining x\ry
    assert.deepEqual(d.decodeList(ref, 0, ref.length), [':status', '200', 'x-v', 'x\ry']);
    assert.equal(d.clean, false, 'a reference to a bad entry is not known clean');
  });
});
