/**
 * The PROXY protocol codec (src/proxy-protocol): encoders against the spec's bytes, round trips,
 * the parser fed every prefix of a header followed by application bytes, and each error code.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import {
  crc32c,
  encodeProxyHeaderV1,
  encodeProxyHeaderV1Unknown,
  encodeProxyHeaderV2,
  formatIPv6,
  PP2_TYPE_ALPN,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_CRC32C,
  PP2_TYPE_NOOP,
  PP2_TYPE_UNIQUE_ID,
  type ProxyHeader,
  parseIPv6Into,
} from '../../src/proxy-protocol/proxy-header.ts';
import {
  type ParseResult,
  type ProxyProtocolError,
  parseProxyHeader,
} from '../../src/proxy-protocol/proxy-header-parser.ts';

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const HTTP = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1');
const TLS = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

const ascii = (s: string) => Buffer.from(s, 'latin1');

/** A v2 header by hand: signature, the two command/family bytes, a length (default: the body's), a body. */
function v2(verCmd: number, fam: number, body: number[] | Buffer, len = body.length): Buffer {
  return Buffer.concat([Buffer.from(SIG), Buffer.from([verCmd, fam, len >> 8, len & 0xff]), Buffer.from(body)]);
}

function done(r: ParseResult): { header: ProxyHeader; consumed: number } {
  if (r.kind !== 'done') assert.fail(`expected done, got ${JSON.stringify(r)}`);
  return r;
}

function header(h: Partial<ProxyHeader>): ProxyHeader {
  return { version: 2, command: 'proxy', family: 'unknown', source: null, destination: null, tlvs: [], ...h };
}

/** Every prefix of header + app: 'more' until the header is whole, then the same 'done'; input untouched. */
function everySplit(hdr: Buffer, app: Buffer, expected: ProxyHeader): void {
  const whole = Buffer.concat([hdr, app]);
  const before = Buffer.from(whole);
  for (let k = 0; k <= whole.length; k++) {
    const r = parseProxyHeader(whole.subarray(0, k));
    if (k < hdr.length) {
      assert.deepEqual(r, { kind: 'more' }, `${k} of ${hdr.length} bytes`);
    } else {
      const d = done(r);
      assert.equal(d.consumed, hdr.length, `consumed at ${k}`);
      assert.deepEqual(d.header, expected, `header at ${k}`);
    }
  }
  assert.deepEqual(whole, before, 'the input is left as it was');
  assert.deepEqual(whole.subarray(hdr.length), app);
}

function expectError(input: Buffer, code: ProxyProtocolError, decidedAt?: number): void {
  const r = parseProxyHeader(input);
  assert.equal(r.kind, 'error', `${JSON.stringify(input.toString('latin1'))}: ${JSON.stringify(r)}`);
  assert.equal(r.kind === 'error' && r.code, code, JSON.stringify(r));
  if (decidedAt !== undefined) {
    assert.deepEqual(parseProxyHeader(input.subarray(0, decidedAt - 1)), { kind: 'more' }, `before byte ${decidedAt}`);
    const at = parseProxyHeader(input.subarray(0, decidedAt));
    assert.equal(at.kind === 'error' && at.code, code, `decided at byte ${decidedAt}: ${JSON.stringify(at)}`);
  }
}

describe('CRC32C', () => {
  test('check value of "123456789" (RFC 3720 B.4) and chaining', () => {
    assert.equal(crc32c(ascii('123456789')), 0xe3069283);
    assert.equal(crc32c(ascii('123456789'), 4, 9, crc32c(ascii('1234'))), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa);
  });
});

