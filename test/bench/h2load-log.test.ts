import assert from 'node:assert/strict';
import { test } from 'node:test';
import { h2loadArgv, parseH2loadLog, parseH2loadSummary, percentile, summarizeH2loadLog } from '../../bench/h2load.ts';

const T0 = 1_795_250_163_106_823;

test('parses start, status and latency from each line of an h2load --log-file', () => {
  const log = `${T0}\t200\t253\n${T0 + 29}\t200\t323\n${T0 + 40}\t-1\t1200\n`;
  assert.deepEqual(parseH2loadLog(log), [
    { startUs: T0, status: 200, latencyUs: 253 },
    { startUs: T0 + 29, status: 200, latencyUs: 323 },
    { startUs: T0 + 40, status: -1, latencyUs: 1200 },
  ]);
});

test('skips a last line cut short when h2load was killed, and blank lines', () => {
  const log = `${T0}\t200\t253\n\n${T0 + 5}\t200\t3`.concat('\n', `${T0 + 9}\t20`);
  assert.deepEqual(
    parseH2loadLog(log).map((r) => r.startUs),
    [T0, T0 + 5],
  );
});

test('percentile is nearest-rank', () => {
  const sorted = Array.from({ length: 1000 }, (_, i) => i + 1); // 1..1000
  assert.equal(percentile(sorted, 50), 500);
  assert.equal(percentile(sorted, 99), 990);
  assert.equal(percentile(sorted, 99.9), 999);
  assert.equal(percentile(sorted, 100), 1000);
  assert.equal(percentile(sorted, 0), 1);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), undefined);
});

test('summary drops the warm-up, times successful requests only and counts failures', () => {
  const reqs = [];
  // warm-up second: slow requests that must not count
  for (let i = 0; i < 100; i++) reqs.push({ startUs: T0 + i * 10_000, status: 200, latencyUs: 50_000 });
  // measured: 2 s at 1,000 req/s, latencies 1..2000 us, shuffled order as with several threads
  const measured = [];
  for (let i = 0; i < 2000; i++) measured.push({ startUs: T0 + 1_000_000 + i * 1000, status: 200, latencyUs: i + 1 });
  reqs.push(...measured.reverse());
  reqs.push({ startUs: T0 + 1_500_000, status: -1, latencyUs: 900_000 });
  reqs.push({ startUs: T0 + 1_600_000, status: 503, latencyUs: 10 });
  const s = summarizeH2loadLog(reqs, 1);
  assert.equal(s.requests, 2002);
  assert.equal(s.ok, 2000);
  assert.equal(s.failed, 2);
  assert.equal(s.p50Us, 1000);
  assert.equal(s.p99Us, 1980);
  assert.equal(s.p999Us, 1998);
  assert.equal(s.maxUs, 2000);
  // window: from the end of the warm-up to the end of the last response (started at +1.999 s, took 2 ms)
  assert.ok(Math.abs(s.windowS - 2.001) < 1e-9, String(s.windowS));
  assert.ok(Math.abs(s.achievedRps - 2000 / 2.001) < 1e-6, String(s.achievedRps));
});

test('summary of an empty log has no percentiles and a zero rate', () => {
  const s = summarizeH2loadLog([], 1);
  assert.equal(s.requests, 0);
  assert.equal(s.achievedRps, 0);
  assert.equal(s.p99Us, undefined);
});

test('h2load command line: HTTP/1.1, staggered clients, per-client rate and a whole number of requests each', () => {
  const argv = h2loadArgv({ url: 'http://127.0.0.1:1/', rps: 55_001, clients: 50, seconds: 11, logFile: '/tmp/l' });
  assert.deepEqual(argv, [
    '--h1',
    '-t1',
    '-c50',
    '-r1',
    '--rate-period=1ms',
    '--rps=1100.020',
    `-n${Math.ceil(1100.02 * 11) * 50}`,
    '--log-file=/tmp/l',
    'http://127.0.0.1:1/',
  ]);
});

test('parses the summary h2load prints: req/s, request counts and bad statuses', () => {
  const out = [
    'finished in 5.00s, 25238.40 req/s, 2.14MB/s',
    'requests: 126192 total, 126192 started, 126192 done, 126180 succeeded, 12 failed, 7 errored, 0 timeout',
    'status codes: 126180 2xx, 0 3xx, 2 4xx, 3 5xx',
  ].join('\n');
  assert.deepEqual(parseH2loadSummary(out), {
    rps: 25238.4,
    total: 126192,
    succeeded: 126180,
    failed: 12,
    errored: 7,
    timeout: 0,
    badStatus: 5,
    errorCount: 12,
  });
  assert.throws(() => parseH2loadSummary('spawning thread #0'), /finished in/);
});
