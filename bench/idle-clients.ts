// Holds many idle keep-alive HTTP/1.1 connections open to one server: opens
// `--count` connections (at most `--concurrency` connecting or waiting for
// their response at once), sends one GET on each and reads the whole
// response, so that every connection has served a request and then sits idle
// in keep-alive. Run as its own process (bench/idle-clients-process.ts starts
// it, pinned to the load core) so that its memory and CPU are not the
// harness's.
//
//   node bench/idle-clients.ts --port 18101 [--host 127.0.0.1] [--count 9000]
//        [--path /] [--concurrency 200] [--max-seconds 300]
//
// Protocol, one JSON object per line on stdout:
//   {"event":"ready", opened, served, failed, notKeptAlive, errors, elapsedMs}
//       once every connection has its response (or failed)
//   then, on the line "close" on stdin (or when stdin ends):
//   {"event":"closed", open, closedByPeer, unexpectedBytes}
//       `open`: connections still open at that moment; `closedByPeer`: served
//       connections the server closed while they idled; then every connection
//       is closed and the process exits 0.
// It exits by itself (code 3) after --max-seconds, whatever happens.

import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    count: { type: 'string', default: '9000' },
    path: { type: 'string', default: '/' },
    concurrency: { type: 'string', default: '200' },
    'max-seconds': { type: 'string', default: '300' },
  },
  strict: true,
});

function int(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`idle-clients: --${name} must be a positive integer, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

const host = values.host;
const port = int('port', values.port);
const count = int('count', values.count);
const concurrency = int('concurrency', values.concurrency);
const maxSeconds = int('max-seconds', values['max-seconds']);
const RESPONSE_TIMEOUT_MS = 15_000;

const request = Buffer.from(
  `GET ${values.path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: muxgate-bench-idle-clients\r\n\r\n`,
  'latin1',
);

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

interface Parsed {
  done: boolean;
  status?: number;
  keepAlive?: boolean;
  error?: string;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** Whether `buf` holds one whole response (Content-Length or chunked body). */
function parseResponse(buf: Buffer): Parsed {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return { done: false };
  const head = buf.subarray(0, end).toString('latin1');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (!status) return { done: true, error: `bad status line ${JSON.stringify(head.split('\r\n')[0])}` };
  const header = (name: string): string | undefined =>
    new RegExp(`\r\n${name}:[ \t]*([^\r]*)`, 'i').exec(head)?.[1]?.trim().toLowerCase();
  const keepAlive = !/\bclose\b/.test(header('connection') ?? '') && !head.startsWith('HTTP/1.0');
  const body = buf.length - end - HEAD_END.length;
  const length = header('content-length');
  if (length !== undefined) {
    return body >= Number(length) ? { done: true, status: Number(status[1]), keepAlive } : { done: false };
  }
  if (header('transfer-encoding')?.endsWith('chunked')) {
    const tail = buf.subarray(buf.length - LAST_CHUNK.length);
    return tail.equals(LAST_CHUNK) ? { done: true, status: Number(status[1]), keepAlive } : { done: false };
  }
  return { done: true, error: 'response without Content-Length or chunked body (not reusable)' };
}

const sockets = new Set<net.Socket>();
let started = 0;
let inFlight = 0;
let served = 0;
let failed = 0;
let notKeptAlive = 0;
let closedByPeer = 0;
let unexpectedBytes = 0;
let closing = false;
let readySent = false;
const errors = new Set<string>();
const t0 = performance.now();

function fail(message: string): void {
  failed++;
  if (errors.size < 5) errors.add(message);
}

function settled(): void {
  inFlight--;
  pump();
  if (!readySent && served + failed === count) {
    readySent = true;
    emit({
      event: 'ready',
      opened: sockets.size,
      served,
      failed,
      notKeptAlive,
      errors: [...errors],
      elapsedMs: Math.round(performance.now() - t0),
    });
  }
}

function openOne(): void {
  started++;
  inFlight++;
  let buf: Buffer = Buffer.alloc(0);
  let state: 'waiting' | 'idle' | 'failed' = 'waiting';
  const socket = net.connect({ host, port, noDelay: true });
  sockets.add(socket);
  const timer = setTimeout(() => {
    if (state !== 'waiting') return;
    state = 'failed';
    fail(`no response within ${RESPONSE_TIMEOUT_MS} ms`);
    socket.destroy();
    settled();
  }, RESPONSE_TIMEOUT_MS);
  socket.once('connect', () => socket.write(request));
  socket.on('data', (chunk: Buffer) => {
    if (state !== 'waiting') {
      unexpectedBytes += chunk.length;
      return;
    }
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const r = parseResponse(buf);
    if (!r.done) return;
    clearTimeout(timer);
    buf = Buffer.alloc(0);
    if (r.error !== undefined || r.status !== 200) {
      state = 'failed';
      fail(r.error ?? `status ${r.status}`);
      socket.destroy();
    } else {
      state = 'idle';
      served++;
      if (!r.keepAlive) notKeptAlive++;
    }
    settled();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (state === 'waiting') {
      clearTimeout(timer);
      state = 'failed';
      fail(err.code ?? err.message);
      settled();
    }
  });
  socket.on('close', () => {
    sockets.delete(socket);
    if (closing) return;
    if (state === 'waiting') {
      clearTimeout(timer);
      state = 'failed';
      fail('closed before the response ended');
      settled();
    } else if (state === 'idle') {
      closedByPeer++;
    }
  });
}

function pump(): void {
  while (inFlight < concurrency && started < count) openOne();
}

function closeAll(): void {
  if (closing) return;
  closing = true;
  emit({ event: 'closed', open: sockets.size, closedByPeer, unexpectedBytes });
  for (const s of sockets) s.destroy();
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'close') closeAll();
});
// the harness went away: do not linger
lines.on('close', closeAll);

setTimeout(() => {
  process.stderr.write(`idle-clients: still running after ${maxSeconds} s; exiting\n`);
  process.exit(3);
}, maxSeconds * 1000).unref();
// (unref: the open sockets and stdin keep the process alive until then)

pump();
