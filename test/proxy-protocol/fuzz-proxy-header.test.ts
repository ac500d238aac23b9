/**
 * Property-based fuzzing of the PROXY protocol codec (src/proxy-protocol):
 *  - arbitrary bytes (often behind a valid start, to get past the signatures) never make the
 *    parser throw, and its answers over growing prefixes of the same bytes are consistent: 'more'
 *    until a decision, which then never changes;
 *  - headers encoded from arbitrary addresses, ports and TLVs parse back to the same fields (the
 *    expected addresses worked out with net.SocketAddress, not with the codec's own formatting),
 *    followed by arbitrary application bytes and fed in arbitrary chunks;
 *  - one byte of a valid v2 header changed never makes the parser throw, and with a CRC32C TLV a
 *    changed address is always caught.
 *
 * Reproducible by default (fixed seed); FUZZ_SEED picks another seed, FUZZ_RUNS the runs per
 * property (FUZZ_PATH, with the seed of a failure report, replays just the shrunk counterexample).
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { isIPv4, SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.ts';
import {
  encodeProxyHeaderV1,
  encodeProxyHeaderV2,
  formatIPv6,
  type ProxyAddress,
  type ProxyHeader,
  type ProxyTlv,
} from '../../src/proxy-protocol/proxy-header.ts';
import {
  type ParseResult,
  PROXY_V2_DEFAULT_MAX_BYTES,
  parseProxyHeader,
} from '../../src/proxy-protocol/proxy-header-parser.ts';

const params = fuzzParams(0x6d7867, 2000);

const SIG = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const ERRORS = new Set(['proxy_protocol_missing', 'proxy_protocol_malformed', 'proxy_protocol_too_large']);

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Up to maxLength bytes, lengths spread over the whole range (fast-check's default keeps them near 10). */
const bytes = (maxLength: number) => fc.uint8Array({ maxLength, size: 'max' }).map((a) => Buffer.from(a));

/** 16 bytes, zero groups common (to exercise "::"), sometimes mapped or compatible IPv4. */
const ipv6Bytes = fc
  .tuple(
    fc.array(fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, fc.integer({ min: 0, max: 0xffff })), {
      minLength: 8,
      maxLength: 8,
    }),
    fc.constantFrom('as is', 'as is', 'mapped', 'compatible'),
  )
  .map(([generated, kind]) => {
    const words = [...generated]; // not in place: the shrinker reuses generated values
    if (kind === 'mapped') words.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
    if (kind === 'compatible') words.splice(0, 6, 0, 0, 0, 0, 0, 0);
    const b = Buffer.alloc(16);
    for (let i = 0; i < 8; i++) b.writeUInt16BE(words[i]!, 2 * i);
    return b;
  });

/** An address as a caller might give it: IPv4, IPv6 in any spelling, IPv4-mapped IPv6. */
const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4().map((a) => `::ffff:${a}`),
  fc.ipV4().map((a) => `::FFFF:${a}`),
  ipv6Bytes.map((b) => formatIPv6(b, 0)),
  ipv6Bytes.map((b) => b.toString('hex').replace(/(....)(?!$)/g, '$1:')),
);
const port = fc.oneof(fc.constantFrom(0, 1, 80, 443, 65535), fc.integer({ min: 0, max: 65535 }));
const endpoint: fc.Arbitrary<ProxyAddress> = fc.record({ address, port });

const tlv: fc.Arbitrary<ProxyTlv> = fc
  .record({
    type: fc.oneof(fc.constantFrom(0x01, 0x02, 0x04, 0x05, 0x20, 0x30, 0xe0), fc.integer({ min: 0, max: 0xff })),
    value: fc.oneof({ weight: 4, arbitrary: bytes(40) }, bytes(700)),
  })
  .filter((t) => t.type !== 0x03) // CRC32C: added by the encoder's option only
  .map((t) => ({ type: t.type, value: t.value })); // fc.record's objects have no prototype

/** Bytes the v1 parser has to look at closely: digits, hex, separators, CR, LF, and a few others. */
const v1Text = (maxLength: number) =>
  fc
    .array(fc.constantFrom(...'0123456789abcdefABCDEF.: \r\n%-x\0'), { maxLength, size: 'max' })
    .map((c) => Buffer.from(c.join(''), 'latin1'));

/** A valid v1 line with one byte changed, inserted or removed, and maybe application bytes after it. */
const mutatedV1 = fc
  .tuple(endpoint, endpoint, fc.nat(), fc.constantFrom('change', 'insert', 'remove'), v1Text(1), bytes(8))
  .map(([src, dst, at, how, c, app]) => {
    const line = encodeProxyHeaderV1(src, dst);
    const i = at % line.length;
    const b = c.length > 0 ? c : Buffer.from([0x20]);
    if (how === 'change') line[i] = b[0]!;
    const head = line.subarray(0, i);
    const tail = line.subarray(how === 'remove' ? i + 1 : i);
    return Buffer.concat(how === 'insert' ? [head, b, tail, app] : [head, tail, app]);
  });

