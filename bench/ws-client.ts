// WebSocket load for the `ws` figure (bench/ws.ts): `ws` clients in a process of their own, which
// bench/ws.ts starts pinned to the load core. Binary messages, no permessage-deflate. Three modes:
//
//   rtt         --sockets N (default 1) each send one --size byte message, wait for its echo, send
//               the next (ping-pong); round-trip times of the echoes received in the measured window
//   throughput  --sockets N each keep --window messages of --size bytes in flight (a new one per echo
//               received); echoes received in the measured window
//   idle        opens --count sockets (at most --concurrency opening at once); each sends one --size
//               message and waits for its echo, then sits idle until told to close
//
//   node bench/ws-client.ts --mode rtt|throughput|idle --url ws://127.0.0.1:PORT/
//        [--sockets 1] [--size 32] [--window 16] [--warmup 1] [--duration 5]
//        [--count 5000] [--concurrency 200] [--max-seconds 300]
//
// Protocol, one JSON object per line on stdout:
//   rtt / throughput:
//     {"event":"connected", sockets, elapsedMs}    every socket is open; the warm-up starts
//     {"event":"measuring"}                        the warm-up is over; the measured window starts
//     {"event":"result", mode, seconds, ...}       the measured window is over (see WsResult in ws.ts)
//     {"event":"closed", unexpectedCloses, unclean} after in-flight echoes drained and every socket closed
//     then the process exits 0
//   idle:
//     {"event":"ready", opened, served, failed, errors, elapsedMs}   every socket has its echo (or failed)
//     then, on the line "close" on stdin (or when stdin ends):
//     {"event":"closed", open, closedByPeer}   then every socket is dropped and the process exits 0
// Any mode exits by itself (code 3) after --max-seconds.

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    url: { type: 'string' },
    sockets: { type: 'string', default: '1' },
    size: { type: 'string', default: '32' },
    window: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '5' },
    count: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '200' },
    'max-seconds': { type: 'string', default: '300' },
  },
  strict: true,
});

