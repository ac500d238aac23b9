/**
 * readClientHello (src/tls/client-hello.ts), the ClientHello reader of TLS passthrough by SNI: the
 * hellos real clients send (Node's TLS client, openssl s_client), captured over loopback by a plain
 * TCP server; a big hello over several records fed one byte at a time; the early decisions; every
 * length that can overflow its parent; duplicate extensions; the server name rules; the size bound.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import { type ClientHelloResult, DEFAULT_MAX_CLIENT_HELLO_BYTES, readClientHello } from '../../src/tls/client-hello.ts';
import {
  alpnData,
  buildClientHello,
  clientHelloMessage,
  extension,
  handshake,
  serverNameData,
  tlsRecord,
  toRecords,
  u16,
  vec8,
  vec16,
} from '../helpers/client-hello-bytes.ts';

function done(r: ClientHelloResult) {
  assert.equal(r.kind, 'done', JSON.stringify(r));
  assert(r.kind === 'done');
  return r.hello;
}

function expectError(r: ClientHelloResult, code: string, message?: RegExp): void {
  assert.equal(r.kind, 'error', JSON.stringify(r));
  assert(r.kind === 'error');
  assert.equal(r.code, code, r.message);
  if (message) assert.match(r.message, message);
}

/** Record sizes of the first `bytes` bytes, for the diagnostics. */
function recordSizes(buf: Buffer, bytes: number): number[] {
  const sizes: number[] = [];
  for (let at = 0; at + 5 <= bytes; at += 5 + buf.readUInt16BE(at + 3)) sizes.push(buf.readUInt16BE(at + 3));
  return sizes;
}

/**
 * Listens on 127.0.0.1, starts a client at the port, collects what the first connection sends until
 * readClientHello decides, then closes it. Returns the bytes and how many reads they took.
 */
async function capture(
  t: TestContext,
  startClient: (port: number) => () => void,
): Promise<{ bytes: Buffer; reads: number; result: ClientHelloResult }> {
  let stopClient = () => {};
  const server = net.createServer();
  t.after(() => {
    stopClient();
    server.close();
  });
  const got = new Promise<{ bytes: Buffer; reads: number; result: ClientHelloResult }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ClientHello within 10 s')), 10_000);
    server.on('connection', (sock) => {
      const chunks: Buffer[] = [];
      sock.on('error', () => {});
      sock.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        const bytes = Buffer.concat(chunks);
        const result = readClientHello(bytes);
        if (result.kind === 'more') return;
        clearTimeout(timer);
        sock.destroy();
        resolve({ bytes, reads: chunks.length, result });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert(addr !== null && typeof addr === 'object');
  stopClient = startClient(addr.port);
  return got;
}

describe('real clients', () => {
  it("parses Node's TLS client hello", async (t) => {
    const { bytes, reads, result } = await capture(t, (port) => {
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'api.example.com',
        ALPNProtocols: ['h2', 'http/1.1'],
        rejectUnauthorized: false,
      });
      sock.on('error', () => {});
      return () => sock.destroy();
    });
    const hello = done(result);
    assert.equal(hello.serverName, 'api.example.com');
    assert.deepEqual(hello.alpn, ['h2', 'http/1.1']);
    assert.equal(hello.legacyVersion, 0x0303);
    assert(hello.supportedVersions.includes(0x0304), `supported_versions ${hello.supportedVersions}`);
    assert.equal(hello.bytes, bytes.length);
    t.diagnostic(
      `node ${process.version} (OpenSSL ${process.versions.openssl}): ${hello.bytes} bytes in ${reads} read(s), ` +
        `records ${recordSizes(bytes, hello.bytes).join('+')}, supported_versions ${hello.supportedVersions.map((v) => v.toString(16)).join(',')}`,
    );
  });

  it("parses openssl s_client's hello", async (t) => {
    const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
    if (probe.error) {
      t.skip('openssl not installed');
      return;
    }
    const { bytes, reads, result } = await capture(t, (port) => {
      const child = spawn(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'x.test', '-alpn', 'h2'],
        { stdio: ['ignore', 'ignore', 'ignore'], timeout: 10_000 },
      );
      child.on('error', () => {});
      return () => child.kill('SIGKILL');
    });
    const hello = done(result);
    assert.equal(hello.serverName, 'x.test');
    assert.deepEqual(hello.alpn, ['h2']);
    assert.equal(hello.bytes, bytes.length);
    t.diagnostic(
      `${probe.stdout.trim()}: ${hello.bytes} bytes in ${reads} read(s), records ${recordSizes(bytes, hello.bytes).join('+')}, ` +
        `supported_versions ${hello.supportedVersions.map((v) => v.toString(16)).join(',')}`,
    );
  });
});

