/**
 * The request fingerprint: the same for the same method, target and body bytes however the body is
 * chunked; different as soon as any of them differs, including when bytes move across field boundaries.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { assertFingerprint, FINGERPRINT_LENGTH, fingerprint } from '../../src/idempotency/fingerprint.ts';

const SEED = 0x1de4;

describe('fingerprint', () => {
  it('is 64 lowercase hex characters, and passes its own check', () => {
    const fp = fingerprint('POST', '/orders?x=1', [Buffer.from('{}')]);
    assert.match(fp, /^[0-9a-f]{64}$/);
    assert.equal(fp.length, FINGERPRINT_LENGTH);
    assertFingerprint(fp);
    assert.equal(fingerprint('POST', '/orders?x=1', [Buffer.from('{}')]), fp, 'deterministic');
  });

  it('depends on the body bytes only, not on how they were chunked', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const body = Buffer.from(bytes);
        const points = [...new Set(cuts.map((c) => (body.length === 0 ? 0 : c % body.length)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let from = 0;
        for (const p of points) {
          chunks.push(body.subarray(from, p));
          from = p;
        }
        chunks.push(body.subarray(from));
        assert.equal(fingerprint('PUT', '/a', chunks), fingerprint('PUT', '/a', [body]));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('changes with the method, the target (query included) and any body byte', () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const base = fingerprint('POST', '/orders?a=1', [body]);
    assert.notEqual(fingerprint('PUT', '/orders?a=1', [body]), base);
    assert.notEqual(fingerprint('post', '/orders?a=1', [body]), base, 'methods are case-sensitive');
    assert.notEqual(fingerprint('POST', '/orders?a=2', [body]), base);
    assert.notEqual(fingerprint('POST', '/orders', [body]), base);
    assert.notEqual(fingerprint('POST', '/orders?a=1', [body.subarray(0, 255)]), base);
    for (const i of [0, 1, 127, 255]) {
      const changed = Buffer.from(body);
      changed[i] = changed[i]! ^ 1;
      assert.notEqual(fingerprint('POST', '/orders?a=1', [changed]), base, `byte ${i}`);
    }
  });

  it('cannot be forged by moving bytes between method, target and body', () => {
    const fps = [
      fingerprint('GET', '/x', []),
      fingerprint('GE', 'T/x', []),
      fingerprint('GET/', 'x', []),
      fingerprint('GET', '/', [Buffer.from('x')]),
      fingerprint('GET', '', [Buffer.from('/x')]),
      fingerprint('', 'GET/x', []),
      fingerprint('GET', '/x\n', []),
      fingerprint('GET\n/x', '', []),
    ];
    assert.equal(new Set(fps).size, fps.length);
    // Empty chunks are no bytes.
    assert.equal(fingerprint('GET', '/x', [Buffer.alloc(0), Buffer.alloc(0)]), fps[0]);
  });

  it('assertFingerprint refuses anything fingerprint() cannot return', () => {
    for (const bad of ['', 'abc', 'A'.repeat(64), `${'a'.repeat(63)}g`, 'a'.repeat(65), ` ${'a'.repeat(63)}`]) {
      assert.throws(() => assertFingerprint(bad), TypeError, JSON.stringify(bad));
    }
  });
});
