/**
 * QUIC varints (RFC 9000 §16, with the examples of Appendix A.1) and the capsule parser of RFC 9297
 * as CONNECT-UDP uses it: chunks split anywhere, many capsules per chunk, unknown types skipped as
 * they arrive, foreign context ids dropped, and the two errors reported once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  CAPSULE_DATAGRAM,
  CapsuleParser,
  type CapsuleErrorCode,
  type CapsuleParserOptions,
  DEFAULT_MAX_CAPSULE_BYTES,
  encodeCapsule,
  encodeDatagramCapsule,
} from '../../src/tunnel/capsule.ts';
import {
  encodeVarint,
  encodeVarintBigInt,
  readVarint,
  readVarintBigInt,
  VARINT_MAX,
  VARINT_NEED_MORE,
  VARINT_UNSAFE,
  varintLength,
  varintSizeAt,
  writeVarint,
} from '../../src/tunnel/quic-varint.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('QUIC varint', () => {
  test('decodes the examples of RFC 9000 Appendix A.1', () => {
    const eight = hex('c2197c5eff14e88c');
    assert.equal(readVarintBigInt(eight, 0), 151288809941952652n);
    // Beyond 2^53-1: the number API refuses to round it.
    assert.equal(readVarint(eight, 0), VARINT_UNSAFE);
    assert.equal(varintSizeAt(eight, 0), 8);

    const cases: [string, number, number][] = [
      ['9d7f3e7d', 494878333, 4],
      ['7bbd', 15293, 2],
      ['25', 37, 1],
      ['4025', 37, 2], // not minimal, still 37
    ];
    for (const [bytes, value, size] of cases) {
      const buf = hex(bytes);
      assert.equal(readVarint(buf, 0), value, bytes);
      assert.equal(varintSizeAt(buf, 0), size, bytes);
      assert.equal(readVarintBigInt(buf, 0), BigInt(value), bytes);
    }
  });

  test('encodes the RFC examples minimally', () => {
    assert.deepEqual(encodeVarint(494878333), hex('9d7f3e7d'));
    assert.deepEqual(encodeVarint(15293), hex('7bbd'));
    assert.deepEqual(encodeVarint(37), hex('25'));
    assert.deepEqual(encodeVarintBigInt(151288809941952652n), hex('c2197c5eff14e88c'));
  });

  test('round-trips at every length boundary', () => {
    const cases: [number, number][] = [
      [0, 1],
      [63, 1],
      [64, 2],
      [16383, 2],
      [16384, 4],
      [2 ** 30 - 1, 4],
      [2 ** 30, 8],
      [2 ** 32 - 1, 8],
      [2 ** 32, 8],
      [2 ** 31 + 1, 8], // the low word's top bit set
      [Number.MAX_SAFE_INTEGER, 8],
    ];
    for (const [value, size] of cases) {
      assert.equal(varintLength(value), size, `${value}`);
      const buf = encodeVarint(value);
      assert.equal(buf.length, size, `${value}`);
      assert.equal(varintSizeAt(buf, 0), size, `${value}`);
      assert.equal(readVarint(buf, 0), value, `${value}`);
      assert.equal(readVarintBigInt(buf, 0), BigInt(value), `${value}`);
      assert.deepEqual(encodeVarintBigInt(BigInt(value)), buf, `${value}`);
    }
  });

  test('reads at an offset and writes into a larger buffer', () => {
    const buf = Buffer.alloc(20, 0xee);
    let pos = writeVarint(buf, 3, 16384);
    assert.equal(pos, 7);
    pos = writeVarint(buf, pos, 5);
    assert.equal(pos, 8);
    assert.equal(buf[2], 0xee);
    assert.equal(buf[8], 0xee);
    assert.equal(readVarint(buf, 3), 16384);
    assert.equal(readVarint(buf, 7), 5);
  });

  test('reports a truncated varint as need-more at every cut, and honours `end`', () => {
    for (const value of [64, 16384, 2 ** 30, Number.MAX_SAFE_INTEGER]) {
      const buf = encodeVarint(value);
      for (let cut = 0; cut < buf.length; cut++) {
        assert.equal(readVarint(buf.subarray(0, cut), 0), VARINT_NEED_MORE, `${value} cut at ${cut}`);
        assert.equal(readVarint(buf, 0, cut), VARINT_NEED_MORE, `${value} end at ${cut}`);
        assert.equal(readVarintBigInt(buf, 0, cut), null);
      }
    }
    assert.equal(readVarint(Buffer.alloc(0), 0), VARINT_NEED_MORE);
    assert.equal(readVarint(hex('25'), 1), VARINT_NEED_MORE);
  });

  test('the 8-byte edge of exact numbers: 2^53-1 is a value, 2^53 and 2^62-1 are VARINT_UNSAFE', () => {
    assert.equal(readVarint(encodeVarintBigInt(2n ** 53n - 1n), 0), Number.MAX_SAFE_INTEGER);
    assert.equal(readVarint(encodeVarintBigInt(2n ** 53n), 0), VARINT_UNSAFE);
    const max = encodeVarintBigInt(VARINT_MAX);
    assert.deepEqual(max, hex('ffffffffffffffff'));
    assert.equal(readVarint(max, 0), VARINT_UNSAFE);
    assert.equal(readVarintBigInt(max, 0), VARINT_MAX);
  });

  test('refuses values it cannot encode', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      assert.throws(() => encodeVarint(bad), RangeError, `${bad}`);
    }
    assert.throws(() => encodeVarintBigInt(-1n), RangeError);
    assert.throws(() => encodeVarintBigInt(VARINT_MAX + 1n), RangeError);
  });

  test('round-trips random values of every size', () => {
    for (let i = 0; i < 2000; i++) {
      const bits = [6, 14, 30, 53][i % 4]!;
      const value = Math.floor(Math.random() * 2 ** bits);
      assert.equal(readVarint(encodeVarint(value), 0), value);
    }
  });
});

interface Collected {
  datagrams: Buffer[];
  errors: CapsuleErrorCode[];
  parser: CapsuleParser;
}

function collect(opts: Partial<CapsuleParserOptions> = {}): Collected {
  const datagrams: Buffer[] = [];
  const errors: CapsuleErrorCode[] = [];
  const parser = new CapsuleParser({
    onDatagram: (p) => datagrams.push(Buffer.from(p)),
    onError: (code) => errors.push(code),
    ...opts,
  });
  return { datagrams, errors, parser };
}

/** Feeds `wire` cut at the given offsets. */
function feedSplit(parser: CapsuleParser, wire: Buffer, cuts: number[]): void {
  let from = 0;
  for (const cut of [...cuts, wire.length]) {
    parser.feed(wire.subarray(from, cut));
    from = cut;
  }
}