describe('IPv6 text', () => {
  test('accepted forms, canonical output', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['::1', '::1'],
      ['1::', '1::'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['0:0:0:0:0:ffff:10.0.0.1', '::ffff:10.0.0.1'],
      ['::ffff:a00:1', '::ffff:10.0.0.1'],
      ['1:0:0:1:0:0:0:1', '1:0:0:1::1'],
      ['0001:0002:0003:0004:0005:0006:0007:0008', '1:2:3:4:5:6:7:8'],
      ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0'],
    ];
    const b = new Uint8Array(16);
    for (const [input, canonical] of cases) {
      assert.ok(parseIPv6Into(input, b, 0), input);
      assert.equal(formatIPv6(b, 0), canonical, input);
    }
  });

  test('rejected forms', () => {
    const b = new Uint8Array(16);
    for (const bad of [
      '',
      ':',
      ':::',
      ':1::',
      '1:',
      '1::2::3',
      '12345::',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7::8',
      '1:2:3:4:5:6:7',
      'fe80::1%eth0',
      '::ffff:01.0.0.1',
      '::ffff:1.2.3',
      '::1.2.3.4:5',
      '1.2.3.4',
      'g::',
      ' ::1',
    ]) {
      assert.equal(parseIPv6Into(bad, b, 0), false, JSON.stringify(bad));
    }
  });
});