/** Bytes, mostly behind a start the parser accepts, so that they reach past the signatures. */
const probe = fc.oneof(
  bytes(280),
  fc
    .tuple(
      fc.constantFrom('P', 'PROXY ', 'PROXY TCP4 ', 'PROXY TCP6 ', 'PROXY UNKNOWN', 'PROXY TCP4 1.2.3.4 5.6.7.8 '),
      fc.oneof(v1Text(120), bytes(120)),
    )
    .map(([start, rest]) => Buffer.concat([Buffer.from(start, 'latin1'), rest])),
  mutatedV1,
  fc
    .tuple(
      fc.constantFrom(0x21, 0x21, 0x20, 0x20, 0x00, 0x11, 0x22),
      fc.constantFrom(0x00, 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x10, 0x13, 0x41),
      fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: 60 }) },
        fc.integer({ min: 0, max: 260 }),
        fc.integer({ min: 0, max: 0xffff }),
      ),
      bytes(280),
    )
    .map(([verCmd, fam, len, rest]) => Buffer.concat([SIG, Buffer.from([verCmd, fam, len >> 8, len & 0xff]), rest])),
  fc.tuple(fc.integer({ min: 1, max: 13 }), bytes(4)).map(([n, rest]) => Buffer.concat([SIG.subarray(0, n), rest])),
);

/** Cut points: the sizes of the successive reads. */
const chunks = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 });

// ---------------------------------------------------------------------------------------------
// Oracles

/** What the parser should report for an address: Node's canonical form. */
function canonical(a: string): string {
  return isIPv4(a) ? a : new SocketAddress({ address: a, family: 'ipv6' }).address;
}

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/;

/** The family and the two addresses a sender must put in the header (mapped IPv4 as IPv4 when it can). */
function expectedAddresses(src: ProxyAddress, dst: ProxyAddress) {
  const s = canonical(src.address);
  const d = canonical(dst.address);
  const s4 = isIPv4(s) ? s : MAPPED.exec(s)?.[1];
  const d4 = isIPv4(d) ? d : MAPPED.exec(d)?.[1];
  if (s4 !== undefined && d4 !== undefined) {
    return {
      family: 'tcp4' as const,
      source: { address: s4, port: src.port },
      destination: { address: d4, port: dst.port },
    };
  }
  const six = (a: string) => (isIPv4(a) ? `::ffff:${a}` : a);
  return {
    family: 'tcp6' as const,
    source: { address: six(s), port: src.port },
    destination: { address: six(d), port: dst.port },
  };
}

function check(r: ParseResult, length: number): void {
  if (r.kind === 'error') {
    assert.ok(ERRORS.has(r.code), r.code);
    assert.equal(typeof r.message, 'string');
  } else if (r.kind === 'done') {
    assert.ok(r.consumed > 0 && r.consumed <= length, `consumed ${r.consumed} of ${length}`);
    const h = r.header;
    assert.ok(h.version === 1 || h.version === 2);
    for (const a of [h.source, h.destination]) {
      if (a !== null) assert.ok(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535);
    }
    assert.equal(h.source === null, h.destination === null);
    assert.equal(h.source === null, h.family === 'unknown');
    if (h.version === 2) {
      // What the TLVs do not account for is one of the address block sizes.
      const tlvBytes = h.tlvs.reduce((n, t) => n + 3 + t.value.length, 0);
      assert.ok([0, 12, 36, 216].includes(r.consumed - 16 - tlvBytes), `${r.consumed} bytes, TLVs ${tlvBytes}`);
    } else {
      assert.ok(r.consumed <= 107 && h.tlvs.length === 0);
    }
  } else {
    assert.equal(r.kind, 'more');
  }
}

/** Feeds `whole` as successive reads of the given sizes, as a listener accumulating them would. */
function feed(whole: Buffer, sizes: number[], headerLength: number, expected: ProxyHeader): void {
  let have = 0;
  let i = 0;
  while (have < whole.length) {
    have = Math.min(whole.length, have + sizes[i++ % sizes.length]!);
    const r = parseProxyHeader(whole.subarray(0, have));
    if (have < headerLength) {
      assert.deepEqual(r, { kind: 'more' }, `${have} of ${headerLength}`);
      continue;
    }
    assert.equal(r.kind, 'done', JSON.stringify(r));
    assert.equal(r.kind === 'done' && r.consumed, headerLength);
    assert.deepEqual(r.kind === 'done' && r.header, expected);
    return;
  }
  assert.fail('never done');
}

// ---------------------------------------------------------------------------------------------

