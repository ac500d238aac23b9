/**
 * Property-based tests of readClientHello (src/tls/client-hello.ts), the ClientHello reader of TLS
 * passthrough by SNI. Properties:
 *  - random bytes, bare or behind plausible record and handshake headers, never make it throw, and
 *    every answer is one of the documented shapes;
 *  - a hello built with any valid name and ALPN list, cut into any records and read in any chunks,
 *    is 'more' at every chunk boundary before its end and parses back exactly at its end;
 *  - whether a server name is accepted agrees with a regular-expression statement of the rules;
 *  - a built hello with one byte changed never makes it throw;
 *  - once the answer for a prefix of the stream is not 'more', every longer prefix gets the same answer
 *    (the caller may stop reading at the first decision).
 *
 * Reproducible by default (fixed seed); FUZZ_SEED picks another seed, FUZZ_RUNS the runs per
 * property (FUZZ_PATH, with the seed of a failure report, replays just the shrunk counterexample).
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.ts';
import { type ClientHelloResult, readClientHello } from '../../src/tls/client-hello.ts';
import { buildClientHello } from '../helpers/client-hello-bytes.ts';

const params = fuzzParams(0x534e49, 2000);

const CODES = new Set(['tls_not_tls', 'client_hello_malformed', 'client_hello_too_large', 'sni_invalid']);

/** The server name rules, stated independently of the parser's byte loop. */
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
function validName(name: string): boolean {
  if (name.length < 1 || name.length > 253) return false;
  const labels = name.split('.');
  return labels.every((l) => LABEL.test(l)) && !/^[0-9]+$/.test(labels[labels.length - 1]!);
}

/** Checks the shape of an answer for a buffer of `length` bytes; returns it for chaining. */
function wellFormed(r: ClientHelloResult, length: number, maxBytes: number): ClientHelloResult {
  if (r.kind === 'more') {
    assert(length < maxBytes, `'more' with ${length} bytes at maxBytes ${maxBytes}`);
  } else if (r.kind === 'error') {
    assert(CODES.has(r.code), r.code);
    assert.equal(typeof r.message, 'string');
  } else {
    const h = r.hello;
    assert(h.bytes >= 50 && h.bytes <= Math.min(length, maxBytes), `bytes ${h.bytes} of ${length}`);
    assert(h.serverName === null || (validName(h.serverName) && h.serverName === h.serverName.toLowerCase()));
    assert(h.alpn.every((p) => p.length > 0));
    assert.equal(h.legacyVersion >> 8, 3);
  }
  return r;
}

/** Answers for the prefixes ending at `cuts` (and the whole buffer) agree once they are decided. */
function consistentPrefixes(buf: Buffer, cuts: number[], maxBytes: number): ClientHelloResult {
  const opts = { maxBytes };
  const final = wellFormed(readClientHello(buf, opts), buf.length, maxBytes);
  for (const cut of cuts) {
    const n = cut % (buf.length + 1);
    const r = wellFormed(readClientHello(buf.subarray(0, n), opts), n, maxBytes);
    if (r.kind !== 'more') assert.deepEqual(r, final, `prefix of ${n} of ${buf.length} bytes`);
  }
  return final;
}

const ldh = fc.constantFrom(...'abcxyzABCXYZ0189-');
const label = fc.string({ unit: ldh, minLength: 1, maxLength: 63 }).map((l) => l.replace(/^-/, 'a').replace(/-$/, 'z'));
const hostName = fc
  .array(label, { minLength: 1, maxLength: 6 })
  .map((labels) => {
    const last = labels[labels.length - 1]!;
    if (/^[0-9]+$/.test(last)) labels[labels.length - 1] = `${last.slice(0, 62)}q`;
    return labels.join('.');
  })
  .filter((n) => n.length <= 253);
const alpnName = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1'));
const alpnList = fc.array(alpnName, { minLength: 1, maxLength: 8 });
const recordSplit = fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 8 });
const cuts = fc.array(fc.nat(), { maxLength: 8 });

const hello = fc.record({
  serverName: fc.option(hostName, { nil: undefined }),
  alpn: fc.option(alpnList, { nil: undefined }),
  recordSplit,
  padTo: fc.option(fc.integer({ min: 600, max: 6000 }), { nil: undefined }),
});

describe('readClientHello, fuzzed', () => {
  test('random bytes never make it throw, and decided answers hold for longer prefixes', () => {
    const tlsLike = fc
      .tuple(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.uint8Array({ maxLength: 600 }),
      )
      .map(([recordLen, helloLen, rest]) => {
        const head = Buffer.from([0x16, 0x03, 0x01, recordLen >> 8, recordLen & 0xff, 1, 0, 0, 0]);
        head.writeUIntBE(helloLen, 6, 3);
        return Buffer.concat([head, rest]);
      });
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.concat([Buffer.from([0x16, 0x03]), b])),
      tlsLike,
    );
    fc.assert(
      fc.property(bytes, cuts, fc.integer({ min: 1, max: 20_000 }), (buf, at, maxBytes) => {
        consistentPrefixes(buf, at, maxBytes);
      }),
      params(),
    );
  });

  test('built hellos parse back exactly, in any records, read in any chunks', () => {
    const chunks = fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 12 });
    fc.assert(
      fc.property(hello, chunks, (opts, sizes) => {
        const bytes = buildClientHello(opts);
        let at = 0;
        for (const size of sizes) {
          at += size;
          if (at >= bytes.length) break;
          assert.equal(readClientHello(bytes.subarray(0, at)).kind, 'more', `after ${at} of ${bytes.length}`);
        }
        const r = readClientHello(Buffer.concat([bytes, Buffer.from([0x17, 0x03, 0x03])]));
        assert.deepEqual(r, {
          kind: 'done',
          hello: {
            serverName: opts.serverName?.toLowerCase() ?? null,
            alpn: opts.alpn ?? [],
            legacyVersion: 0x0303,
            supportedVersions: [0x0304, 0x0303],
            bytes: bytes.length,
          },
        });
      }),
      params(),
    );
  });

  test('server names are accepted exactly when the rules say so', () => {
    const anyName = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'aZ09-._ :[]\u00e9\u0000'), minLength: 1, maxLength: 24 }),
      hostName,
      // Valid names one character off: an inserted dot, hyphen or digit string, or a longer tail.
      fc
        .tuple(hostName, fc.nat(), fc.constantFrom('.', '-', '..', '1', '.1', '_', 'a'.repeat(60)))
        .map(([n, at, s]) => n.slice(0, at % (n.length + 1)) + s + n.slice(at % (n.length + 1))),
    );
    fc.assert(
      fc.property(anyName, (name) => {
        const r = readClientHello(buildClientHello({ serverName: name }));
        if (validName(name)) assert.deepEqual(r.kind === 'done' && r.hello.serverName, name.toLowerCase());
        else assert.equal(r.kind === 'error' && r.code, 'sni_invalid', `${JSON.stringify(name)}: ${JSON.stringify(r)}`);
      }),
      params(),
    );
  });

  test('one changed byte never makes it throw, and decided answers hold for longer prefixes', () => {
    const mutation = fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) });
    fc.assert(
      fc.property(hello, mutation, cuts, (opts, m, at) => {
        const bytes = buildClientHello(opts);
        const i = m.at % bytes.length;
        bytes[i] = bytes[i]! ^ m.xor;
        consistentPrefixes(bytes, at, 16384 + 20);
      }),
      params(),
    );
  });
});
