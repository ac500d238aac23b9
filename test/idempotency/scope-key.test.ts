/**
 * The scope key of an Idempotency-Key: bounded in length whatever the client sends, and no choice of
 * key or client identity can make two different (route, key, client) scopes collide.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { scopeKey } from '../../src/idempotency/scope-key.ts';

describe('scope key', () => {
  it('is 64 hex characters whatever the key holds, and deterministic', () => {
    for (const key of ['', 'a', 'k'.repeat(100_000), '\u0000\r\n:|"', '\u{1f600}', '\ud800']) {
      const k = scopeKey('orders', key, 'client-1');
      assert.match(k, /^[0-9a-f]{64}$/);
      assert.equal(scopeKey('orders', key, 'client-1'), k);
    }
  });

  it('separates routes, keys and clients, with no delimiter to inject', () => {
    const keys = [
      scopeKey('orders', 'k1'),
      scopeKey('orders', 'k2'),
      scopeKey('payments', 'k1'),
      scopeKey('orders', 'k1', 'alice'),
      scopeKey('orders', 'k1', 'bob'),
      scopeKey('orders', 'k1', ''),
      // Shifting bytes between fields.
      scopeKey('orders:k1', ''),
      scopeKey('orders', ':k1'),
      scopeKey('order', 'sk1'),
      scopeKey('orders', 'k1alice'),
      scopeKey('orders', 'k1', 'alice\u0000'),
      // A key that spells out another scope's encoding.
      scopeKey('orders', '2:k1+5:alice'),
      scopeKey('orders', 'k1-'),
      // Lone surrogates, which UTF-8 would all turn into U+FFFD.
      scopeKey('orders', '\ud800'),
      scopeKey('orders', '\udc00'),
      scopeKey('orders', '\ufffd'),
    ];
    assert.equal(new Set(keys).size, keys.length);
  });

  it('no two different (route, key, client) triples collide (property)', () => {
    const part = fc.string({ maxLength: 6, unit: fc.constantFrom('a', ':', '+', '-', '0', '1', '\u00e9') });
    const triple = fc.tuple(part, part, fc.option(part, { nil: undefined }));
    fc.assert(
      fc.property(triple, triple, (x, y) => {
        const same = x[0] === y[0] && x[1] === y[1] && x[2] === y[2];
        assert.equal(scopeKey(...x) === scopeKey(...y), same);
      }),
      { seed: 0x5c0e, numRuns: 2000 },
    );
  });
});
