import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChunkedScanner } from '../../src/http1/chunked.ts';

const bytes = (s: string) => Buffer.from(s, 'latin1');
const TRAILER_LIMIT = 1024;

interface Outcome {
  /** Sum of what every feed said belongs to the body; -1 as soon as one feed failed. */
  consumed: number;
  done: boolean;
  /** The payload reassembled from `ranges` (decode mode). */
  payload: string;
  payloadBytes: number;
  /** done became true before the last piece was fed. */
  doneEarly: boolean;
}

/** Feeds `input` in the given pieces (cut points), each piece as its own buffer like socket reads. */
function run(input: string, cuts: number[] = [], maxTrailer = TRAILER_LIMIT): Outcome {
  const s = new ChunkedScanner(maxTrailer, true);
  const all = bytes(input);
  const bounds = [0, ...cuts, all.length];
  let consumed = 0;
  let payload = '';
  let doneEarly = false;
  for (let k = 0; k + 1 < bounds.length; k++) {
    const piece = Buffer.from(all.subarray(bounds[k], bounds[k + 1]));
    if (s.done) doneEarly = true;
    const n = s.feed(piece, 0, piece.length);
    if (n < 0) return { consumed: -1, done: s.done, payload, payloadBytes: s.payloadBytes, doneEarly };
    assert.ok(n <= piece.length);
    const r = s.ranges!;
    assert.equal(r.length % 2, 0);
    for (let i = 0; i < r.length; i += 2) payload += piece.toString('latin1', r[i], r[i + 1]);
    consumed += n;
  }
  return { consumed, done: s.done, payload, payloadBytes: s.payloadBytes, doneEarly };
}

/** Every way to cut the input into two pieces, plus byte-by-byte. */
function splits(len: number): number[][] {
  const out: number[][] = [];
  for (let c = 1; c < len; c++) out.push([c]);
  out.push(Array.from({ length: Math.max(0, len - 1) }, (_, i) => i + 1));
  return out;
}

const VALID: [string, string, string][] = [
  ['an empty body', '0\r\n\r\n', ''],
  ['one chunk', '5\r\nhello\r\n0\r\n\r\n', 'hello'],
  ['several chunks', '3\r\nabc\r\n1\r\nd\r\n2\r\nef\r\n0\r\n\r\n', 'abcdef'],
  ['upper- and lower-case hex sizes', 'A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n', '01234567890123456789a'],
  ['leading zeros up to 13 digits', '0000000000005\r\nhello\r\n0000000000000\r\n\r\n', 'hello'],
  ['payload containing CRLF and a fake last-chunk', '7\r\n0\r\n\r\nXY\r\n0\r\n\r\n', '0\r\n\r\nXY'],
  ['chunk extensions', '5;name=value;flag\r\nhello\r\n0;last="yes \\"really\\""\r\n\r\n', 'hello'],
  ['extension values with HTAB and obs-text', '3;a=\tb\xe9\r\nabc\r\n0\r\n\r\n', 'abc'],
  ['trailer fields', '5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\t v \r\n\r\n', 'hello'],
  ['an empty trailer value', '0\r\nX-Empty:\r\n\r\n', ''],
];