describe('reassembly', () => {
  it('reads a 10 KB hello in three records fed one byte at a time, and nothing after it', () => {
    const hello = buildClientHello({
      serverName: 'Big.Example.COM',
      alpn: ['h2', 'http/1.1'],
      recordSplit: [100, 300],
      padTo: 10_000,
    });
    assert.deepEqual(recordSizes(hello, hello.length), [100, 300, 9600]);
    // What a client may send right after: a ChangeCipherSpec record, then (garbage here) early data.
    const after = Buffer.concat([tlsRecord(20, Buffer.from([1])), Buffer.from('\x17\x03\x03\xff\xffjunk', 'latin1')]);
    const stream = Buffer.concat([hello, after]);
    // The caller's accumulation, one byte more per read (a view: the parser never writes to it).
    for (let n = 1; n < hello.length; n++) {
      const r = readClientHello(stream.subarray(0, n));
      if (r.kind !== 'more') assert.fail(`after ${n} bytes: ${JSON.stringify(r)}`);
    }
    for (let n = hello.length; n <= stream.length; n++) {
      const h = done(readClientHello(stream.subarray(0, n)));
      assert.deepEqual(h, {
        serverName: 'big.example.com',
        alpn: ['h2', 'http/1.1'],
        legacyVersion: 0x0303,
        supportedVersions: [0x0304, 0x0303],
        bytes: hello.length,
      });
    }
  });

  it('reassembles a handshake header cut over 1-byte records', () => {
    const hello = buildClientHello({ serverName: 'a.b', recordSplit: [1, 1, 1, 1, 1, 2, 50] });
    assert.equal(done(readClientHello(hello)).serverName, 'a.b');
  });

  it('accepts a hello without extensions (serverName null), and an empty extensions block', () => {
    const bare = done(readClientHello(buildClientHello({ noExtensions: true, legacyVersion: 0x0301 })));
    assert.deepEqual(bare, {
      serverName: null,
      alpn: [],
      legacyVersion: 0x0301,
      supportedVersions: [],
      bytes: bare.bytes,
    });
    const msg = clientHelloMessage({ noExtensions: true });
    const empty = toRecords(handshake(1, Buffer.concat([msg.subarray(4), u16(0)])));
    assert.equal(done(readClientHello(empty)).serverName, null);
  });

  it('reads the host_name among other name types, and ignores unknown extensions', () => {
    const hello = buildClientHello({
      extraExtensions: [
        { type: 0, data: serverNameData([{ type: 7, name: 'opaque' }, { name: 'Host.Test' }]) },
        { type: 0xfafa, data: Buffer.alloc(0) },
      ],
    });
    assert.equal(done(readClientHello(hello)).serverName, 'host.test');
  });
});