describe('v1 encoding', () => {
  test("the spec's example line, byte for byte", () => {
    const b = encodeProxyHeaderV1({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 });
    assert.equal(b.toString('latin1'), 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n');
  });

  test('IPv4-mapped addresses go as TCP4; mixed families as TCP6 with the IPv4 end mapped', () => {
    const a = encodeProxyHeaderV1({ address: '::ffff:10.0.0.1', port: 1 }, { address: '::FFFF:10.0.0.2', port: 2 });
    assert.equal(a.toString('latin1'), 'PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n');
    const b = encodeProxyHeaderV1({ address: '::ffff:10.0.0.1', port: 1 }, { address: '10.0.0.2', port: 2 });
    assert.equal(b.toString('latin1'), 'PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n');
    const c = encodeProxyHeaderV1({ address: '10.0.0.1', port: 65535 }, { address: '2001:DB8::1', port: 0 });
    assert.equal(c.toString('latin1'), 'PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 65535 0\r\n');
    const d = encodeProxyHeaderV1({ address: 'fe80::1%eth0', port: 5 }, { address: '::1', port: 6 });
    assert.equal(d.toString('latin1'), 'PROXY TCP6 fe80::1 ::1 5 6\r\n');
  });

  test('UNKNOWN', () => {
    assert.equal(encodeProxyHeaderV1Unknown().toString('latin1'), 'PROXY UNKNOWN\r\n');
  });

  test('bad input throws', () => {
    const ok = { address: '1.2.3.4', port: 1 };
    assert.throws(() => encodeProxyHeaderV1({ address: 'example.com', port: 1 }, ok), TypeError);
    assert.throws(() => encodeProxyHeaderV1(ok, { address: '1.2.3.256', port: 1 }), TypeError);
    assert.throws(() => encodeProxyHeaderV1(ok, { address: '1.2.3.4', port: 65536 }), RangeError);
    assert.throws(() => encodeProxyHeaderV1({ address: '1.2.3.4', port: -1 }, ok), RangeError);
    assert.throws(() => encodeProxyHeaderV1({ address: '1.2.3.4', port: 1.5 }, ok), RangeError);
  });
});

describe('v2 encoding', () => {
  test('TCP over IPv4, byte for byte', () => {
    const built = v2(
      0x21,
      0x11,
      [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb], // 56324, 443
    );
    const b = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '::ffff:192.168.0.11', port: 443 },
    });
    assert.deepEqual(b, built);
    assert.equal(built.length, 28);
  });

  test('TCP over IPv6 with ALPN and authority TLVs, byte for byte', () => {
    const src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
    const dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02];
    const alpn = [PP2_TYPE_ALPN, 0, 2, 0x68, 0x32];
    const authority = [PP2_TYPE_AUTHORITY, 0, 11, ...ascii('example.com')];
    const built = v2(0x21, 0x21, [...src, ...dst, 0xdc, 0x04, 0x01, 0xbb, ...alpn, ...authority]);
    assert.equal(built.readUInt16BE(14), 36 + 5 + 14);
    const tlvs = [
      { type: PP2_TYPE_ALPN, value: ascii('h2') },
      { type: PP2_TYPE_AUTHORITY, value: ascii('example.com') },
    ];
    const b = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '2001:db8::1', port: 56324 },
      destination: { address: '2001:db8::2', port: 443 },
      tlvs,
    });
    assert.deepEqual(b, built);
    const d = done(parseProxyHeader(built));
    assert.equal(d.consumed, built.length);
    assert.deepEqual(
      d.header,
      header({
        family: 'tcp6',
        source: { address: '2001:db8::1', port: 56324 },
        destination: { address: '2001:db8::2', port: 443 },
        tlvs,
      }),
    );
  });

  test('mixed families go as IPv6, the IPv4 end mapped', () => {
    const b = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '10.0.0.1', port: 1 },
      destination: { address: '::1', port: 2 },
    });
    assert.equal(b[13], 0x21);
    assert.deepEqual(
      done(parseProxyHeader(b)).header,
      header({
        family: 'tcp6',
        source: { address: '::ffff:10.0.0.1', port: 1 },
        destination: { address: '::1', port: 2 },
      }),
    );
  });

  test('LOCAL: no addresses, AF_UNSPEC, TLVs kept', () => {
    const local = encodeProxyHeaderV2({
      command: 'local',
      source: { address: '1.2.3.4', port: 1 },
      destination: { address: '1.2.3.4', port: 2 },
    });
    assert.deepEqual(local, v2(0x20, 0x00, []));
    assert.deepEqual(done(parseProxyHeader(local)), {
      header: header({ command: 'local' }),
      consumed: 16,
      kind: 'done',
    });
    const tlvs = [{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.from([1, 2, 3]) }];
    const withTlvs = encodeProxyHeaderV2({ command: 'local', tlvs });
    assert.deepEqual(withTlvs, v2(0x20, 0x00, [PP2_TYPE_UNIQUE_ID, 0, 3, 1, 2, 3]));
    assert.deepEqual(done(parseProxyHeader(withTlvs)).header, header({ command: 'local', tlvs }));
  });

  test('CRC32C TLV: written over the header with the field zero, checked by the parser', () => {
    const b = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '192.168.0.11', port: 443 },
      crc32c: true,
    });
    assert.equal(b.length, 28 + 7);
    assert.deepEqual([...b.subarray(28, 31)], [PP2_TYPE_CRC32C, 0, 4]);
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 31);
    assert.equal(b.readUInt32BE(31), crc32c(zeroed));
    const h = done(parseProxyHeader(b)).header;
    assert.equal(h.tlvs.length, 1);
    assert.equal(h.tlvs[0]!.type, PP2_TYPE_CRC32C);
  });

  test('bad input throws', () => {
    const a = { address: '1.2.3.4', port: 1 };
    assert.throws(() => encodeProxyHeaderV2({ command: 'proxy', source: a }), TypeError);
    assert.throws(
      () => encodeProxyHeaderV2({ command: 'proxy', source: a, destination: { address: 'x', port: 1 } }),
      TypeError,
    );
    assert.throws(
      () => encodeProxyHeaderV2({ command: 'local', tlvs: [{ type: 256, value: Buffer.alloc(0) }] }),
      RangeError,
    );
    assert.throws(
      () => encodeProxyHeaderV2({ command: 'local', tlvs: [{ type: 1, value: Buffer.alloc(65536) }] }),
      RangeError,
    );
    const two = [
      { type: 1, value: Buffer.alloc(40000) },
      { type: 1, value: Buffer.alloc(30000) },
    ];
    assert.throws(() => encodeProxyHeaderV2({ command: 'local', tlvs: two }), RangeError);
    const crc = [{ type: PP2_TYPE_CRC32C, value: Buffer.alloc(4) }];
    assert.throws(() => encodeProxyHeaderV2({ command: 'local', tlvs: crc, crc32c: true }), TypeError);
  });

  test('PROXY without addresses is AF_UNSPEC', () => {
    const b = encodeProxyHeaderV2({ command: 'proxy' });
    assert.deepEqual(b, v2(0x21, 0x00, []));
    assert.deepEqual(done(parseProxyHeader(b)).header, header({}));
  });
});

