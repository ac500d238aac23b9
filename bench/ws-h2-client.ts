// Idle clients of the `ws-h2-idle` figure (bench/ws-h2.ts), in a process of their own that
// bench/ws-h2.ts starts pinned to the load core. No WebSocket library: raw sockets and node:http2,
// so the client side stays light and every byte on the wire is known. Three modes:
//
//   upgrade   --count N WebSockets as HTTP/1.1 Upgrades, each on a TCP connection of its own (a GET
//             with a random Sec-WebSocket-Key; the 101 and its Sec-WebSocket-Accept are checked),
//             at most --concurrency opening at once
//   h2-ws     --connections C h2c connections (prior knowledge) × --streams S RFC 8441 streams each
//             (extended CONNECT, `:protocol websocket`, once the server's SETTINGS allow it), at most
//             --concurrency connections opening their streams at once
//   h2-conn   --count N h2c connections, one GET each (the whole response read), at most
//             --concurrency opening at once
//
// In upgrade and h2-ws, each WebSocket sends one masked binary message of --size bytes and waits for
// it to come back (unmasked, as the backend echoes it); then every socket / stream / connection sits
// idle until told to close.
//
//   node bench/ws-h2-client.ts --mode upgrade|h2-ws|h2-conn --port PORT [--path /ws]
//        [--count 10000] [--connections 100] [--streams 100] [--concurrency 200] [--size 32]
//        [--max-seconds 300]
//
// Protocol, one JSON object per line on stdout:
//   {"event":"ready", opened, served, failed, errors, elapsedMs}   every item is served (or failed)
//     opened: TCP connections open at that moment; served: WebSockets (upgrade, h2-ws) or connections
//     (h2-conn) that completed their exchange (the divisor)
//   then, on the line "close" on stdin (or when stdin ends):
//   {"event":"closed", open, closedByPeer}   then every connection is dropped and the process exits 0
// It exits by itself (code 3) after --max-seconds.

import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    port: { type: 'string' },
    path: { type: 'string', default: '/ws' },
    count: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '100' },
    streams: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '200' },
    size: { type: 'string', default: '32' },
    'max-seconds': { type: 'string', default: '300' },
  },
  strict: true,
});

function int(name: string, text: string | undefined, min = 1): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`ws-h2-client: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return n;
}

const mode = values.mode;
if (mode !== 'upgrade' && mode !== 'h2-ws' && mode !== 'h2-conn') {
  process.stderr.write(`ws-h2-client: --mode must be upgrade, h2-ws or h2-conn, got ${JSON.stringify(mode)}\n`);
  process.exit(2);
}
const port = int('port', values.port);
const path = values.path;
const size = int('size', values.size);
if (size > 125) {
  process.stderr.write('ws-h2-client: --size must be at most 125 (one short frame)\n');
  process.exit(2);
}
const concurrency = int('concurrency', values.concurrency);
const maxSeconds = int('max-seconds', values['max-seconds']);
const TIMEOUT_MS = 15_000;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const authority = `127.0.0.1:${port}`;

setTimeout(() => {
  process.stderr.write(`ws-h2-client: still running after ${maxSeconds} s; exiting\n`);
  process.exit(3);
}, maxSeconds * 1000).unref();

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** A masked binary frame of `size` bytes (what a client sends) and the unmasked frame the echo must be. */
function frames(): { sent: Buffer; echo: Buffer } {
  const payload = randomBytes(size);
  const mask = randomBytes(4);
  const sent = Buffer.alloc(6 + size);
  sent[0] = 0x82;
  sent[1] = 0x80 | size;
  mask.copy(sent, 2);
  for (let i = 0; i < size; i++) sent[6 + i] = payload[i]! ^ mask[i & 3]!;
  const echo = Buffer.alloc(2 + size);
  echo[0] = 0x82;
  echo[1] = size;
  payload.copy(echo, 2);
  return { sent, echo };
}

// ---------------------------------------------------------------------------
// bookkeeping shared by the modes

const errors = new Set<string>();
let served = 0;
let failed = 0;
let closedByPeer = 0;
let closing = false;
let readySent = false;
const t0 = performance.now();
/** the open sockets and sessions (counted in "opened") */
const held = new Set<object>();

function fail(reason: string): void {
  failed++;
  if (errors.size < 5) errors.add(reason);
}

function maybeReady(total: number): void {
  if (readySent || served + failed < total) return;
  readySent = true;
  emit({
    event: 'ready',
    opened: held.size,
    served,
    failed,
    errors: [...errors],
    elapsedMs: Math.round(performance.now() - t0),
  });
}

/** Runs `count` tasks, `limit` at a time. */
function pool(count: number, limit: number, task: (i: number) => Promise<void>): void {
  let started = 0;
  const next = (): void => {
    if (started >= count) return;
    const i = started++;
    void task(i).finally(next);
  };
  for (let k = 0; k < Math.min(limit, count); k++) next();
}

/** Waits for `bytes` bytes of `source` (a socket or stream), then compares them with `expected`. */
function readExactly(
  source: NodeJS.EventEmitter,
  expected: Buffer,
  what: string,
  onDone: (err: string | undefined) => void,
): void {
  let got: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => finish(`${what}: no echo within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  let done = false;
  const onData = (chunk: Buffer): void => {
    got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
    if (got.length >= expected.length) {
      finish(got.equals(expected) ? undefined : `${what}: echo differs (${got.length} bytes)`);
    }
  };
  const finish = (err: string | undefined): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    source.off('data', onData);
    onDone(err);
  };
  source.on('data', onData);
  source.once('close', () => finish(`${what}: closed before the echo`));
}