describe('early decisions', () => {
  it('is not TLS on the first byte of plain HTTP or SSLv2', () => {
    expectError(readClientHello(Buffer.from('G')), 'tls_not_tls');
    expectError(readClientHello(Buffer.from('GET / HTTP/1.1\r\n')), 'tls_not_tls');
    expectError(readClientHello(Buffer.from('PRI * HTTP/2.0\r\n')), 'tls_not_tls');
    // SSLv2-compatible ClientHello: 2-byte header with the high bit set, msg_type 1, version 3.1.
    expectError(readClientHello(Buffer.from([0x80])), 'tls_not_tls');
    expectError(readClientHello(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])), 'tls_not_tls');
  });

  it('waits for the version byte after a TLS record type', () => {
    assert.equal(readClientHello(Buffer.from([0x16])).kind, 'more');
    assert.equal(readClientHello(Buffer.alloc(0)).kind, 'more');
    expectError(readClientHello(Buffer.from([0x16, 0x02])), 'tls_not_tls');
    expectError(readClientHello(Buffer.from([0x16, 0x00])), 'tls_not_tls');
    assert.equal(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00])).kind, 'more');
  });

  it('is malformed when a TLS client starts with another record type', () => {
    // A fatal handshake_failure alert.
    expectError(readClientHello(Buffer.from([0x15, 0x03])), 'client_hello_malformed', /content type 21 before/);
    expectError(readClientHello(tlsRecord(21, Buffer.from([2, 40]))), 'client_hello_malformed');
    expectError(readClientHello(tlsRecord(23, Buffer.from('data'))), 'client_hello_malformed');
    expectError(readClientHello(tlsRecord(20, Buffer.from([1]))), 'client_hello_malformed');
  });

  it('is malformed on another handshake type, as soon as it is there', () => {
    const serverHello = tlsRecord(22, handshake(2, Buffer.alloc(60)));
    expectError(readClientHello(serverHello.subarray(0, 6)), 'client_hello_malformed', /handshake type 2/);
    const split = toRecords(handshake(11, Buffer.alloc(60)), [1]);
    expectError(readClientHello(split.subarray(0, 6)), 'client_hello_malformed', /handshake type 11/);
  });

  it('is malformed on bad records', () => {
    const msg = clientHelloMessage({ serverName: 'a.test' });
    expectError(readClientHello(Buffer.from([22, 3, 1, 0, 0])), 'client_hello_malformed', /empty/);
    expectError(readClientHello(Buffer.from([22, 3, 1, 0x40, 0x01])), 'client_hello_malformed', /16385 bytes/);
    const first = toRecords(msg.subarray(0, 20));
    // An alert between two fragments of the hello.
    const interleaved = Buffer.concat([first, tlsRecord(21, Buffer.from([1, 0])), toRecords(msg.subarray(20))]);
    expectError(readClientHello(interleaved), 'client_hello_malformed', /content type 21 inside/);
    const oddVersion = Buffer.concat([first, tlsRecord(22, msg.subarray(20), 0x0201)]);
    expectError(readClientHello(oddVersion), 'client_hello_malformed', /major 2/);
    const emptyLater = Buffer.concat([first, tlsRecord(22, Buffer.alloc(0)), toRecords(msg.subarray(20))]);
    expectError(readClientHello(emptyLater), 'client_hello_malformed', /empty/);
  });

  it('is malformed when the record goes on after the hello, decided on the headers', () => {
    const msg = clientHelloMessage();
    const record = tlsRecord(22, Buffer.concat([msg, handshake(1, Buffer.alloc(41))]));
    expectError(readClientHello(record.subarray(0, 9)), 'client_hello_malformed', /ends before its record/);
    // And a handshake length too small for any ClientHello.
    expectError(readClientHello(tlsRecord(22, handshake(1, Buffer.alloc(40)))), 'client_hello_malformed');
  });
});

/** A ClientHello record from raw parts (each part as it is on the wire, length prefix included). */
function rawHello(parts: {
  version?: Buffer;
  sessionId?: Buffer;
  suites?: Buffer;
  compression?: Buffer;
  extensions?: Buffer;
}): Buffer {
  const body = Buffer.concat([
    parts.version ?? u16(0x0303),
    Buffer.alloc(32, 7),
    parts.sessionId ?? vec8(Buffer.alloc(32, 1)),
    parts.suites ?? vec16(u16(0x1301), u16(0x1302)),
    parts.compression ?? vec8(Buffer.from([0])),
    parts.extensions ?? Buffer.alloc(0),
  ]);
  return tlsRecord(22, handshake(1, body));
}

