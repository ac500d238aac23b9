/** latin1Recent: strings from bytes, answered from recently made ones only when every byte is the same. */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { latin1Recent } from '../../src/http1/latin1.ts';
import { prng } from '../helpers/prng.ts';

describe('latin1Recent', () => {
  test('always the bytes asked for: same length, first and last byte (one slot), any middle', () => {
    const rnd = prng(0x1a71);
    const buf = Buffer.alloc(4096);
    for (let n = 0; n < 5000; n++) {
      const len = 1 + Math.floor(rnd() * 140);
      const start = Math.floor(rnd() * (buf.length - len));
      // Few distinct middles over a fixed frame: look-ups hit, collide and miss.
      buf[start] = 0x41;
      buf[start + len - 1] = 0x5a;
      for (let i = 1; i < len - 1; i++) buf[start + i] = rnd() < 0.97 ? 0x61 : Math.floor(rnd() * 256);
      assert.equal(latin1Recent(buf, start, start + len), buf.toString('latin1', start, start + len));
    }
  });

  test('a repeated value comes back equal; empty and long ranges', () => {
    const host = Buffer.from('xHost: api.example:8443\r\n', 'latin1');
    const a = latin1Recent(host, 7, 23);
    const b = latin1Recent(host, 7, 23);
    assert.equal(a, 'api.example:8443');
    assert.equal(b, a);
    assert.equal(latin1Recent(host, 3, 3), '');
    const long = Buffer.from('é'.repeat(200), 'latin1');
    assert.equal(latin1Recent(long, 0, 200), 'é'.repeat(200));
    // bytes above 0x7f compare as their latin1 characters
    const hi = Buffer.from([0x78, 0xe9, 0xff, 0x80, 0x79]);
    assert.equal(latin1Recent(hi, 0, 5), 'x\xe9\xff\x80y');
    hi[2] = 0xfe;
    assert.equal(latin1Recent(hi, 0, 5), 'x\xe9\xfe\x80y');
  });
});