describe('PROXY header fuzz', () => {
  test('formatIPv6 writes what net.SocketAddress writes', () => {
    fc.assert(
      fc.property(ipv6Bytes, (b) => {
        const hex = b.toString('hex').replace(/(....)(?!$)/g, '$1:');
        assert.equal(formatIPv6(b, 0), new SocketAddress({ address: hex, family: 'ipv6' }).address);
      }),
      params(),
    );
  });

  test('arbitrary bytes: no throw, one of three answers, stable over growing prefixes', () => {
    fc.assert(
      fc.property(probe, fc.constantFrom(undefined, 16, 40, 300, 65551), (buf, maxV2Bytes) => {
        const opts = maxV2Bytes === undefined ? undefined : { maxV2Bytes };
        const before = Buffer.from(buf);
        const all = parseProxyHeader(buf, opts);
        check(all, buf.length);
        let decided: ParseResult | null = null;
        for (let k = 0; k <= buf.length; k++) {
          const r = parseProxyHeader(buf.subarray(0, k), opts);
          check(r, k);
          if (decided === null) {
            if (r.kind !== 'more') decided = r;
          } else if (decided.kind === 'error') {
            assert.equal(r.kind === 'error' && r.code, decided.code, `at ${k}: ${JSON.stringify(r)}`);
          } else {
            assert.deepEqual(r, decided, `at ${k}`);
          }
        }
        if (decided === null) assert.deepEqual(all, { kind: 'more' });
        assert.deepEqual(buf, before);
      }),
      params(),
    );
  });

  test('v1 round trip, with application bytes after it, in chunks', () => {
    fc.assert(
      fc.property(endpoint, endpoint, bytes(64), chunks, (src, dst, app, sizes) => {
        const hdr = encodeProxyHeaderV1(src, dst);
        assert.ok(hdr.length <= 107);
        const expected: ProxyHeader = { version: 1, command: 'proxy', ...expectedAddresses(src, dst), tlvs: [] };
        const whole = Buffer.concat([hdr, app]);
        const r = parseProxyHeader(whole);
        assert.deepEqual(r, { kind: 'done', header: expected, consumed: hdr.length });
        feed(whole, sizes, hdr.length, expected);
        assert.deepEqual(whole.subarray(hdr.length), app);
      }),
      params(),
    );
  });

  test('v2 round trip: PROXY and LOCAL, TLVs, CRC32C, application bytes after it, in chunks', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('proxy' as const, 'local' as const),
        endpoint,
        endpoint,
        fc.array(tlv, { maxLength: 6 }),
        fc.boolean(),
        bytes(64),
        chunks,
        (command, src, dst, tlvs, crc, app, sizes) => {
          const hdr = encodeProxyHeaderV2({ command, source: src, destination: dst, tlvs, crc32c: crc });
          const addresses =
            command === 'proxy'
              ? expectedAddresses(src, dst)
              : { family: 'unknown' as const, source: null, destination: null };
          const got = [...tlvs];
          if (crc) got.push({ type: 0x03, value: Buffer.from(hdr.subarray(hdr.length - 4)) });
          const expected: ProxyHeader = { version: 2, command, ...addresses, tlvs: got };
          const whole = Buffer.concat([hdr, app]);
          const r = parseProxyHeader(whole, { maxV2Bytes: 65551 });
          assert.deepEqual(r, { kind: 'done', header: expected, consumed: hdr.length });
          if (hdr.length <= PROXY_V2_DEFAULT_MAX_BYTES) {
            feed(whole, sizes, hdr.length, expected);
          } else {
            const big = parseProxyHeader(whole);
            assert.equal(big.kind === 'error' && big.code, 'proxy_protocol_too_large');
          }
          assert.deepEqual(whole.subarray(hdr.length), app);
        },
      ),
      params(),
    );
  });

  test('one byte of a valid v2 header changed: no throw; with CRC32C, a changed address is caught', () => {
    fc.assert(
      fc.property(
        endpoint,
        endpoint,
        fc.array(tlv, { maxLength: 3 }),
        fc.boolean(),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        bytes(16),
        (src, dst, tlvs, crc, at, xor, app) => {
          const hdr = encodeProxyHeaderV2({ command: 'proxy', source: src, destination: dst, tlvs, crc32c: crc });
          const i = at % hdr.length;
          const bad = Buffer.concat([hdr, app]);
          bad[i]! ^= xor;
          const r = parseProxyHeader(bad, { maxV2Bytes: 65551 });
          check(r, bad.length);
          const addrEnd = hdr[13] === 0x11 ? 28 : 52;
          if (crc && i >= 16 && i < addrEnd) {
            assert.equal(r.kind === 'error' && r.code, 'proxy_protocol_malformed', JSON.stringify(r));
          }
          for (let k = 0; k < bad.length; k += 7) check(parseProxyHeader(bad.subarray(0, k)), k);
        },
      ),
      params(),
    );
  });
});