describe('parser: every split point, trailing application bytes untouched', () => {
  const tcp4 = { source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } };
  const tcp6 = {
    source: { address: '2001:db8::1', port: 0 },
    destination: { address: '::ffff:10.0.0.1', port: 65535 },
  };
  const v1 = { version: 1 as const, command: 'proxy' as const, tlvs: [] };

  test('v1 TCP4 then HTTP', () => {
    everySplit(encodeProxyHeaderV1(tcp4.source, tcp4.destination), HTTP, { ...v1, family: 'tcp4', ...tcp4 });
  });

  test('v1 TCP6 then TLS', () => {
    everySplit(encodeProxyHeaderV1(tcp6.source, tcp6.destination), TLS, { ...v1, family: 'tcp6', ...tcp6 });
  });

  test('v1 UNKNOWN, short and long', () => {
    const unknown = { ...v1, family: 'unknown' as const, source: null, destination: null };
    everySplit(encodeProxyHeaderV1Unknown(), HTTP, unknown);
    const long = ascii(`PROXY UNKNOWN ${'f'.repeat(39)} ${'f'.repeat(39)} 65535 65535\r\n`);
    assert.equal(long.length, 107);
    everySplit(long, TLS, unknown);
  });

  test('v1 longest TCP6 line (104 bytes), upper-case hex', () => {
    const full = `${'FFFF:'.repeat(7)}FFFF`;
    const line = ascii(`PROXY TCP6 ${full} ${full} 65535 65535\r\n`);
    assert.equal(line.length, 104);
    const a = { address: `${'ffff:'.repeat(7)}ffff`, port: 65535 };
    everySplit(line, HTTP, { ...v1, family: 'tcp6', source: a, destination: a });
  });

  test('v2 TCP4 with TLVs and CRC, then TLS', () => {
    const tlvs = [
      { type: PP2_TYPE_ALPN, value: ascii('h2') },
      { type: PP2_TYPE_AUTHORITY, value: ascii('example.com') },
      { type: PP2_TYPE_NOOP, value: Buffer.alloc(0) },
    ];
    const b = encodeProxyHeaderV2({ command: 'proxy', ...tcp4, tlvs, crc32c: true });
    const crc = { type: PP2_TYPE_CRC32C, value: Buffer.from(b.subarray(b.length - 4)) };
    everySplit(b, TLS, header({ family: 'tcp4', ...tcp4, tlvs: [...tlvs, crc] }));
  });

  test('v2 LOCAL then HTTP', () => {
    everySplit(encodeProxyHeaderV2({ command: 'local' }), HTTP, header({ command: 'local' }));
  });

  test('TLV values are copies: the read buffer can be reused', () => {
    const b = encodeProxyHeaderV2({ command: 'local', tlvs: [{ type: PP2_TYPE_ALPN, value: ascii('h2') }] });
    const h = done(parseProxyHeader(b)).header;
    b.fill(0);
    assert.equal(h.tlvs[0]!.value.toString('latin1'), 'h2');
  });
});

describe('parser: v2 families', () => {
  test('UDP over IPv4 and IPv6', () => {
    const udp4 = v2(0x21, 0x12, [10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0x30, 0x39]);
    assert.deepEqual(
      done(parseProxyHeader(udp4)).header,
      header({
        family: 'udp4',
        source: { address: '10.0.0.1', port: 53 },
        destination: { address: '10.0.0.2', port: 12345 },
      }),
    );
    const udp6 = v2(0x21, 0x22, [...Buffer.alloc(15), 1, ...Buffer.alloc(16), 0, 1, 0, 2]);
    assert.deepEqual(
      done(parseProxyHeader(udp6)).header,
      header({ family: 'udp6', source: { address: '::1', port: 1 }, destination: { address: '::', port: 2 } }),
    );
  });

  test('AF_UNIX: paths up to their NUL, abstract names keep their leading NUL', () => {
    const body = Buffer.alloc(216 + 5);
    body.write('/run/haproxy.sock', 0, 'latin1');
    body.write('\0garbage', 17, 'latin1'); // after the terminating NUL: ignored
    body.write('\0abstract', 108, 'latin1');
    Buffer.from([PP2_TYPE_ALPN, 0, 2, 0x68, 0x31]).copy(body, 216);
    const d = done(parseProxyHeader(v2(0x21, 0x31, body)));
    assert.equal(d.consumed, 16 + 216 + 5);
    assert.deepEqual(
      d.header,
      header({
        family: 'unix',
        source: { address: '/run/haproxy.sock', port: 0 },
        destination: { address: '\0abstract', port: 0 },
        tlvs: [{ type: PP2_TYPE_ALPN, value: ascii('h1') }],
      }),
    );
  });

  test('LOCAL with a family: its address block skipped, addresses null, TLVs after it', () => {
    const b = v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, PP2_TYPE_NOOP, 0, 1, 0xaa]);
    assert.deepEqual(
      done(parseProxyHeader(b)).header,
      header({ command: 'local', tlvs: [{ type: PP2_TYPE_NOOP, value: Buffer.from([0xaa]) }] }),
    );
  });

  test('PROXY with an UNSPEC transport: family unknown, address block skipped', () => {
    const b = v2(0x21, 0x10, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    assert.deepEqual(done(parseProxyHeader(b)), { kind: 'done', header: header({}), consumed: 28 });
  });
});