describe('ChunkedScanner: valid bodies', () => {
  for (const [name, body, payload] of VALID) {
    test(`${name}: fed whole, consumes exactly the body and is done`, () => {
      const o = run(body);
      assert.equal(o.consumed, bytes(body).length);
      assert.equal(o.done, true);
      assert.equal(o.payload, payload);
      assert.equal(o.payloadBytes, bytes(payload).length);
    });

    test(`${name}: split at every byte boundary, gives the same count, payload and done only at the end`, () => {
      const len = bytes(body).length;
      for (const cuts of splits(len)) {
        const o = run(body, cuts);
        const label = `cuts ${cuts.length > 1 ? 'byte-by-byte' : cuts.join(',')}`;
        assert.equal(o.consumed, len, label);
        assert.equal(o.done, true, label);
        assert.equal(o.doneEarly, false, label);
        assert.equal(o.payload, payload, label);
      }
    });
  }

  test('is not done while the final CRLF is missing', () => {
    for (const partial of ['0\r\n', '0\r\n\r', '5\r\nhello\r\n0\r\nX: y\r\n', '5\r\nhel']) {
      const o = run(partial);
      assert.equal(o.consumed, bytes(partial).length, JSON.stringify(partial));
      assert.equal(o.done, false, JSON.stringify(partial));
    }
  });

  test('does not consume bytes after the final CRLF (the next pipelined request)', () => {
    const body = '5\r\nhello\r\n0\r\nT: 1\r\n\r\n';
    const next = 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';
    const buf = bytes(body + next);
    const s = new ChunkedScanner(TRAILER_LIMIT);
    assert.equal(s.feed(buf, 0, buf.length), body.length);
    assert.equal(s.done, true);
    assert.equal(s.feed(buf, body.length, buf.length), 0, 'a finished scanner takes nothing more');
  });

  test('does not consume bytes after the final CRLF when they arrive in the same piece as its last byte', () => {
    const body = '3\r\nabc\r\n0\r\n\r\n';
    const buf = bytes(`${body}XYZ`);
    for (let cut = 1; cut < body.length; cut++) {
      const s = new ChunkedScanner(TRAILER_LIMIT);
      const a = s.feed(buf, 0, cut);
      const b = s.feed(buf, cut, buf.length);
      assert.equal(a + b, body.length, `cut at ${cut}`);
      assert.equal(s.done, true);
    }
  });

  test('honours the start offset and end bound of feed()', () => {
    const buf = bytes('JUNK5\r\nhello\r\n0\r\n\r\nJUNK');
    const s = new ChunkedScanner(TRAILER_LIMIT, true);
    assert.equal(s.feed(buf, 4, 10), 6);
    assert.deepEqual(s.ranges, [7, 10]);
    assert.equal(s.feed(buf, 10, buf.length - 4), buf.length - 14);
    assert.deepEqual(s.ranges, [10, 12]);
    assert.equal(s.done, true);
  });
});

describe('ChunkedScanner: decode mode', () => {
  test('records payload ranges relative to the buffer of the last feed only', () => {
    const s = new ChunkedScanner(TRAILER_LIMIT, true);
    const a = bytes('3\r\nabc\r\n2\r\nde');
    assert.equal(s.feed(a, 0, a.length), a.length);
    assert.deepEqual(s.ranges, [3, 6, 11, 13]);
    const b = bytes('\r\n0\r\n\r\n');
    assert.equal(s.feed(b, 0, b.length), b.length);
    assert.deepEqual(s.ranges, [], 'the previous ranges are cleared');
    assert.equal(s.payloadBytes, 5);
    assert.equal(s.done, true);
  });

  test('without decode there are no ranges, but payload bytes are still counted', () => {
    const s = new ChunkedScanner(TRAILER_LIMIT);
    const b = bytes('3\r\nabc\r\n0\r\n\r\n');
    assert.equal(s.feed(b, 0, b.length), b.length);
    assert.equal(s.ranges, null);
    assert.equal(s.payloadBytes, 3);
  });
});

