/**
 * The access log's formatter (request lines by concatenation, other lines through JSON.stringify),
 * its sampling, and the file writer that batches lines: order kept, nothing lost on close, losses on a
 * full disk counted and reported once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AccessLog, type RequestRecord, str } from '../../src/core/access-log.ts';
import { LogFile, type LogFileOptions } from '../../src/core/log-file.ts';
import { lineCollector } from '../helpers/proxy.ts';

function record(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    listener: 'web',
    client: '127.0.0.1:5000',
    protocol: 'HTTP/1.1',
    method: 'GET',
    host: 'app.test',
    path: '/a',
    status: 200,
    bytesIn: 40,
    bytesOut: 120,
    durationMs: 1.23456,
    upstream: '127.0.0.1:8080',
    upstreamProtocol: undefined,
    poolWaitMs: 0.004,
    error: null,
    attempts: 1,
    retrySkipped: null,
    ...over,
  };
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const quiet: LogFileOptions = {
  bufferBytes: 64 * 1024,
  flushIntervalMs: 60_000,
  maxBufferBytes: 16 * 1024 * 1024,
  onTrouble: () => {},
};

describe('access log lines', () => {
  it('formats a request line as JSON with every field, in order', () => {
    const lines: Record<string, unknown>[] = [];
    const log = new AccessLog(lineCollector(lines));
    const before = Date.now();
    log.request(record({ upstreamProtocol: 'HTTP/2', error: 'upstream_timeout', status: 504 }));
    const l = lines[0]!;
    assert.deepEqual(Object.keys(l), [
      'time',
      'listener',
      'client',
      'protocol',
      'method',
      'host',
      'path',
      'status',
      'bytes_in',
      'bytes_out',
      'duration_ms',
      'upstream',
      'upstream_protocol',
      'pool_wait_ms',
      'error',
    ]);
    assert.equal(l.duration_ms, 1.23);
    assert.equal(l.pool_wait_ms, 0);
    assert.equal(l.error, 'upstream_timeout');
    assert.match(String(l.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const t = Date.parse(String(l.time));
    assert.ok(t >= before - 1 && t <= Date.now() + 1, `time ${l.time} is now`);
  });

  it('leaves absent optional fields out', () => {
    const lines: Record<string, unknown>[] = [];
    new AccessLog(lineCollector(lines)).request(record({ upstream: undefined }));
    assert.equal('upstream' in lines[0]!, false);
    assert.equal('upstream_protocol' in lines[0]!, false);
    assert.equal('error' in lines[0]!, false);
  });

  it('escapes what JSON needs escaped, so every line parses back to the same values', () => {
    const odd = ['a"b', 'back\\slash', 'tab\there', 'nul\u0000', 'caf\u00e9', '\u{1f600}', '\ud800 lone'];
    for (const s of odd) assert.equal(JSON.parse(str(s)), JSON.parse(JSON.stringify(s)), s);
    const lines: Record<string, unknown>[] = [];
    const log = new AccessLog(lineCollector(lines));
    log.request(record({ path: '/q"\\\u0001', host: 'h\u00e9' }));
    assert.equal(lines[0]!.path, '/q"\\\u0001');
    assert.equal(lines[0]!.host, 'h\u00e9');
  });

  it('writes other lines with time first and undefined fields left out', () => {
    const lines: Record<string, unknown>[] = [];
    const log = new AccessLog(lineCollector(lines));
    log.event({ listener: 'web', tunnel: 'websocket', status: 101, detail: undefined });
    log.event({});
    assert.deepEqual(Object.keys(lines[0]!), ['time', 'listener', 'tunnel', 'status']);
    assert.deepEqual(Object.keys(lines[1]!), ['time']);
  });

  it('samples 1 in N of the ordinary lines and keeps every error line', () => {
    const lines: Record<string, unknown>[] = [];
    const log = new AccessLog(lineCollector(lines), { errorsOnly: false, sample: 10 });
    for (let i = 0; i < 100; i++) log.request(record({ path: `/${i}` }));
    for (let i = 0; i < 5; i++) log.request(record({ status: 502, error: 'upstream_connect_failed' }));
    log.event({ status: 404 });
    assert.equal(lines.filter((l) => l.status === 200).length, 10);
    assert.equal(lines.filter((l) => l.status === 502).length, 5);
    assert.equal(lines.filter((l) => l.status === 404).length, 1);
    assert.equal(log.skipped, 90);
  });

  it('with errors_only, logs only error codes and statuses of 400 or more', () => {
    const lines: Record<string, unknown>[] = [];
    const log = new AccessLog(lineCollector(lines), { errorsOnly: true, sample: 1 });
    log.request(record());
    log.request(record({ status: 301 }));
    log.request(record({ status: 404 }));
    log.request(record({ status: 200, error: 'downstream_closed' }));
    log.event({ tunnel: 'websocket', status: 101 });
    assert.deepEqual(
      lines.map((l) => l.status),
      [404, 200],
    );
    assert.equal(log.skipped, 3);
  });
});

describe('LogFile', () => {
  it('batches lines into few writes and keeps their order', async (t) => {
    const path = join(tempDir(t), 'access.log');
    const file = new LogFile(path, { ...quiet, bufferBytes: 16 * 1024 });
    const log = new AccessLog(file);
    for (let i = 0; i < 5000; i++) log.request(record({ path: `/${i}` }));
    await file.flush();
    file.closeSync();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 5000);
    for (const [i, l] of lines.entries()) assert.equal(JSON.parse(l).path, `/${i}`);
    assert.equal(file.stats.linesWritten, 5000);
    assert.equal(file.stats.linesLost, 0);
    // ~230 bytes a line in 16 KiB batches: about 70 writes, not 5,000.
    assert.ok(file.stats.writes < 200, `${file.stats.writes} writes for 5,000 lines`);
  });

  it('keeps every byte of non-ASCII lines and of lines larger than a batch, in order, across writes in flight', async (t) => {
    const path = join(tempDir(t), 'access.log');
    const file = new LogFile(path, { ...quiet, bufferBytes: 4096 });
    const log = new AccessLog(file);
    const expected: string[] = [];
    for (let i = 0; i < 3000; i++) {
      // multi-byte UTF-8 (2, 3 and 4 bytes), and every 500th line 40 KiB: ten times the batch size
      const path = i % 500 === 0 ? `/${'x'.repeat(40 * 1024)}` : `/é/€/🙂/${i}`;
      expected.push(path);
      log.request(record({ path }));
      if (i % 700 === 0) await new Promise((r) => setImmediate(r));
    }
    await file.flush();
    file.closeSync();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, expected.length);
    for (const [i, l] of lines.entries()) assert.equal(JSON.parse(l).path, expected[i]);
    assert.equal(file.stats.linesWritten, 3000);
    assert.equal(file.stats.linesLost, 0);
  });
  it('writes a partial batch after flush_interval without being asked', async (t) => {
    const path = join(tempDir(t), 'access.log');
    const file = new LogFile(path, { ...quiet, flushIntervalMs: 20 });
    t.after(() => file.closeSync());
    new AccessLog(file).request(record());
    const deadline = Date.now() + 5000;
    while (file.stats.linesWritten === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(readFileSync(path, 'utf8').split('\n').length, 2, 'the line is in the file');
  });

  it('appends to an existing file', async (t) => {
    const path = join(tempDir(t), 'access.log');
    for (let round = 0; round < 2; round++) {
      const file = new LogFile(path, quiet);
      new AccessLog(file).request(record({ path: `/round${round}` }));
      file.closeSync();
    }
    const paths = readFileSync(path, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l).path);
    assert.deepEqual(paths, ['/round0', '/round1']);
  });

  it('writes what is buffered on closeSync, even with a write in flight', async (t) => {
    const path = join(tempDir(t), 'access.log');
    const file = new LogFile(path, { ...quiet, bufferBytes: 1 });
    const log = new AccessLog(file);
    log.request(record({ path: '/first' })); // starts a write (buffer of 1 byte)
    for (let i = 0; i < 100; i++) log.request(record({ path: `/${i}` })); // waits behind it
    file.closeSync();
    await new Promise((r) => setTimeout(r, 50));
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 101);
    assert.equal(file.stats.linesLost, 0);
  });

  it('counts lines lost to a full disk and reports it once, not once per write', async () => {
    const trouble: string[] = [];
    const file = new LogFile('/dev/full', {
      ...quiet,
      bufferBytes: 1,
      onTrouble: (what, d) => trouble.push(`${what} ${d.error ?? ''}`),
    });
    const log = new AccessLog(file);
    for (let i = 0; i < 50; i++) {
      log.request(record());
      await new Promise((r) => setImmediate(r));
    }
    await file.flush();
    file.closeSync();
    assert.equal(file.stats.linesWritten, 0);
    assert.equal(file.stats.linesLost, 50);
    assert.ok(file.stats.writeErrors >= 2, `${file.stats.writeErrors} failed writes`);
    assert.deepEqual(trouble, ['lost ENOSPC']);
  });

  it('drops and counts lines beyond max_buffer while the destination lags, then says when it writes again', async (t) => {
    const path = join(tempDir(t), 'access.log');
    const trouble: string[] = [];
    const file = new LogFile(path, {
      ...quiet,
      bufferBytes: 1,
      maxBufferBytes: 2000,
      onTrouble: (what, d) => trouble.push(`${what} ${d.lost}`),
    });
    const log = new AccessLog(file);
    // No turn of the event loop between them: the first line's write is in flight, the rest queue up to 2,000 bytes.
    for (let i = 0; i < 100; i++) log.request(record({ path: `/${i}` }));
    await file.flush();
    log.request(record({ path: '/after' }));
    await file.flush();
    file.closeSync();
    const written = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.equal(written.length + file.stats.linesLost, 101, 'every line written or counted');
    assert.ok(file.stats.linesLost > 80, `${file.stats.linesLost} lost`);
    assert.equal(JSON.parse(written.at(-1)!).path, '/after');
    assert.deepEqual(trouble, ['lost 0', `recovered ${file.stats.linesLost}`]);
  });
});