/** The extensions block with one extension of this type and raw data. */
const oneExtension = (type: number, data: Buffer) => vec16(extension(type, data));

describe('lengths that do not fit their parent', () => {
  const sni = (data: Buffer) => rawHello({ extensions: oneExtension(0, data) });
  const alpn = (data: Buffer) => rawHello({ extensions: oneExtension(16, data) });
  const versions = (data: Buffer) => rawHello({ extensions: oneExtension(43, data) });
  const cases: [string, Buffer, RegExp][] = [
    ['legacy_version 2.3', rawHello({ version: u16(0x0203) }), /legacy_version 0x0203/],
    ['session id of 33 bytes', rawHello({ sessionId: vec8(Buffer.alloc(33)) }), /legacy_session_id longer/],
    [
      'session id past the body',
      rawHello({ sessionId: Buffer.from([32]), suites: Buffer.alloc(0), extensions: Buffer.alloc(4) }),
      /legacy_session_id runs past/,
    ],
    ['odd cipher_suites', rawHello({ suites: vec16(Buffer.from([0x13, 0x01, 0x13])) }), /cipher_suites of 3 bytes/],
    [
      'empty cipher_suites',
      rawHello({ suites: vec16(), compression: Buffer.from([1, 0, 1, 0]) }),
      /cipher_suites of 0 bytes/,
    ],
    ['cipher_suites past the body', rawHello({ suites: Buffer.from([0xff, 0xfe, 0x13, 0x01]) }), /cipher_suites runs/],
    [
      'no compression methods',
      rawHello({ compression: vec8(), extensions: Buffer.from([0, 0, 0]) }),
      /no compression methods/,
    ],
    ['compression methods past the body', rawHello({ compression: Buffer.from([9, 0]) }), /compression_methods runs/],
    ['one byte after compression methods', rawHello({ extensions: Buffer.from([0]) }), /extensions length runs/],
    ['extensions block past the body', rawHello({ extensions: Buffer.from([0, 9, 0, 0, 0, 0]) }), /extensions runs/],
    [
      'bytes after the extensions block',
      rawHello({ extensions: Buffer.from([0, 4, 0xfa, 0xfa, 0, 0, 0]) }),
      /bytes after the extensions/,
    ],
    [
      'extension past the block',
      rawHello({ extensions: vec16(u16(0xfafa), u16(5), Buffer.alloc(4)) }),
      /extension 64250 runs/,
    ],
    [
      'half an extension header',
      rawHello({ extensions: vec16(u16(0xfafa), Buffer.from([0])) }),
      /extension 64250 length runs/,
    ],
    ['server_name list past the extension', sni(Buffer.from([0, 9, 0, 0, 1])), /server_name_list runs/],
    [
      'server_name list shorter than the extension',
      sni(Buffer.concat([serverNameData([{ name: 'a.b' }]), Buffer.from([0])])),
      /bytes after the server_name_list/,
    ],
    ['empty server_name list', sni(vec16()), /empty server_name_list/],
    ['empty server_name extension', sni(Buffer.alloc(0)), /server_name_list length runs/],
    ['host name past the list', sni(vec16(Buffer.from([0, 0, 9]), Buffer.from('a.b'))), /server name runs/],
    ['empty host name', sni(serverNameData([{ name: '' }])), /empty server name/],
    ['two host names', sni(serverNameData([{ name: 'a.b' }, { name: 'c.d' }])), /server name type 0 twice/],
    ['ALPN list past the extension', alpn(Buffer.from([0, 9, 2, 0x68, 0x32])), /protocol_name_list runs/],
    ['ALPN name past the list', alpn(vec16(Buffer.from([3, 0x68, 0x32]))), /protocol name runs/],
    ['empty ALPN list', alpn(alpnData([])), /empty protocol_name_list/],
    ['empty ALPN name', alpn(alpnData(['h2', ''])), /empty ALPN protocol name/],
    [
      'bytes after the ALPN list',
      alpn(Buffer.concat([alpnData(['h2']), Buffer.from([0])])),
      /bytes after the protocol_name_list/,
    ],
    ['odd supported_versions', versions(vec8(Buffer.from([3, 4, 3]))), /supported_versions of 3 bytes/],
    ['empty supported_versions', versions(vec8()), /supported_versions of 0 bytes/],
    ['supported_versions past the extension', versions(Buffer.from([4, 3, 4])), /supported_versions runs/],
  ];
  for (const [name, bytes, message] of cases) {
    it(name, () => expectError(readClientHello(bytes), 'client_hello_malformed', message));
  }

  it('the same parts, well-formed, parse (so the cases above fail for their one reason)', () => {
    const exts = vec16(
      extension(0, serverNameData([{ name: 'a.b' }])),
      extension(16, alpnData(['h2'])),
      extension(43, vec8(u16(0x0304))),
    );
    const h = done(readClientHello(rawHello({ extensions: exts })));
    assert.deepEqual([h.serverName, h.alpn, h.supportedVersions], ['a.b', ['h2'], [0x0304]]);
    assert.equal(done(readClientHello(rawHello({ sessionId: vec8() }))).serverName, null);
  });
});