const MALFORMED: [string, string][] = [
  // chunk size
  ['a non-hex size', 'g\r\nhello\r\n0\r\n\r\n'],
  ['a size followed by a non-hex character', '5x\r\nhello\r\n0\r\n\r\n'],
  ['a "0x" prefixed size', '0x5\r\nhello\r\n0\r\n\r\n'],
  ['a negative size', '-5\r\nhello\r\n0\r\n\r\n'],
  ['a plus-signed size', '+5\r\nhello\r\n0\r\n\r\n'],
  ['an empty size line', '\r\nhello\r\n0\r\n\r\n'],
  ['whitespace before the size', ' 5\r\nhello\r\n0\r\n\r\n'],
  ['whitespace after the size', '5 \r\nhello\r\n0\r\n\r\n'],
  ['an extension without a size', ';a=b\r\n0\r\n\r\n'],
  ['a size of 14 hex digits (overflow guard)', '10000000000000\r\n'],
  ['a size of 14 hex digits even with leading zeros', '00000000000005\r\nhello\r\n0\r\n\r\n'],
  ['a size of 17 hex digits', 'ffffffffffffffff1\r\n'],
  // line endings
  ['an LF-only size line', '5\nhello\r\n0\r\n\r\n'],
  ['a CR not followed by LF after the size', '5\rXhello\r\n0\r\n\r\n'],
  ['an LF-only line after the data', '5\r\nhello\n0\r\n\r\n'],
  ['an LF-only last-chunk line', '5\r\nhello\r\n0\n\r\n'],
  ['an LF-only final line', '0\r\n\n'],
  ['a CR CR final line', '0\r\n\r\r\n'],
  ['an LF-only trailer line', '0\r\nX: y\n\r\n'],
  ['an LF-only extension line', '5;a=b\nhello\r\n0\r\n\r\n'],
  // data framing
  ['more data than the size says (no CRLF after the data)', '3\r\nhello\r\n0\r\n\r\n'],
  ['the next size directly after the data', '5\r\nhello0\r\n\r\n'],
  ['a CR without LF after the data', '5\r\nhello\rX0\r\n\r\n'],
  // extensions
  ['a NUL in an extension', '5;a=\x00\r\nhello\r\n0\r\n\r\n'],
  ['a DEL in an extension', '5;a\x7f\r\nhello\r\n0\r\n\r\n'],
  ['an ESC in an extension', '5;a=\x1b\r\nhello\r\n0\r\n\r\n'],
  ['a bare CR in an extension', '5;a\rb\r\nhello\r\n0\r\n\r\n'],
  ['an extension over 4096 bytes', `5;${'a'.repeat(4097)}\r\nhello\r\n0\r\n\r\n`],
  // trailers
  ['obs-fold in the trailers (SP)', '0\r\nX: a\r\n b\r\n\r\n'],
  ['obs-fold in the trailers (HTAB)', '0\r\nX: a\r\n\tb\r\n\r\n'],
  ['a trailer line starting with SP', '0\r\n X: a\r\n\r\n'],
  ['whitespace between trailer name and colon', '0\r\nX : a\r\n\r\n'],
  ['a trailer line without a colon', '0\r\nX\r\n\r\n'],
  ['an empty trailer name', '0\r\n: a\r\n\r\n'],
  ['a NUL in a trailer value', '0\r\nX: a\x00\r\n\r\n'],
  ['a bare CR in a trailer value', '0\r\nX: a\rb\r\n\r\n'],
  ['a non-token byte in a trailer name', '0\r\nX\xe9: a\r\n\r\n'],
  ['trailers over the trailer limit', `0\r\nX: ${'v'.repeat(TRAILER_LIMIT)}\r\n\r\n`],
];

describe('ChunkedScanner: malformed bodies', () => {
  for (const [name, body] of MALFORMED) {
    test(`rejects ${name}, fed whole and split at every byte boundary`, () => {
      const whole = run(body);
      assert.equal(whole.consumed, -1, 'fed whole');
      assert.equal(whole.done, false);
      for (const cuts of splits(bytes(body).length)) {
        const o = run(body, cuts);
        assert.equal(o.consumed, -1, `cuts ${cuts.length > 1 ? 'byte-by-byte' : cuts.join(',')}`);
        assert.equal(o.done, false);
      }
    });
  }

  test('accepts 13 hex digits, the largest size it allows', () => {
    const s = new ChunkedScanner(TRAILER_LIMIT);
    const b = bytes('fffffffffffff\r\nabc');
    assert.equal(s.feed(b, 0, b.length), b.length);
    assert.equal(s.done, false);
  });

  test('trailers within the limit are accepted', () => {
    const body = `0\r\nX:${'v'.repeat(TRAILER_LIMIT - 10)}\r\n\r\n`;
    const o = run(body);
    assert.equal(o.consumed, body.length);
    assert.equal(o.done, true);
  });
});