describe('parser errors', () => {
  const good4 = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb];

  test('proxy_protocol_missing: HTTP, TLS, SSH fail at the first byte', () => {
    expectError(HTTP, 'proxy_protocol_missing', 1);
    expectError(ascii('GET / HTTP/1.1\r\n'), 'proxy_protocol_missing', 1);
    expectError(TLS, 'proxy_protocol_missing', 1);
    expectError(ascii('SSH-2.0-OpenSSH_9.6\r\n'), 'proxy_protocol_missing', 1);
    expectError(Buffer.from([0]), 'proxy_protocol_missing', 1);
  });

  test('proxy_protocol_missing: a signature that goes wrong later', () => {
    expectError(ascii('PROXZ TCP4'), 'proxy_protocol_missing', 5);
    expectError(ascii('PUT / HTTP/1.1\r\n'), 'proxy_protocol_missing', 2);
    expectError(ascii('PROXY\tTCP4'), 'proxy_protocol_missing', 6);
    expectError(ascii('proxy TCP4'), 'proxy_protocol_missing', 1);
    const sig = Buffer.from([...SIG, 0x21, 0x11, 0, 12, ...good4]);
    for (let i = 1; i < 12; i++) {
      const bad = Buffer.from(sig);
      bad[i]! ^= 0x40;
      expectError(bad, 'proxy_protocol_missing', i + 1);
    }
    expectError(ascii('\r\n\r\nHELLO'), 'proxy_protocol_missing', 5);
  });

  test('v1 proxy_protocol_malformed', () => {
    const bad: [string, number?][] = [
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n'],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n', 30],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n'],
      ['PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n'],
      ['PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n'],
      ['PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n'],
      ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 12],
      ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n'],
      ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 19],
      ['PROXY TCP6 1::2::3 ::1 1 2\r\n'],
      ['PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 20],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', 31],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'],
      ['PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', 7],
      ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', 7],
      ['PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', 10],
      ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', 8],
      ['PROXY UNKNOWNX\r\n', 14],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 31],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', 32],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n', 32],
      ['PROXY \r\n'],
      ['PROXY UNKNOWN\n', 14],
      [`PROXY TCP4 ${'1'.repeat(200)}`, 107],
    ];
    for (const [line, at] of bad) expectError(ascii(line), 'proxy_protocol_malformed', at);
    // 107 bytes with the CRLF is the most; anything beyond, without waiting for the rest.
    const max = ascii(`PROXY UNKNOWN ${'x'.repeat(91)}\r\n`);
    assert.equal(max.length, 107);
    assert.equal(done(parseProxyHeader(max)).consumed, 107);
    expectError(ascii(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`), 'proxy_protocol_malformed', 107);
    expectError(ascii(`PROXY UNKNOWN ${'x'.repeat(93)}\r\n`), 'proxy_protocol_malformed', 107);
  });

  test('v2 proxy_protocol_malformed', () => {
    expectError(v2(0x11, 0x11, good4), 'proxy_protocol_malformed', 13); // version 1
    expectError(v2(0x31, 0x11, good4), 'proxy_protocol_malformed', 13); // version 3
    expectError(v2(0x01, 0x11, good4), 'proxy_protocol_malformed', 13); // version 0
    expectError(v2(0x22, 0x11, good4), 'proxy_protocol_malformed', 13); // command 2
    expectError(v2(0x2f, 0x11, good4), 'proxy_protocol_malformed', 13);
    expectError(v2(0x21, 0x41, good4), 'proxy_protocol_malformed', 14); // family 4
    expectError(v2(0x21, 0x13, good4), 'proxy_protocol_malformed', 14); // transport 3
    // Address blocks longer than the length: decided from the 16 fixed bytes.
    expectError(v2(0x21, 0x11, good4, 11), 'proxy_protocol_malformed', 16);
    expectError(v2(0x21, 0x21, Buffer.alloc(36), 35), 'proxy_protocol_malformed', 16);
    expectError(v2(0x21, 0x31, Buffer.alloc(216), 215), 'proxy_protocol_malformed', 16);
    expectError(v2(0x20, 0x11, [], 0), 'proxy_protocol_malformed', 16); // LOCAL too
    // TLVs overflowing the length.
    expectError(v2(0x21, 0x11, [...good4, PP2_TYPE_ALPN, 0]), 'proxy_protocol_malformed');
    expectError(v2(0x21, 0x11, [...good4, PP2_TYPE_ALPN]), 'proxy_protocol_malformed');
    expectError(v2(0x21, 0x11, [...good4, PP2_TYPE_ALPN, 0, 3, 0x68, 0x32]), 'proxy_protocol_malformed');
    expectError(v2(0x20, 0x00, [PP2_TYPE_NOOP, 0xff, 0xff, 0]), 'proxy_protocol_malformed');
    // A length shorter than what was sent: the rest is the application's, so the TLV is cut.
    expectError(v2(0x21, 0x11, [...good4, PP2_TYPE_ALPN, 0, 2, 0x68, 0x32], 16), 'proxy_protocol_malformed');
  });

  test('v2 CRC32C: mismatch, wrong size, twice', () => {
    const good = encodeProxyHeaderV2({
      command: 'proxy',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '192.168.0.11', port: 443 },
      tlvs: [{ type: PP2_TYPE_AUTHORITY, value: ascii('example.com') }],
      crc32c: true,
    });
    done(parseProxyHeader(good));
    for (const at of [16, 20, 25, 28, 35, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 1;
      expectError(bad, 'proxy_protocol_malformed');
    }
    const crcTlv = (value: number[]) => ({ type: PP2_TYPE_CRC32C, value: Buffer.from(value) });
    expectError(encodeProxyHeaderV2({ command: 'local', tlvs: [crcTlv([0, 0, 0, 0])] }), 'proxy_protocol_malformed');
    expectError(encodeProxyHeaderV2({ command: 'local', tlvs: [crcTlv([0, 0, 0])] }), 'proxy_protocol_malformed');
    const once = encodeProxyHeaderV2({ command: 'local', crc32c: true });
    const twice = v2(0x20, 0x00, [...once.subarray(16), ...once.subarray(16)]);
    expectError(twice, 'proxy_protocol_malformed');
  });

  test('proxy_protocol_too_large from the 16 fixed bytes', () => {
    const huge = v2(0x21, 0x11, good4, 0xffff);
    expectError(huge, 'proxy_protocol_too_large', 16);
    const body = [...good4, PP2_TYPE_NOOP, 0, 1, 0];
    const b = v2(0x21, 0x11, body);
    assert.equal(b.length, 32);
    assert.equal(done(parseProxyHeader(b, { maxV2Bytes: 32 })).consumed, 32);
    const r = parseProxyHeader(b.subarray(0, 16), { maxV2Bytes: 31 });
    assert.equal(r.kind === 'error' && r.code, 'proxy_protocol_too_large');
    // The default: 4096 bytes after the fixed 16.
    const noop = (n: number) => [PP2_TYPE_NOOP, n >> 8, n & 0xff, ...Buffer.alloc(n)];
    assert.equal(done(parseProxyHeader(v2(0x20, 0x00, noop(4093)))).consumed, 4112);
    expectError(v2(0x20, 0x00, noop(4094)), 'proxy_protocol_too_large', 16);
  });

  test('nothing, or a bare start, is more', () => {
    for (const s of [[], [0x50], [0x0d], [...SIG], [...SIG, 0x21], [...SIG, 0x21, 0x11, 0]]) {
      assert.deepEqual(parseProxyHeader(Buffer.from(s)), { kind: 'more' });
    }
    for (const s of ['PROXY', 'PROXY ', 'PROXY UNKN', 'PROXY TCP6 ::1 ', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r']) {
      assert.deepEqual(parseProxyHeader(ascii(s)), { kind: 'more' }, s);
    }
  });
});
