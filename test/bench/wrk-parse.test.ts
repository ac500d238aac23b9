import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWrkCount, parseWrkOutput, parseWrkTime } from '../../bench/wrk.ts';

const CLEAN = `Running 10s test @ http://127.0.0.1:18101/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.52us  105.81us   8.11ms   92.41%
    Req/Sec    80.88k     3.71k   85.36k    81.00%
  Latency Distribution
     50%  602.00us
     75%  640.00us
     90%  701.00us
     99%    1.03ms
  804911 requests in 10.00s, 118.98MB read
Requests/sec:  80484.62
Transfer/sec:     11.90MB
`;

test('parses rps, latency percentiles and totals of a clean wrk --latency run', () => {
  const r = parseWrkOutput(CLEAN);
  assert.equal(r.rps, 80484.62);
  assert.equal(r.requests, 804911);
  assert.equal(r.durationS, 10);
  assert.equal(r.p50Ms, 0.602);
  assert.equal(r.p99Ms, 1.03);
  assert.equal(r.latencyMaxMs, 8.11);
  assert.deepEqual(Object.keys(r.percentilesMs), ['50', '75', '90', '99']);
  assert.ok(Math.abs(r.percentilesMs['90']! - 0.701) < 1e-9);
  assert.equal(r.errorCount, 0);
});

test('counts socket errors and non-2xx responses so a run with errors is flagged', () => {
  const withErrors = CLEAN.replace(
    '  804911 requests',
    '  Socket errors: connect 1, read 12, write 0, timeout 3\n  Non-2xx or 3xx responses: 7\n  804911 requests',
  ).replace('99%    1.03ms', '99%    2.50s');
  const r = parseWrkOutput(withErrors);
  assert.deepEqual(r.errors, { connect: 1, read: 12, write: 0, timeout: 3, status: 7 });
  assert.equal(r.errorCount, 23);
  assert.equal(r.p99Ms, 2500);
});

test('units: times and counts', () => {
  assert.equal(parseWrkTime('602.00us'), 0.602);
  assert.equal(parseWrkTime('1.50m'), 90_000);
  assert.equal(parseWrkCount('80.88k'), 80_880);
  assert.equal(parseWrkCount('512'), 512);
  assert.throws(() => parseWrkTime('fast'));
});

test('output without the essential lines is an error, not zeros', () => {
  assert.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:18101 Connection refused'), /Requests\/sec/);
  assert.throws(
    () => parseWrkOutput(CLEAN.replace(/ {2}Latency Distribution[\s\S]*?1\.03ms\n/, '')),
    /Latency Distribution/,
  );
});