function int(name: string, text: string | undefined, min = 1): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`ws-client: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

const mode = values.mode;
const url = values.url;
if (mode !== 'rtt' && mode !== 'throughput' && mode !== 'idle') {
  process.stderr.write(`ws-client: --mode must be rtt, throughput or idle, got ${JSON.stringify(mode)}\n`);
  process.exit(2);
}
if (url === undefined) {
  process.stderr.write('ws-client: --url is required\n');
  process.exit(2);
}
const size = int('size', values.size);
const maxSeconds = int('max-seconds', values['max-seconds']);
const HANDSHAKE_TIMEOUT_MS = 15_000;
const payload = Buffer.alloc(size, 'x');

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

setTimeout(() => {
  process.stderr.write(`ws-client: still running after ${maxSeconds} s; exiting\n`);
  process.exit(3);
}, maxSeconds * 1000).unref();

/** One WebSocket, open (resolves) or failed (rejects with a short reason). */
function connect(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url as string, {
      perMessageDeflate: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: 1024 * 1024,
    });
    ws.binaryType = 'nodebuffer';
    const onError = (err: Error & { code?: string }): void => {
      ws.off('open', onOpen);
      reject(new Error(err.code ?? err.message));
    };
    const onUnexpected = (_req: unknown, res: { statusCode?: number }): void => {
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.on('error', () => {});
      ws.terminate();
      reject(new Error(`handshake answered ${res.statusCode ?? '?'}`));
    };
    const onOpen = (): void => {
      ws.off('error', onError);
      ws.off('unexpected-response', onUnexpected);
      resolve(ws);
    };
    ws.once('open', onOpen);
    ws.once('error', onError);
    ws.once('unexpected-response', onUnexpected);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

// ---------------------------------------------------------------------------
// rtt and throughput

async function loaded(kind: 'rtt' | 'throughput'): Promise<void> {
  const n = int('sockets', values.sockets);
  const window = kind === 'rtt' ? 1 : int('window', values.window);
  const warmupMs = int('warmup', values.warmup, 0) * 1000;
  const durationMs = int('duration', values.duration) * 1000;
  const t0 = performance.now();
  const sockets = await Promise.all(Array.from({ length: n }, connect));
  emit({ event: 'connected', sockets: sockets.length, elapsedMs: Math.round(performance.now() - t0) });

  let phase: 'warmup' | 'measure' | 'drain' = 'warmup';
  let measureStart = 0;
  let received = 0;
  let wrongSize = 0;
  let unexpectedCloses = 0;
  let unclean = 0;
  const errors = new Set<string>();
  let samples = new Float64Array(1 << 16);
  let nSamples = 0;
  let inFlight = 0;
  let drained: (() => void) | undefined;

  for (const ws of sockets) {
    // echoes come back in order on a socket: the send times of its messages in flight, oldest first
    const sentAt: number[] = [];
    let head = 0;
    const send = (): void => {
      sentAt.push(performance.now());
      inFlight++;
      ws.send(payload, { binary: true });
    };
    ws.on('message', (data: Buffer) => {
      const now = performance.now();
      const at = sentAt[head++] ?? now;
      if (head > 4096) {
        sentAt.splice(0, head);
        head = 0;
      }
      inFlight--;
      if (data.length !== size) wrongSize++;
      if (phase === 'measure') {
        received++;
        if (kind === 'rtt' && at >= measureStart) {
          if (nSamples === samples.length) {
            const bigger = new Float64Array(samples.length * 2);
            bigger.set(samples);
            samples = bigger;
          }
          samples[nSamples++] = (now - at) * 1000; // µs
        }
      }
      if (phase !== 'drain') send();
      else if (inFlight === 0) drained?.();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (errors.size < 5) errors.add(err.code ?? err.message);
    });
    ws.on('close', (code: number) => {
      if (phase !== 'drain') unexpectedCloses++;
      else if (code !== 1000) unclean++;
    });
    for (let i = 0; i < window; i++) send();
  }

  await sleep(warmupMs);
  phase = 'measure';
  measureStart = performance.now();
  emit({ event: 'measuring' });
  await sleep(durationMs);
  const seconds = (performance.now() - measureStart) / 1000;
  phase = 'drain';
  const common = {
    event: 'result',
    mode: kind,
    sockets: n,
    size,
    window,
    seconds,
    messages: received,
    wrongSize,
    unexpectedCloses,
    errors: [...errors],
  };
  if (kind === 'rtt') {
    const sorted = samples.subarray(0, nSamples).sort();
    emit({
      ...common,
      samples: nSamples,
      p50Us: percentile(sorted, 50),
      p90Us: percentile(sorted, 90),
      p99Us: percentile(sorted, 99),
      p999Us: percentile(sorted, 99.9),
      maxUs: percentile(sorted, 100),
    });
  } else {
    emit({ ...common, messagesPerS: received / seconds, bytesPerS: (received * size) / seconds });
  }

  // let the echoes in flight come back, then close every socket cleanly
  if (inFlight > 0) {
    await Promise.race([
      new Promise<void>((resolve) => {
        drained = resolve;
      }),
      sleep(3000),
    ]);
  }
  const closes = sockets.map(
    (ws) =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) resolve();
        else ws.once('close', () => resolve());
      }),
  );
  for (const ws of sockets) if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  await Promise.race([Promise.all(closes), sleep(3000)]);
  emit({ event: 'closed', unexpectedCloses, unclean, inFlight });
  process.exit(0);
}

// ---------------------------------------------------------------------------
// idle

function idle(): void {
  const count = int('count', values.count);
  const concurrency = int('concurrency', values.concurrency);
  const sockets = new Set<WebSocket>();
  const errors = new Set<string>();
  let started = 0;
  let opening = 0;
  let served = 0;
  let failed = 0;
  let closedByPeer = 0;
  let closing = false;
  let readySent = false;
  const t0 = performance.now();

  const fail = (reason: string): void => {
    failed++;
    if (errors.size < 5) errors.add(reason);
  };
  const settled = (): void => {
    opening--;
    pump();
    if (!readySent && served + failed === count) {
      readySent = true;
      emit({
        event: 'ready',
        opened: sockets.size,
        served,
        failed,
        errors: [...errors],
        elapsedMs: Math.round(performance.now() - t0),
      });
    }
  };
  const openOne = (): void => {
    started++;
    opening++;
    connect().then(
      (ws) => {
        sockets.add(ws);
        let state: 'waiting' | 'idle' | 'failed' = 'waiting';
        const timer = setTimeout(() => {
          if (state !== 'waiting') return;
          state = 'failed';
          fail(`no echo within ${HANDSHAKE_TIMEOUT_MS} ms`);
          ws.terminate();
          settled();
        }, HANDSHAKE_TIMEOUT_MS);
        ws.on('error', () => {});
        ws.once('message', (data: Buffer) => {
          clearTimeout(timer);
          if (state !== 'waiting') return;
          if (data.length === size) {
            state = 'idle';
            served++;
          } else {
            state = 'failed';
            fail(`echo of ${data.length} bytes, expected ${size}`);
            ws.terminate();
          }
          settled();
        });
        ws.on('close', () => {
          sockets.delete(ws);
          if (closing) return;
          if (state === 'waiting') {
            clearTimeout(timer);
            state = 'failed';
            fail('closed before the echo');
            settled();
          } else if (state === 'idle') {
            closedByPeer++;
          }
        });
        ws.send(payload, { binary: true });
      },
      (err: Error) => {
        fail(err.message);
        settled();
      },
    );
  };
  const pump = (): void => {
    while (opening < concurrency && started < count) openOne();
  };
  const closeAll = (): void => {
    if (closing) return;
    closing = true;
    emit({ event: 'closed', open: sockets.size, closedByPeer });
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() === 'close') closeAll();
  });
  // the harness went away: do not linger
  lines.on('close', closeAll);
  pump();
}

if (mode === 'idle') {
  idle();
} else {
  loaded(mode).catch((err: unknown) => {
    process.stderr.write(`ws-client: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
