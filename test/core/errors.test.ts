/**
 * The error table: every code has a status muxgate can send, a source, a text and a retry column that
 * the exchange and the TCP tunnels read instead of testing codes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERRORS, type ErrorCode, reasonPhrase, retryWhen } from '../../src/core/errors.ts';

describe('error table', () => {
  it('every code has a sendable status, a known source, a text and a valid retry column', () => {
    for (const [code, info] of Object.entries(ERRORS)) {
      assert.ok(info.status >= 400 && info.status <= 599, code);
      assert.notEqual(reasonPhrase(info.status), 'Error', `${code}: ${info.status} has a reason phrase`);
      assert.ok(['downstream', 'upstream', 'internal'].includes(info.source), code);
      assert.ok(info.text.length > 0, code);
      assert.ok(['never', 'unsent', 'idempotent'].includes(retryWhen(code as ErrorCode)), code);
    }
  });

  it('retries: what was never sent goes again; what may have reached the upstream only if idempotent', () => {
    const column = Object.fromEntries(
      (Object.keys(ERRORS) as ErrorCode[]).filter((c) => retryWhen(c) !== 'never').map((c) => [c, retryWhen(c)]),
    );
    assert.deepEqual(column, {
      upstream_connect_failed: 'unsent',
      upstream_reset: 'idempotent',
      upstream_ports_exhausted: 'unsent',
    });
    // Queue limits, breakers and timeouts are not the endpoint refusing one request: never retried.
    for (const c of ['pool_queue_full', 'pool_queue_timeout', 'circuit_open', 'upstream_timeout'] as const) {
      assert.equal(retryWhen(c), 'never', c);
    }
  });
});