describe('duplicate extensions', () => {
  const cases: [string, Buffer][] = [
    [
      'server_name',
      buildClientHello({
        serverName: 'a.test',
        extraExtensions: [{ type: 0, data: serverNameData([{ name: 'b.test' }]) }],
      }),
    ],
    ['ALPN', buildClientHello({ alpn: ['h2'], extraExtensions: [{ type: 16, data: alpnData(['http/1.1']) }] })],
    ['supported_versions', buildClientHello({ extraExtensions: [{ type: 43, data: vec8(u16(0x0303)) }] })],
    [
      'an unknown one',
      buildClientHello({
        extraExtensions: [
          { type: 0xfafa, data: Buffer.alloc(0) },
          { type: 0xfafa, data: Buffer.alloc(1) },
        ],
      }),
    ],
  ];
  for (const [name, bytes] of cases) {
    it(name, () => expectError(readClientHello(bytes), 'client_hello_malformed', /twice/));
  }
});

describe('server names', () => {
  const name = (n: string) => readClientHello(buildClientHello({ serverName: n }));
  const label63 = 'a'.repeat(63);
  const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

  const valid: [string, string][] = [
    ['a', 'a'],
    ['localhost', 'localhost'],
    ['API.Example.COM', 'api.example.com'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['a-b.c-d.e', 'a-b.c-d.e'],
    ['0.example', '0.example'],
    ['10.0.0.1a', '10.0.0.1a'],
    ['a.1b', 'a.1b'],
    [label63, label63],
    [name253, name253],
  ];
  for (const [n, want] of valid) {
    it(`accepts ${n.length > 30 ? `a ${n.length}-byte name` : n}`, () => assert.equal(done(name(n)).serverName, want));
  }

  const invalid: [string, string][] = [
    ['-a.com', 'hyphen first'],
    ['a-.com', 'hyphen last in a label'],
    ['a.com-', 'hyphen last'],
    ['a..b', 'empty label'],
    ['.a.b', 'leading dot'],
    ['a.b.', 'trailing dot'],
    ['.', 'just a dot'],
    ['a'.repeat(300), '300 bytes'],
    [`${name253}b`, '254 bytes'],
    [`${label63}a.com`, '64-byte label'],
    ['10.0.0.1', 'IPv4 literal'],
    ['127.1', 'short IPv4 literal'],
    ['3232235777', 'IPv4 as one number'],
    ['::1', 'IPv6 literal'],
    ['[::1]', 'bracketed IPv6 literal'],
    ['a_b.com', 'underscore'],
    ['a b.com', 'space'],
    ['a\0.com', 'NUL'],
    ['caf\u00e9.com', 'latin1 byte'],
    ['a.com:443', 'port'],
  ];
  for (const [n, why] of invalid) {
    it(`rejects ${why}`, () => expectError(name(n), 'sni_invalid'));
  }
});

describe('size bound', () => {
  it(`defaults to ${DEFAULT_MAX_CLIENT_HELLO_BYTES} bytes`, () => {
    assert.equal(DEFAULT_MAX_CLIENT_HELLO_BYTES, 16384 + 20);
    // The largest hello that fits: 16384 bytes of handshake in 4 records.
    const fits = buildClientHello({ serverName: 'a.b', padTo: 16384, recordSplit: [4096, 4096, 4096, 4096] });
    assert.equal(fits.length, DEFAULT_MAX_CLIENT_HELLO_BYTES);
    assert.equal(done(readClientHello(fits)).bytes, fits.length);
    // One byte more of handshake, or one record more: too large.
    const longer = buildClientHello({ serverName: 'a.b', padTo: 16385, recordSplit: [4096, 4096, 4096, 4097] });
    expectError(readClientHello(longer), 'client_hello_too_large');
    const split5 = buildClientHello({ serverName: 'a.b', padTo: 16384, recordSplit: [4096, 4096, 4096, 4095, 1] });
    expectError(readClientHello(split5), 'client_hello_too_large');
  });

  it('says so as soon as the headers show it, before the body arrives', () => {
    const big = buildClientHello({ serverName: 'a.b', padTo: 20_000 });
    // Record header and handshake header: 9 bytes.
    expectError(readClientHello(big.subarray(0, 9)), 'client_hello_too_large');
    const small = buildClientHello({ serverName: 'a.b', padTo: 1000 });
    expectError(readClientHello(small.subarray(0, 9), { maxBytes: 1004 }), 'client_hello_too_large');
    assert.equal(readClientHello(small.subarray(0, 9), { maxBytes: 1005 }).kind, 'more');
    // In 1-byte records, 6 bytes a byte: the length is known after 24 bytes; at least 5 + 196 more to come.
    const tiny = toRecords(
      clientHelloMessage({ padTo: 200 }),
      Array.from({ length: 200 }, () => 1),
    );
    assert.equal(tiny.length, 1200);
    expectError(readClientHello(tiny.subarray(0, 24), { maxBytes: 224 }), 'client_hello_too_large');
    assert.equal(readClientHello(tiny.subarray(0, 24), { maxBytes: 225 }).kind, 'more');
    expectError(readClientHello(tiny, { maxBytes: 1199 }), 'client_hello_too_large');
    assert.equal(done(readClientHello(tiny, { maxBytes: 1200 })).bytes, 1200);
  });

  it('never reads past maxBytes', () => {
    const hello = buildClientHello({ serverName: 'a.b', padTo: 500 });
    assert.equal(hello.length, 505);
    const withMore = Buffer.concat([hello, Buffer.from('anything')]);
    assert.equal(done(readClientHello(withMore, { maxBytes: 505 })).bytes, 505);
    expectError(readClientHello(withMore, { maxBytes: 504 }), 'client_hello_too_large');
    // The version byte (not TLS) lies past maxBytes: too large, not tls_not_tls.
    expectError(readClientHello(Buffer.from([0x16, 0x02]), { maxBytes: 1 }), 'client_hello_too_large');
    expectError(readClientHello(Buffer.from([0x16, 0x02]), { maxBytes: 2 }), 'tls_not_tls');
  });

  it('rejects a bad maxBytes (a programming error, the one thing that throws)', () => {
    assert.throws(() => readClientHello(Buffer.alloc(0), { maxBytes: 0 }), RangeError);
    assert.throws(() => readClientHello(Buffer.alloc(0), { maxBytes: 1.5 }), RangeError);
  });
});
