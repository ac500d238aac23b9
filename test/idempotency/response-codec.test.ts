/**
 * The binary layout of a stored response in Redis: every status, header field (order, repeats, any
 * string) and body byte round-trips; truncated or foreign values are refused, never misread.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fingerprint } from '../../src/idempotency/fingerprint.ts';
import type { StoredResponse } from '../../src/idempotency/idempotency-store.ts';
import { decodeResponse, encodeResponse, RESPONSE_TAG } from '../../src/idempotency/response-codec.ts';
import { ALL_BYTES, sampleResponse } from './store-behaviours.ts';

const FP = fingerprint('POST', '/x', []);

function plain(r: StoredResponse) {
  return { status: r.status, headers: r.headers.map(([n, v]) => [n, v]), body: Buffer.from(r.body) };
}

describe('stored response codec', () => {
  it('starts with the tag and the fingerprint, and round-trips a response with binary body', () => {
    const value = encodeResponse(FP, sampleResponse());
    assert.equal(value[0], RESPONSE_TAG);
    assert.equal(value.toString('latin1', 1, 65), FP);
    assert.deepEqual(plain(decodeResponse(value)), plain(sampleResponse()));
    assert.ok(value.subarray(value.length - ALL_BYTES.length).equals(ALL_BYTES), 'the body is stored as it is');
  });

  it('round-trips any status, header list and body (property)', () => {
    const field = fc.string({ maxLength: 40, unit: 'binary' });
    const response = fc.record({
      status: fc.integer({ min: 0, max: 0xffff }),
      headers: fc.array(fc.tuple(field, field), { maxLength: 20 }),
      body: fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)),
    });
    fc.assert(
      fc.property(response, (r) => {
        assert.deepEqual(plain(decodeResponse(encodeResponse(FP, r))), plain(r));
      }),
      { seed: 0xc0de, numRuns: 500 },
    );
  });

  it('refuses every truncation of a value that has header fields, and values of another kind', () => {
    const value = encodeResponse(FP, {
      status: 200,
      headers: [
        ['a', 'bc'],
        ['def', ''],
      ],
      body: Buffer.alloc(0),
    });
    for (let n = 0; n < value.length; n++) {
      assert.throws(() => decodeResponse(value.subarray(0, n)), /Malformed/, `truncated to ${n}`);
    }
    const lock = Buffer.from(`L${FP}${'0'.repeat(36)}`, 'latin1');
    assert.throws(() => decodeResponse(lock), /Malformed/);
  });

  it('refuses what it could not decode back', () => {
    assert.throws(() => encodeResponse(FP, { status: 70_000, headers: [], body: Buffer.alloc(0) }), TypeError);
    assert.throws(() => encodeResponse(FP, { status: 200.5, headers: [], body: Buffer.alloc(0) }), TypeError);
    const tooMany = Array.from({ length: 0x10000 }, () => ['a', 'b'] as const);
    assert.throws(() => encodeResponse(FP, { status: 200, headers: tooMany, body: Buffer.alloc(0) }), RangeError);
    const longName = [['n'.repeat(0x10000), 'v'] as const];
    assert.throws(() => encodeResponse(FP, { status: 200, headers: longName, body: Buffer.alloc(0) }), RangeError);
  });
});