describe('capsule encoding', () => {
  test('a DATAGRAM capsule is type 0, length, context id 0, payload', () => {
    assert.deepEqual(encodeDatagramCapsule(Buffer.from('hi')), hex('00 03 00 6869'));
    assert.deepEqual(encodeDatagramCapsule(Buffer.alloc(0)), hex('00 01 00'));
    const big = encodeDatagramCapsule(Buffer.alloc(1200, 7));
    assert.deepEqual(big.subarray(0, 4), hex('00 44b1 00')); // 1201 = 0x4b1 in two bytes
    assert.equal(big.length, 4 + 1200);
    assert.equal(CAPSULE_DATAGRAM, 0);
  });

  test('encodeCapsule writes any type', () => {
    assert.deepEqual(encodeCapsule(0x2028d7ee, Buffer.from([1, 2])), hex('a028d7ee 02 0102'));
  });
});

describe('CapsuleParser', () => {
  test('one capsule fed byte by byte', () => {
    const payload = randomBytes(300); // a two-byte length
    const wire = encodeDatagramCapsule(payload);
    const c = collect();
    for (let i = 0; i < wire.length; i++) {
      assert.equal(c.parser.atBoundary, i === 0);
      c.parser.feed(wire.subarray(i, i + 1));
    }
    assert.deepEqual(c.datagrams, [payload]);
    assert.deepEqual(c.errors, []);
    assert.equal(c.parser.atBoundary, true);
  });

  test('every split point of a sequence of capsules yields the same datagrams', () => {
    const payloads = [Buffer.from('a'), Buffer.alloc(0), randomBytes(70), randomBytes(5)];
    const wire = Buffer.concat([
      encodeDatagramCapsule(payloads[0]!),
      encodeCapsule(0x1234, randomBytes(9)),
      encodeDatagramCapsule(payloads[1]!),
      encodeDatagramCapsule(payloads[2]!),
      encodeCapsule(0x3f, Buffer.alloc(0)),
      encodeDatagramCapsule(payloads[3]!),
    ]);
    for (let a = 0; a <= wire.length; a++) {
      for (let b = a; b <= wire.length; b += 7) {
        const c = collect();
        feedSplit(c.parser, wire, [a, b]);
        assert.deepEqual(c.datagrams, payloads, `cuts ${a},${b}`);
        assert.deepEqual(c.errors, []);
        assert.equal(c.parser.skippedCapsules, 2);
      }
    }
  });

  test('many capsules in one chunk', () => {
    const payloads = Array.from({ length: 500 }, (_, i) => randomBytes(i % 130));
    const c = collect();
    c.parser.feed(Buffer.concat(payloads.map((p) => encodeDatagramCapsule(p))));
    assert.deepEqual(c.datagrams, payloads);
    assert.deepEqual(c.errors, []);
  });

  test('a whole datagram in one chunk is passed on without a copy', () => {
    const chunk = encodeDatagramCapsule(Buffer.from('view'));
    let seen: Buffer | null = null;
    const parser = new CapsuleParser({ onDatagram: (p) => (seen = p), onError: assert.fail });
    parser.feed(chunk);
    assert.ok(seen !== null);
    assert.equal((seen as Buffer).buffer, chunk.buffer);
    assert.equal((seen as Buffer).toString(), 'view');
  });

  test('an unknown capsule type is skipped across chunk boundaries', () => {
    // A long value (4-byte length) with capsules inside it: skipped as bytes, never parsed.
    const decoy = encodeDatagramCapsule(Buffer.from('not a datagram'));
    const value = Buffer.concat([decoy, randomBytes(20_000), decoy]);
    const wire = Buffer.concat([
      encodeCapsule(0x2028d7ee, value), // a 4-byte type
      encodeDatagramCapsule(Buffer.from('after')),
    ]);
    const c = collect();
    feedSplit(c.parser, wire, [1, 3, 5, 6, 100, 10_000, 20_020, wire.length - 3]);
    assert.deepEqual(c.datagrams, [Buffer.from('after')]);
    assert.equal(c.parser.skippedCapsules, 1);
    assert.deepEqual(c.errors, []);
  });

  test('a type above 2^53 is just an unknown type', () => {
    const wire = Buffer.concat([hex('ffffffffffffffff 03 010203'), encodeDatagramCapsule(Buffer.from('x'))]);
    const c = collect();
    feedSplit(c.parser, wire, [4, 9]);
    assert.deepEqual(c.datagrams, [Buffer.from('x')]);
    assert.equal(c.parser.skippedCapsules, 1);
  });

  test('a datagram with a non-zero context id is dropped and counted', () => {
    const c = collect();
    c.parser.feed(
      Buffer.concat([
        encodeCapsule(CAPSULE_DATAGRAM, hex('02 aabb')), // context 2
        encodeCapsule(CAPSULE_DATAGRAM, hex('4001 aa')), // context 1, two bytes
        encodeCapsule(CAPSULE_DATAGRAM, hex('ffffffffffffffff aa')), // context 2^62-1
        encodeCapsule(CAPSULE_DATAGRAM, hex('4000 cc')), // context 0, not minimal: kept
        encodeDatagramCapsule(Buffer.from('ok')),
      ]),
    );
    assert.deepEqual(c.datagrams, [hex('cc'), Buffer.from('ok')]);
    assert.equal(c.parser.droppedDatagrams, 3);
    assert.deepEqual(c.errors, []);
  });

  test('a capsule longer than maxCapsuleBytes is capsule_too_large, reported once', () => {
    const c = collect({ maxCapsuleBytes: 100 });
    c.parser.feed(encodeDatagramCapsule(Buffer.alloc(99))); // value 100: the limit itself is fine
    assert.equal(c.datagrams.length, 1);
    // The header alone decides, before any of the value arrives; split in the length varint.
    const over = encodeDatagramCapsule(Buffer.alloc(100));
    c.parser.feed(over.subarray(0, 2));
    assert.deepEqual(c.errors, []);
    c.parser.feed(over.subarray(2, 3));
    assert.deepEqual(c.errors, ['capsule_too_large']);
    c.parser.feed(over.subarray(3));
    c.parser.feed(encodeDatagramCapsule(Buffer.from('ignored')));
    c.parser.feed(hex('00 00'));
    assert.deepEqual(c.errors, ['capsule_too_large']);
    assert.equal(c.datagrams.length, 1);
    assert.equal(c.parser.stopped, true);
  });

  test('the limit applies to unknown types too, and to lengths above 2^53', () => {
    const a = collect({ maxCapsuleBytes: 10 });
    a.parser.feed(encodeCapsule(0x77, Buffer.alloc(11)));
    assert.deepEqual(a.errors, ['capsule_too_large']);

    const b = collect();
    b.parser.feed(hex('00 ffffffffffffffff 00'));
    assert.deepEqual(b.errors, ['capsule_too_large']);

    const d = collect();
    assert.equal(DEFAULT_MAX_CAPSULE_BYTES, 65_551);
    d.parser.feed(encodeDatagramCapsule(Buffer.alloc(65_535)));
    assert.equal(d.datagrams.length, 1);
    d.parser.feed(encodeCapsule(CAPSULE_DATAGRAM, Buffer.alloc(DEFAULT_MAX_CAPSULE_BYTES + 1)));
    assert.deepEqual(d.errors, ['capsule_too_large']);
  });

  test('a DATAGRAM capsule with an empty value is malformed_capsule', () => {
    const c = collect();
    c.parser.feed(Buffer.concat([encodeDatagramCapsule(Buffer.from('ok')), hex('00 00'), hex('00 01 00')]));
    assert.deepEqual(c.datagrams, [Buffer.from('ok')]);
    assert.deepEqual(c.errors, ['malformed_capsule']);
  });

  test('a context id truncated by the capsule end is malformed_capsule, whole or split', () => {
    // Length 1, and the value's first byte announces a two-byte varint.
    const wire = Buffer.concat([hex('00 01 40'), encodeDatagramCapsule(Buffer.from('ignored'))]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const c = collect();
      feedSplit(c.parser, wire, [cut]);
      assert.deepEqual(c.errors, ['malformed_capsule'], `cut at ${cut}`);
      assert.deepEqual(c.datagrams, []);
    }
    const eight = collect();
    eight.parser.feed(hex('00 04 c0000000'));
    assert.deepEqual(eight.errors, ['malformed_capsule']);
  });

  test('a datagram split across chunks is gathered whole', () => {
    const payload = randomBytes(1200);
    const wire = encodeDatagramCapsule(payload);
    const c = collect();
    feedSplit(c.parser, wire, [3, 4, 500, 501, 1203]);
    assert.deepEqual(c.datagrams, [payload]);
    assert.equal(c.parser.atBoundary, true);
  });

  test('atBoundary is false inside a header, a datagram and a skipped value', () => {
    const c = collect();
    c.parser.feed(hex('00'));
    assert.equal(c.parser.atBoundary, false);
    c.parser.feed(hex('03 00'));
    assert.equal(c.parser.atBoundary, false);
    c.parser.feed(hex('aabb'));
    assert.equal(c.parser.atBoundary, true);
    c.parser.feed(hex('21 02 aa'));
    assert.equal(c.parser.atBoundary, false);
    c.parser.feed(hex('aa'));
    assert.equal(c.parser.atBoundary, true);
  });

  test('stop() from within onDatagram ends parsing of the same chunk', () => {
    const seen: string[] = [];
    const parser: CapsuleParser = new CapsuleParser({
      onDatagram: (p) => {
        seen.push(p.toString());
        parser.stop();
      },
      onError: assert.fail,
    });
    parser.feed(Buffer.concat([encodeDatagramCapsule(Buffer.from('one')), encodeDatagramCapsule(Buffer.from('two'))]));
    assert.deepEqual(seen, ['one']);
  });

  test('random streams of capsules fed in random chunks', () => {
    for (let round = 0; round < 50; round++) {
      const payloads: Buffer[] = [];
      const parts: Buffer[] = [];
      for (let i = 0; i < 40; i++) {
        if (Math.random() < 0.2) {
          parts.push(
            encodeCapsule(1 + Math.floor(Math.random() * 2 ** 20), randomBytes(Math.floor(Math.random() * 300))),
          );
        } else {
          const p = randomBytes(Math.floor(Math.random() * 2000));
          payloads.push(p);
          parts.push(encodeDatagramCapsule(p));
        }
      }
      const wire = Buffer.concat(parts);
      const cuts: number[] = [];
      for (let at = 0; at < wire.length; at += 1 + Math.floor(Math.random() * 700)) cuts.push(at);
      const c = collect();
      feedSplit(c.parser, wire, cuts);
      assert.deepEqual(c.datagrams, payloads);
      assert.deepEqual(c.errors, []);
      assert.equal(c.parser.atBoundary, true);
    }
  });
});