// ---------------------------------------------------------------------------
// upgrade: HTTP/1.1 Upgrade on raw sockets

function upgradeOne(): Promise<void> {
  return new Promise((resolve) => {
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    const { sent, echo } = frames();
    const socket = net.connect(port, '127.0.0.1');
    held.add(socket);
    let state: 'handshake' | 'echo' | 'idle' | 'failed' = 'handshake';
    const settle = (err: string | undefined): void => {
      if (state === 'idle' || state === 'failed') return;
      clearTimeout(timer);
      if (err === undefined) {
        state = 'idle';
        served++;
      } else {
        state = 'failed';
        fail(err);
        socket.destroy();
      }
      resolve();
    };
    const timer = setTimeout(() => settle(`no 101 within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
    socket.on('error', (e: Error & { code?: string }) => settle(e.code ?? e.message));
    socket.on('close', () => {
      held.delete(socket);
      if (closing) return;
      if (state === 'idle') closedByPeer++;
      else settle('closed before the echo');
    });
    socket.on('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    let head: Buffer = Buffer.alloc(0);
    const onHead = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16 * 1024) settle('response head over 16 KiB');
        return;
      }
      socket.off('data', onHead);
      const text = head.toString('latin1', 0, end);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      if (status !== '101') {
        settle(`handshake answered ${status ?? '?'}`);
        return;
      }
      const got = /^sec-websocket-accept:\s*(\S+)/im.exec(text)?.[1];
      if (got !== accept) {
        settle(`wrong Sec-WebSocket-Accept ${JSON.stringify(got)}`);
        return;
      }
      if (head.length > end + 4) {
        settle(`${head.length - end - 4} bytes after the 101 before any message`);
        return;
      }
      state = 'echo';
      readExactly(socket, echo, 'upgrade', settle);
      socket.write(sent);
    };
    socket.on('data', onHead);
  });
}

function runUpgrade(): void {
  const count = int('count', values.count);
  pool(count, concurrency, async (): Promise<void> => {
    await upgradeOne();
    maybeReady(count);
  });
}

// ---------------------------------------------------------------------------
// h2 connections

/** One h2c session; resolves once the server's first SETTINGS arrived (or rejects). */
function connectH2(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${authority}`);
    held.add(session);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no SETTINGS within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    session.once('remoteSettings', () => {
      clearTimeout(timer);
      resolve(session);
    });
    session.once('error', (e: Error & { code?: string }) => {
      clearTimeout(timer);
      reject(new Error(e.code ?? e.message));
    });
    session.on('close', () => held.delete(session));
  });
}

/** One RFC 8441 WebSocket on `session`: 200, then one message echoed. */
function h2WsOne(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    const { sent, echo } = frames();
    let state: 'handshake' | 'echo' | 'idle' | 'failed' = 'handshake';
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'http',
        ':path': path,
        ':authority': authority,
        'sec-websocket-version': '13',
      },
      { endStream: false },
    );
    const settle = (err: string | undefined): void => {
      if (state === 'idle' || state === 'failed') return;
      clearTimeout(timer);
      if (err === undefined) {
        state = 'idle';
        served++;
      } else {
        state = 'failed';
        fail(err);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
      resolve();
    };
    const timer = setTimeout(() => settle(`no 200 within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
    stream.on('error', (e: Error & { code?: string }) => settle(e.code ?? e.message));
    stream.on('close', () => {
      if (closing) return;
      if (state === 'idle') closedByPeer++;
      else settle(`stream closed before the echo (code ${stream.rstCode})`);
    });
    stream.once('response', (headers) => {
      const status = String(headers[':status']);
      if (status !== '200') {
        settle(`extended CONNECT answered ${status}`);
        return;
      }
      state = 'echo';
      readExactly(stream, echo, 'h2-ws', settle);
      stream.write(sent);
    });
  });
}

function runH2Ws(): void {
  const connections = int('connections', values.connections);
  const streams = int('streams', values.streams);
  const total = connections * streams;
  pool(connections, concurrency, async (): Promise<void> => {
    let session: http2.ClientHttp2Session;
    try {
      session = await connectH2();
    } catch (err) {
      for (let i = 0; i < streams; i++) fail(`h2 connection: ${(err as Error).message}`);
      maybeReady(total);
      return;
    }
    if (!session.remoteSettings.enableConnectProtocol) {
      for (let i = 0; i < streams; i++) fail('the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL');
      maybeReady(total);
      return;
    }
    session.on('error', (e: Error & { code?: string }) => {
      if (!closing && errors.size < 5) errors.add(`session: ${e.code ?? e.message}`);
    });
    await Promise.all(Array.from({ length: streams }, () => h2WsOne(session)));
    maybeReady(total);
  });
}

/** One h2c connection serving one GET (the whole response read), then left idle. */
async function h2ConnOne(): Promise<void> {
  let session: http2.ClientHttp2Session;
  try {
    session = await connectH2();
  } catch (err) {
    fail(`h2 connection: ${(err as Error).message}`);
    return;
  }
  let idle = false;
  session.on('error', () => {});
  session.on('close', () => {
    if (idle && !closing) closedByPeer++;
  });
  await new Promise<void>((resolve) => {
    const req = session.request({ ':method': 'GET', ':path': '/', ':scheme': 'http', ':authority': authority });
    let status = '?';
    const timer = setTimeout(() => finish(`no response within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
    let done = false;
    const finish = (err: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err === undefined) {
        idle = true;
        served++;
      } else {
        fail(err);
        session.destroy();
      }
      resolve();
    };
    req.on('response', (headers) => {
      status = String(headers[':status']);
    });
    req.on('data', () => {});
    req.on('end', () => finish(status === '200' ? undefined : `GET / answered ${status}`));
    req.on('error', (e: Error & { code?: string }) => finish(e.code ?? e.message));
    req.end();
  });
}

function runH2Conn(): void {
  const count = int('count', values.count);
  pool(count, concurrency, async (): Promise<void> => {
    await h2ConnOne();
    maybeReady(count);
  });
}

// ---------------------------------------------------------------------------

function closeAll(): void {
  if (closing) return;
  closing = true;
  emit({ event: 'closed', open: held.size, closedByPeer });
  // Exiting closes every socket (a FIN each) without a word of HTTP/2. Destroying the sessions first
  // would have node:http2 send RST_STREAM(NO_ERROR) for the open streams, then GOAWAY: muxgate takes
  // such a reset of a tunnel stream for a clean end and keeps the tunnel until upgrade_idle_timeout
  // (see the notes in bench/ws-h2.ts), which would leave the warm-up's tunnels in the "before" figure.
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'close') closeAll();
});
// the harness went away: do not linger
lines.on('close', closeAll);

if (mode === 'upgrade') runUpgrade();
else if (mode === 'h2-ws') runH2Ws();
else runH2Conn();
