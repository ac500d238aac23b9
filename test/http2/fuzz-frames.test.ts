/**
 * Property-based fuzzing of the HTTP/2 engine's frame parser and connection state machine
 * (Http2Connection, server role), driven without a network: the transport falls back to 'data'
 * events and socket.write when the socket has no libuv handle, so a plain Duplex stands in for it.
 *
 * Every generated input runs three times, each on its own connection:
 *  A. each run of bytes (between driver operations) in one onBytes call, then one flush;
 *  B. the same bytes cut at random points, from a reused buffer scribbled over after every call
 *     (onBytes input is only valid during the call), then one flush. A and B must write the same
 *     bytes and tell the handler the same things: partial frames are handled identically;
 *  C. one frame at a time, each cut at random points, flushed after every piece: here what the
 *     connection writes is checked against exactly the windows and settings the peer had granted
 *     when it was written.
 * Properties: no exception escapes (onBytes, flushes, the handler's calls into the engine); every
 * frame written is well-formed; DATA never exceeds the peer's max frame size or the flow-control
 * windows it granted; WINDOW_UPDATEs never take the peer's window past 2^31-1; header blocks decode
 * with a mirror HPACK decoder to what the handler sent; after a GOAWAY with an error code the
 * connection reports closed and writes nothing more; every connection is destroyed, reports onClose
 * once and leaves the sweeper.
 *
 * The handler uses the stream API as the proxy's owners do: one head, body after it, one end.
 * The fake socket never pushes back (huge high-water mark), so runs are deterministic; congestion
 * is reached through the 'drain' operation only.
 *
 * What it found is kept as plain tests in fuzz-regressions.test.ts. While a new finding is open,
 * let it through here with a comment naming its regression test, so the fuzzer can go on.
 *
 * Reproducible by default (fixed seed); FUZZ_SEED picks another seed, FUZZ_RUNS the runs per
 * property (FUZZ_PATH, with the seed of a failure report, replays just the shrunk counterexample),
 * FUZZ_STATS=1 prints how the runs ended (to tune the generators).
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.ts';
import { sweeper } from '../../src/core/sweeper.ts';
import {
  type ConnectionFailure,
  type ConnectionHandler,
  type ConnectionOptions,
  Http2Connection,
} from '../../src/http2/connection.ts';
import { DEFAULT_FLOOD_LIMITS, type FloodLimits } from '../../src/http2/flood-guard.ts';
import { HpackDecoder } from '../../src/http2/hpack-decoder.ts';
import { HpackEncoder } from '../../src/http2/hpack-encoder.ts';
import type { Http2Stream, StreamSink } from '../../src/http2/stream.ts';

const params = fuzzParams(0x6d7867, 500);

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const MAX_ID = 2 ** 31 - 1;
const MAX_WINDOW = 2 ** 31 - 1;
const BIG_LIST = 1 << 20;
/** Frame types (RFC 9113 §6). */
const DATA = 0;
const HEADERS = 1;
const PRIORITY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const CONTINUATION = 9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;
const HIGHEST_ERROR_CODE = 0xd;

// ---------------------------------------------------------------------------------------------
// What the peer sends: frame specs and driver operations

type Op =
  | { op: 'shutdown' }
  | { op: 'ping' }
  | { op: 'expire'; what: 'settings' | 'stall' }
  | { op: 'drain' }
  | { op: 'stream'; pick: number; act: StreamAct };

type StreamAct =
  | { a: 'write'; n: number }
  | { a: 'end' }
  | { a: 'trailers' }
  | { a: 'reset'; code: number }
  | { a: 'pause' }
  | { a: 'resume' }
  | { a: 'respond'; endStream: boolean };

/**
 * A stream id: a number as is (a small set, so that frames collide: 0, 1, 2, 3, 5, 7, 2^31-1, with
 * the reserved bit sometimes set), or relative to the streams the peer opened so far, which keeps
 * runs going past the first frames: 'new' the next odd id, 'cur' the last opened, 'prev' the one
 * before it.
 */
type IdRef = number | 'new' | 'cur' | 'prev';

type Block = { kind: 'fields'; fields: string[] } | { kind: 'raw'; bytes: Uint8Array };

type Spec =
  | { t: 'raw'; type: number; flags: number; id: IdRef; payload: Uint8Array }
  | { t: 'oversize'; type: number; id: IdRef; len: number }
  | { t: 'data'; id: IdRef; endStream: boolean; len: number; pad: number; badPad: boolean }
  | {
      t: 'headers';
      id: IdRef;
      endStream: boolean;
      block: Block;
      pad: number;
      priority: { dep: IdRef; weight: number } | null;
      cuts: number[];
      endHeaders: boolean;
      interrupt: Spec | null;
    }
  | { t: 'settings'; ack: boolean; entries: [number, number][]; junk: number }
  | { t: 'window'; id: IdRef; inc: number; len: number }
  | { t: 'ping'; ack: boolean; data: Uint8Array }
  | { t: 'rst'; id: IdRef; code: number; len: number }
  | { t: 'priority'; id: IdRef; dep: IdRef; len: number }
  | { t: 'goaway'; last: IdRef; code: number; debug: string }
  | { t: 'continuation'; id: IdRef; flags: number; payload: Uint8Array }
  | { t: 'op'; op: Op };

/** What the handler does with the n-th stream it is given (cycled). */
type Action =
  | {
      kind: 'respond';
      status: string;
      extra: string[];
      body: number;
      end: 'end' | 'trailers' | 'stop' | 'none' | 'headers-only';
    }
  | { kind: 'reset'; code: number }
  | { kind: 'nothing' }
  | { kind: 'later'; body: number }
  | { kind: 'pause' }
  | { kind: 'reset-on-data'; code: number };

const latin1Char = fc
  .oneof({ weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, fc.integer({ min: 0, max: 0xff }))
  .map((c) => String.fromCharCode(c));
const latin1 = (maxLength: number) => fc.string({ unit: latin1Char, maxLength });

const fixedId = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(0, 1, 2, 3, 5, 7, MAX_ID) },
  // The reserved bit set: it must be ignored.
  fc.constantFrom(0x80000001, 0x80000003),
);
const streamId: fc.Arbitrary<IdRef> = fc.oneof(
  { weight: 3, arbitrary: fixedId },
  { weight: 6, arbitrary: fc.constant('cur' as const) },
  { weight: 2, arbitrary: fc.constant('prev' as const) },
  fc.constant('new' as const),
);
const u32 = fc.oneof(
  fc.constantFrom(0, 1, 2, 100, 16383, 16384, 16385, 65535, 65536, 2 ** 24 - 1, 2 ** 24, MAX_ID, 2 ** 31, 2 ** 32 - 1),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
);
const errorCode = fc.oneof(fc.integer({ min: 0, max: 0xd }), fc.constantFrom(0xe, 0xffffffff));

const headerName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('accept', 'user-agent', 'x-a', 'cookie', 'content-type', 'x-forwarded-for') },
  latin1(8),
);
const headerValue = fc.oneof(
  { weight: 4, arbitrary: latin1(16) },
  fc.constantFrom('', 'trailers', '0', 'a'.repeat(300)),
);

/** A request head, sometimes malformed (RFC 9113 §8.2, §8.3). */
const requestFields: fc.Arbitrary<string[]> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'HEAD', 'CONNECT', 'PUT'),
    path: fc.constantFrom('/', '/a', '/x?y=1', '', '*'),
    extra: fc.array(fc.tuple(headerName, headerValue), { maxLength: 4 }),
    contentLength: fc.option(fc.oneof(fc.integer({ min: 0, max: 400 }).map(String), fc.constantFrom('x', '-1', '1,1'))),
    mutation: fc.constantFrom(
      'none',
      'none',
      'none',
      'none',
      'uppercase',
      'crlf',
      'nul',
      'pseudo-after',
      'unknown-pseudo',
      'no-path',
      'dup-pseudo',
      'connection',
      'te',
      'protocol',
      'empty-name',
      'huge',
    ),
  })
  .map(({ method, path, extra, contentLength, mutation }) => {
    const f = [':method', method, ':scheme', 'https', ':path', path, ':authority', 'a.example'];
    for (const [n, v] of extra) f.push(n, v);
    if (contentLength !== null) f.push('content-length', contentLength);
    switch (mutation) {
      case 'uppercase':
        f.push('X-Upper', 'v');
        break;
      case 'crlf':
        f.push('x-crlf', 'a\r\nb: c');
        break;
      case 'nul':
        f.push('x-nul', 'a\0b');
        break;
      case 'pseudo-after':
        f.push(':method', 'GET');
        break;
      case 'unknown-pseudo':
        f.unshift(':foo', 'bar');
        break;
      case 'no-path':
        f.splice(4, 2);
        break;
      case 'dup-pseudo':
        f.unshift(':path', '/dup');
        break;
      case 'connection':
        f.push('connection', 'keep-alive');
        break;
      case 'te':
        f.push('te', 'gzip');
        break;
      case 'protocol':
        f.splice(8, 0, ':protocol', 'websocket');
        break;
      case 'empty-name':
        f.push('', 'v');
        break;
      case 'huge':
        f.push('x-huge', 'h'.repeat(20_000));
        break;
    }
    return f;
  });

/** Trailers (or any later header block): regular fields, sometimes a pseudo-field. */
const laterFields: fc.Arbitrary<string[]> = fc
  .tuple(fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 }), fc.boolean())
  .map(([pairs, pseudo]) => {
    const f = pairs.flat();
    if (pseudo) f.push(':status', '200');
    return f;
  });

const block: fc.Arbitrary<Block> = fc.oneof(
  { weight: 6, arbitrary: requestFields.map((fields) => ({ kind: 'fields' as const, fields })) },
  { weight: 2, arbitrary: laterFields.map((fields) => ({ kind: 'fields' as const, fields })) },
  fc.uint8Array({ maxLength: 24 }).map((bytes) => ({ kind: 'raw' as const, bytes })),
);

const rawFrame: fc.Arbitrary<Spec> = fc.record({
  t: fc.constant('raw' as const),
  type: fc.integer({ min: 0, max: 12 }),
  flags: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 4, 5, 8, 0x20, 0x2d)),
  id: streamId,
  payload: fc.uint8Array({ maxLength: 40 }),
});

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant({ op: 'shutdown' as const }),
  fc.constant({ op: 'ping' as const }),
  fc.record({ op: fc.constant('expire' as const), what: fc.constantFrom('settings' as const, 'stall' as const) }),
  fc.constant({ op: 'drain' as const }),
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('stream' as const),
      pick: fc.nat(7),
      act: fc.oneof(
        fc.record({ a: fc.constant('write' as const), n: fc.constantFrom(1, 100, 16384, 70_000, 200_000) }),
        fc.constant({ a: 'end' as const }),
        fc.constant({ a: 'trailers' as const }),
        fc.record({ a: fc.constant('reset' as const), code: errorCode }),
        fc.constant({ a: 'pause' as const }),
        fc.constant({ a: 'resume' as const }),
        fc.record({ a: fc.constant('respond' as const), endStream: fc.boolean() }),
      ),
    }),
  },
);

/** `arb` once in `n` times, else null. */
function rarely<T>(arb: fc.Arbitrary<T>, n: number): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, arb);
}

/** A SETTINGS entry (§6.5.2) with a value valid for its identifier. */
const validSettingsEntry: fc.Arbitrary<[number, number]> = fc.oneof(
  fc.tuple(fc.constant(1), fc.oneof(fc.constantFrom(0, 1, 100, 4096, 65536), fc.nat(70_000))),
  fc.tuple(fc.constant(2), fc.constantFrom(0, 1)),
  fc.tuple(fc.constant(3), fc.oneof(fc.constantFrom(0, 1, 100, 2 ** 32 - 1), fc.nat(1000))),
  fc.tuple(
    fc.constant(4),
    fc.oneof(fc.constantFrom(0, 1, 65535, 65536, MAX_WINDOW - 1, MAX_WINDOW), fc.nat(MAX_WINDOW), fc.nat(200_000)),
  ),
  fc.tuple(
    fc.constant(5),
    fc.oneof(fc.constantFrom(16384, 16385, 2 ** 24 - 1), fc.integer({ min: 16384, max: 2 ** 24 - 1 })),
  ),
  fc.tuple(fc.constant(6), fc.oneof(fc.constantFrom(0, 100, 2 ** 32 - 1), fc.nat(100_000))),
  fc.tuple(fc.constant(8), fc.constantFrom(0, 1)),
  fc.tuple(fc.integer({ min: 9, max: 0xffff }), u32),
);

/** A SETTINGS entry: mostly valid, sometimes anything. */
const settingsEntry = fc.oneof(
  { weight: 8, arbitrary: validSettingsEntry },
  fc.tuple(fc.integer({ min: 0, max: 10 }), u32),
);

const frameSpec: fc.Arbitrary<Spec> = fc.letrec<{ spec: Spec; simple: Spec }>((tie) => ({
  simple: fc.oneof(
    { weight: 2, arbitrary: rawFrame },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('data' as const),
        id: streamId,
        endStream: fc.boolean(),
        len: fc.oneof(
          { weight: 4, arbitrary: fc.integer({ min: 0, max: 64 }) },
          fc.constantFrom(1000, 16000, 16384, 16385),
        ),
        pad: fc.oneof({ weight: 3, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 300 })),
        badPad: fc.boolean(),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('settings' as const),
        ack: fc.boolean(),
        entries: fc.array(settingsEntry, { maxLength: 4 }),
        junk: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: 1, max: 5 })),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('window' as const),
        id: streamId,
        inc: fc.oneof(
          fc.constantFrom(0, 1, 100, 65535, 1 << 20, MAX_ID - 65535, MAX_ID, 2 ** 31),
          fc.integer({ min: 1, max: MAX_ID }),
        ),
        len: fc.oneof({ weight: 10, arbitrary: fc.constant(4) }, fc.constantFrom(0, 3, 5)),
      }),
    },
    fc.record({
      t: fc.constant('ping' as const),
      ack: fc.boolean(),
      data: fc.oneof(
        { weight: 8, arbitrary: fc.uint8Array({ minLength: 8, maxLength: 8 }) },
        fc.uint8Array({ maxLength: 12 }),
      ),
    }),
    fc.record({
      t: fc.constant('rst' as const),
      id: streamId,
      code: errorCode,
      len: fc.oneof({ weight: 10, arbitrary: fc.constant(4) }, fc.constantFrom(0, 3, 8)),
    }),
    fc.record({
      t: fc.constant('priority' as const),
      id: streamId,
      dep: streamId,
      len: fc.oneof({ weight: 10, arbitrary: fc.constant(5) }, fc.constantFrom(0, 4, 6)),
    }),
    fc.record({
      t: fc.constant('goaway' as const),
      last: fc.oneof(streamId, fc.constant(0)),
      code: errorCode,
      debug: latin1(10),
    }),
    fc.record({
      t: fc.constant('continuation' as const),
      id: streamId,
      flags: fc.constantFrom(0, END_HEADERS),
      payload: fc.uint8Array({ maxLength: 8 }),
    }),
    fc.record({
      t: fc.constant('oversize' as const),
      type: fc.constantFrom(DATA, HEADERS, PING, 0xa),
      id: streamId,
      len: fc.constantFrom(16385, 20_000),
    }),
    { weight: 2, arbitrary: fc.record({ t: fc.constant('op' as const), op }) },
  ),
  spec: fc.oneof(
    { weight: 5, arbitrary: tie('simple') },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('headers' as const),
        id: fc.oneof({ weight: 6, arbitrary: fc.constant('new' as const) }, streamId),
        endStream: fc.boolean(),
        block,
        pad: fc.oneof({ weight: 4, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 40 })),
        priority: rarely(fc.record({ dep: streamId, weight: fc.nat(255) }), 4),
        cuts: fc.oneof(
          { weight: 3, arbitrary: fc.constant<number[]>([]) },
          fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
        ),
        endHeaders: fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, fc.constant(false)),
        interrupt: rarely(tie('simple'), 12),
      }),
    },
  ),
})).spec;

/** A request (or trailers) on the newest stream, well-formed. */
const cleanHeaders: fc.Arbitrary<Spec> = fc.record({
  t: fc.constant('headers' as const),
  id: fc.oneof({ weight: 5, arbitrary: fc.constant('new' as const) }, fc.constant('cur' as const)),
  endStream: fc.oneof({ weight: 2, arbitrary: fc.constant(false) }, fc.constant(true)),
  block: fc.oneof(
    { weight: 4, arbitrary: requestFields.map((fields) => ({ kind: 'fields' as const, fields })) },
    laterFields.map((fields) => ({ kind: 'fields' as const, fields })),
  ),
  pad: fc.oneof({ weight: 4, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 40 })),
  priority: rarely(fc.record({ dep: fc.constant(0), weight: fc.nat(255) }), 4),
  cuts: fc.oneof(
    { weight: 3, arbitrary: fc.constant<number[]>([]) },
    fc.array(fc.double({ min: 0.01, max: 0.99, noNaN: true }), { maxLength: 2 }),
  ),
  endHeaders: fc.constant(true),
  interrupt: fc.constant(null),
});

/**
 * A frame a well-behaved client could send (on the streams it opened, valid lengths and values),
 * or a driver operation: sequences of these go deep into the stream state machine and flow control.
 */
const cleanSpec: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 4, arbitrary: cleanHeaders },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('data' as const),
      id: fc.oneof({ weight: 12, arbitrary: fc.constant('cur' as const) }, fc.constant('prev' as const)),
      endStream: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, fc.constant(true)),
      len: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 400 }) }, fc.constantFrom(8000, 16000)),
      pad: fc.oneof({ weight: 3, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: 100 })),
      badPad: fc.constant(false),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('window' as const),
      id: fc.oneof(fc.constant('cur' as const), fc.constant(0)),
      inc: fc.oneof(fc.constantFrom(1, 100, 16384, 65535, 1 << 20), fc.integer({ min: 1, max: 1 << 24 })),
      len: fc.constant(4),
    }),
  },
  fc.record({
    t: fc.constant('settings' as const),
    ack: fc.boolean(),
    entries: fc.array(validSettingsEntry, { maxLength: 3 }),
    junk: fc.constant(0),
  }),
  fc.record({
    t: fc.constant('ping' as const),
    ack: fc.boolean(),
    data: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  }),
  fc.record({ t: fc.constant('rst' as const), id: fc.constant('cur' as const), code: errorCode, len: fc.constant(4) }),
  fc.record({
    t: fc.constant('priority' as const),
    id: fc.constant('cur' as const),
    dep: fc.constant(0),
    len: fc.constant(5),
  }),
  { weight: 3, arbitrary: fc.record({ t: fc.constant('op' as const), op }) },
);

/** The frames after the client's SETTINGS: well-behaved, anything, or well-behaved with some noise. */
const frameSequence = fc.oneof(
  fc
    .tuple(cleanHeaders, fc.array(cleanSpec, { minLength: 2, maxLength: 40, size: 'medium' }))
    .map(([h, rest]) => [h, ...rest]),
  fc.array(frameSpec, { maxLength: 24 }),
  fc
    .tuple(
      cleanHeaders,
      fc.array(fc.oneof({ weight: 9, arbitrary: cleanSpec }, frameSpec), { maxLength: 40, size: 'medium' }),
    )
    .map(([h, rest]) => [h, ...rest]),
);

const clientSettings: fc.Arbitrary<Spec> = fc.record({
  t: fc.constant('settings' as const),
  ack: fc.constant(false),
  entries: fc.array(settingsEntry, { maxLength: 3 }),
  junk: fc.constant(0),
});

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('respond' as const),
      status: fc.constantFrom('200', '204', '404', '500'),
      extra: fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 }).map((p) => p.flat()),
      body: fc.constantFrom(0, 1, 100, 16384, 16385, 70_000, 150_000),
      end: fc.constantFrom(
        'end' as const,
        'trailers' as const,
        'stop' as const,
        'none' as const,
        'headers-only' as const,
      ),
    }),
  },
  fc.record({ kind: fc.constant('reset' as const), code: errorCode }),
  fc.constant({ kind: 'nothing' as const }),
  fc.record({ kind: fc.constant('later' as const), body: fc.constantFrom(0, 10, 70_000) }),
  fc.constant({ kind: 'pause' as const }),
  fc.record({ kind: fc.constant('reset-on-data' as const), code: errorCode }),
);

const floods: fc.Arbitrary<FloodLimits> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(DEFAULT_FLOOD_LIMITS) },
  fc.constant({
    intervalMs: 10_000,
    maxResets: 2,
    resetIntervalMs: 10_000,
    maxSettings: 2,
    maxPings: 2,
    maxEmptyFrames: 2,
    maxWindowUpdates: 4,
    maxPriority: 2,
  }),
);

const connectionOptions: fc.Arbitrary<ConnectionOptions> = fc.record({
  maxConcurrentStreams: fc.constantFrom(1, 2, 100, 100),
  initialWindowSize: fc.constantFrom(0, 1, 100, 65535, 1 << 20, MAX_WINDOW),
  connectionWindowSize: fc.constantFrom(65535, 1 << 20, MAX_WINDOW),
  maxHeaderListSize: fc.constantFrom(100, 16384, 65536, 65536),
  maxHeaderBlockBytes: fc.constantFrom(50, 16384, 65536, 65536, 65536),
  headerTableSize: fc.constantFrom(0, 100, 4096, 65536),
  enableConnectProtocol: fc.boolean(),
  // Far off: only the 'expire' operation (a deterministic clock) may fire them.
  settingsTimeoutMs: fc.constant(120_000),
  stallTimeoutMs: fc.constant(30_000),
  floods,
});

/** Chunk sizes the input is cut into (cycled), for runs B and C. */
const chunking = fc.array(
  fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 12 }) }, fc.integer({ min: 1, max: 3000 })),
  { minLength: 1, maxLength: 6 },
);

// ---------------------------------------------------------------------------------------------
// Serialization

/** Bytes the peer sends (`frames`: whole frames, else the preface), or a driver operation. */
type Piece = { bytes: Buffer; frames: boolean } | { op: Op };

function frameBytes(type: number, flags: number, id: number, payload: Uint8Array): Buffer {
  const f = Buffer.alloc(9 + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(id >>> 0, 5);
  f.set(payload, 9);
  return f;
}

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function fill(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function padded(body: Buffer, pad: number, badPad: boolean): Buffer {
  if (pad < 0) return body;
  const total = 1 + body.length + pad;
  const b = Buffer.alloc(total);
  // A pad length at least the rest of the payload is a PROTOCOL_ERROR (§6.1).
  b[0] = badPad ? Math.min(255, body.length + pad + 1) : pad;
  body.copy(b, 1);
  return b;
}

/**
 * The peer's bytes, one piece per frame (its own HPACK encoder carries its dynamic table across the
 * HEADERS it sends), driver operations between them.
 */
function serialize(specs: Spec[], opts: ConnectionOptions): Piece[] {
  const enc = new HpackEncoder();
  let acked = false;
  let cur = 0;
  let prev = 0;
  const resolve = (r: IdRef): number => {
    if (typeof r === 'number') return r;
    if (r === 'cur') return cur === 0 ? 1 : cur;
    if (r === 'prev') return prev === 0 ? 1 : prev;
    prev = cur;
    cur = cur === 0 ? 1 : Math.min(MAX_ID, cur + 2);
    return cur;
  };
  const pieces: Piece[] = [{ bytes: PREFACE, frames: false }];
  const one = (s: Spec): void => {
    const id = 'id' in s ? resolve(s.id) : 0;
    switch (s.t) {
      case 'raw':
        pieces.push({ frames: true, bytes: frameBytes(s.type, s.flags, id, s.payload) });
        return;
      case 'oversize':
        pieces.push({ frames: true, bytes: frameBytes(s.type, 0, id, Buffer.alloc(s.len)) });
        return;
      case 'data': {
        const payload = padded(fill(s.len, id), s.pad, s.badPad);
        pieces.push({
          frames: true,
          bytes: frameBytes(DATA, (s.endStream ? END_STREAM : 0) | (s.pad >= 0 ? PADDED : 0), id, payload),
        });
        return;
      }
      case 'headers': {
        const blockBytes = s.block.kind === 'fields' ? enc.encode(s.block.fields) : Buffer.from(s.block.bytes);
        // Cut into HEADERS + CONTINUATION fragments, none over the default max frame size.
        const cuts = [...new Set(s.cuts.map((c) => Math.floor(c * blockBytes.length)))].sort((a, b) => a - b);
        const frags: Buffer[] = [];
        let at = 0;
        for (const c of [...cuts, blockBytes.length]) {
          while (c - at > 16000) {
            frags.push(blockBytes.subarray(at, at + 16000));
            at += 16000;
          }
          if (c > at || frags.length === 0) frags.push(blockBytes.subarray(at, c));
          at = Math.max(at, c);
        }
        let first = frags[0]!;
        let flags = s.endStream ? END_STREAM : 0;
        if (s.priority !== null) {
          const p = Buffer.alloc(5);
          p.writeUInt32BE(resolve(s.priority.dep) >>> 0);
          p[4] = s.priority.weight;
          first = Buffer.concat([p, first]);
          flags |= PRIORITY_FLAG;
        }
        if (s.pad >= 0) flags |= PADDED;
        first = padded(first, s.pad, false);
        const last = frags.length === 1;
        pieces.push({
          frames: true,
          bytes: frameBytes(HEADERS, flags | (last && s.endHeaders ? END_HEADERS : 0), id, first),
        });
        for (let i = 1; i < frags.length; i++) {
          if (i === 1 && s.interrupt !== null) one(s.interrupt);
          const end = i === frags.length - 1 && s.endHeaders ? END_HEADERS : 0;
          pieces.push({ frames: true, bytes: frameBytes(CONTINUATION, end, id, frags[i]!) });
        }
        if (frags.length === 1 && s.interrupt !== null) one(s.interrupt);
        return;
      }
      case 'settings': {
        if (s.ack) {
          if (!acked) {
            // Our SETTINGS are acknowledged: the server's decoder now enforces its table size.
            acked = true;
            enc.setMaxTableSize(opts.headerTableSize);
          }
          pieces.push({ frames: true, bytes: frameBytes(SETTINGS, ACK, 0, Buffer.alloc(s.junk)) });
          return;
        }
        const p = Buffer.alloc(s.entries.length * 6 + s.junk);
        s.entries.forEach(([id, v], i) => {
          p.writeUInt16BE(id, i * 6);
          p.writeUInt32BE(v >>> 0, i * 6 + 2);
        });
        pieces.push({ frames: true, bytes: frameBytes(SETTINGS, 0, 0, p) });
        return;
      }
      case 'window': {
        const p = Buffer.alloc(s.len);
        u32be(s.inc).copy(p, 0, 0, Math.min(4, s.len));
        pieces.push({ frames: true, bytes: frameBytes(WINDOW_UPDATE, 0, id, p) });
        return;
      }
      case 'ping':
        pieces.push({ frames: true, bytes: frameBytes(PING, s.ack ? ACK : 0, 0, s.data) });
        return;
      case 'rst': {
        const p = Buffer.alloc(s.len);
        u32be(s.code).copy(p, 0, 0, Math.min(4, s.len));
        pieces.push({ frames: true, bytes: frameBytes(RST_STREAM, 0, id, p) });
        return;
      }
      case 'priority': {
        const p = Buffer.alloc(s.len);
        u32be(resolve(s.dep)).copy(p, 0, 0, Math.min(4, s.len));
        pieces.push({ frames: true, bytes: frameBytes(PRIORITY, 0, id, p) });
        return;
      }
      case 'goaway':
        pieces.push({
          frames: true,
          bytes: frameBytes(
            GOAWAY,
            0,
            0,
            Buffer.concat([u32be(resolve(s.last)), u32be(s.code), Buffer.from(s.debug, 'latin1')]),
          ),
        });
        return;
      case 'continuation':
        pieces.push({ frames: true, bytes: frameBytes(CONTINUATION, s.flags, id, s.payload) });
        return;
      case 'op':
        pieces.push({ op: s.op });
        return;
    }
  };
  for (const s of specs) one(s);
  return pieces;
}

/** Splits `bytes` into frames as the connection would (the last piece may be incomplete). */
function splitFrames(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (bytes.length - p >= 9) {
    const len = bytes.readUIntBE(p, 3);
    const end = Math.min(bytes.length, p + 9 + len);
    out.push(bytes.subarray(p, end));
    p = end;
  }
  if (p < bytes.length) out.push(bytes.subarray(p));
  return out;
}

interface InFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

function parseFrame(b: Buffer): InFrame | null {
  if (b.length < 9) return null;
  const len = b.readUIntBE(0, 3);
  if (b.length !== 9 + len) return null;
  return { type: b[3]!, flags: b[4]!, id: b.readUInt32BE(5) & 0x7fffffff, payload: b.subarray(9) };
}

// ---------------------------------------------------------------------------------------------
// The peer's view: what it granted and what it sent

/** Flow-control credit and data the peer has sent so far, as frames are fed. */
class PeerModel {
  /** WINDOW_UPDATE increments the peer granted, by stream (0: the connection). */
  readonly granted = new Map<number, number>();
  /** DATA octets (padding included) the peer sent, by stream (0: all of them). */
  readonly sent = new Map<number, number>();
  /** Payloads of the non-ACK PINGs and SETTINGS it sent, in order. */
  readonly pings: Buffer[] = [];
  readonly settings: Buffer[] = [];

  frame(f: InFrame): void {
    if (f.type === WINDOW_UPDATE && f.payload.length === 4) {
      const inc = f.payload.readUInt32BE(0) & 0x7fffffff;
      if (inc > 0) this.granted.set(f.id, (this.granted.get(f.id) ?? 0) + inc);
    } else if (f.type === DATA) {
      this.sent.set(f.id, (this.sent.get(f.id) ?? 0) + f.payload.length);
      this.sent.set(0, (this.sent.get(0) ?? 0) + f.payload.length);
    } else if (f.type === PING && (f.flags & ACK) === 0) {
      this.pings.push(f.payload);
    } else if (f.type === SETTINGS && (f.flags & ACK) === 0) {
      this.settings.push(f.payload);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checking what the connection writes

interface OutFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** Checks the connection's output as it appears, against the peer's model and the handler's record. */
class OutputChecker {
  readonly frames: OutFrame[] = [];
  private readonly peer: PeerModel;
  private readonly attempts: Map<number, string[][]>;
  private readonly opened: Set<number>;
  private readonly opts: ConnectionOptions;
  private readonly mirror = new HpackDecoder(4096, BIG_LIST);
  /** The peer's settings in force (applied at each SETTINGS ACK the connection writes). */
  private maxFrame = 16384;
  private iws = 65535;
  private acks = 0;
  private pingAcks = 0;
  private block: { id: number; parts: Buffer[]; endStream: boolean } | null = null;
  private lastGoaway = Number.POSITIVE_INFINITY;
  errorGoaway = false;
  private dataSent = new Map<number, number>();
  private ourGrant = new Map<number, number>();
  private localEnded = new Set<number>();
  private attemptAt = new Map<number, number>();
  private answered = new Set<number>();

  constructor(peer: PeerModel, attempts: Map<number, string[][]>, opened: Set<number>, opts: ConnectionOptions) {
    this.peer = peer;
    this.attempts = attempts;
    this.opened = opened;
    this.opts = opts;
  }

  /**
   * Bytes written in one flush: whole frames only. The flow-control check is exact when the peer
   * model is as of this flush (run C); for a single flush after all the input (runs A and B) it
   * counts every increment the peer sent, whenever it came.
   */
  feed(bytes: Buffer): void {
    let p = 0;
    while (p < bytes.length) {
      assert.ok(bytes.length - p >= 9, 'a flush ends inside a frame header');
      const len = bytes.readUIntBE(p, 3);
      assert.ok(bytes.length - p >= 9 + len, `a flush ends inside a frame (length ${len})`);
      const raw = bytes.readUInt32BE(p + 5);
      assert.equal(raw >>> 31, 0, 'reserved bit set in a written frame');
      const f: OutFrame = {
        type: bytes[p + 3]!,
        flags: bytes[p + 4]!,
        id: raw,
        payload: bytes.subarray(p + 9, p + 9 + len),
      };
      p += 9 + len;
      this.one(f);
    }
  }

  private one(f: OutFrame): void {
    const first = this.frames.length === 0;
    this.frames.push(f);
    const what = `written frame ${this.frames.length - 1} (type ${f.type}, flags ${f.flags}, stream ${f.id}, length ${f.payload.length})`;
    assert.ok(!this.errorGoaway, `${what} after a GOAWAY with an error code`);
    if (first) assert.ok(f.type === SETTINGS && f.flags === 0, 'the server preface is SETTINGS');
    if (this.block !== null) {
      assert.ok(f.type === CONTINUATION && f.id === this.block.id, `${what} inside a header block`);
    }
    const len = f.payload.length;
    switch (f.type) {
      case DATA: {
        assert.ok(f.id !== 0, `${what}: DATA on stream 0`);
        assert.equal(f.flags & ~END_STREAM, 0, `${what}: flags`);
        assert.ok(len <= this.maxFrame, `${what}: over the peer's max frame size ${this.maxFrame}`);
        assert.ok(this.opened.has(f.id), `${what}: DATA on a stream the peer did not open`);
        assert.ok(this.answered.has(f.id), `${what}: DATA before HEADERS`);
        assert.ok(!this.localEnded.has(f.id), `${what}: DATA after END_STREAM or RST_STREAM`);
        const sent = (this.dataSent.get(f.id) ?? 0) + len;
        const sentAll = (this.dataSent.get(0) ?? 0) + len;
        this.dataSent.set(f.id, sent);
        this.dataSent.set(0, sentAll);
        // Flow control (§6.9): within the windows the peer granted, with the settings in force. An
        // empty DATA frame (END_STREAM) needs no window (§6.9.1).
        if (len > 0) {
          const limit = this.iws + (this.peer.granted.get(f.id) ?? 0);
          assert.ok(sent <= limit, `${what}: ${sent} DATA octets on the stream, the peer allowed ${limit}`);
          const limitAll = 65535 + (this.peer.granted.get(0) ?? 0);
          assert.ok(sentAll <= limitAll, `${what}: ${sentAll} DATA octets in all, the peer allowed ${limitAll}`);
        }
        if (f.flags & END_STREAM) this.localEnded.add(f.id);
        return;
      }
      case HEADERS:
        assert.ok(f.id !== 0, `${what}: HEADERS on stream 0`);
        assert.equal(f.flags & ~(END_STREAM | END_HEADERS), 0, `${what}: flags`);
        assert.ok(len <= this.maxFrame, `${what}: over the peer's max frame size`);
        assert.ok(this.opened.has(f.id), `${what}: HEADERS on a stream the peer did not open`);
        assert.ok(!this.localEnded.has(f.id), `${what}: HEADERS after END_STREAM or RST_STREAM`);
        this.answered.add(f.id);
        this.block = { id: f.id, parts: [f.payload], endStream: (f.flags & END_STREAM) !== 0 };
        if (f.flags & END_HEADERS) this.endBlock();
        return;
      case CONTINUATION:
        assert.ok(this.block !== null, `${what}: CONTINUATION outside a header block`);
        assert.equal(f.flags & ~END_HEADERS, 0, `${what}: flags`);
        assert.ok(len <= this.maxFrame, `${what}: over the peer's max frame size`);
        this.block.parts.push(f.payload);
        if (f.flags & END_HEADERS) this.endBlock();
        return;
      case RST_STREAM:
        assert.ok(f.id !== 0, `${what}: RST_STREAM on stream 0`);
        assert.equal(len, 4, `${what}: RST_STREAM length`);
        assert.equal(f.flags, 0, `${what}: flags`);
        // Even a stream reset while idle (a self-dependent PRIORITY) is closed from then on.
        this.localEnded.add(f.id);
        return;
      case SETTINGS:
        assert.equal(f.id, 0, `${what}: SETTINGS on a stream`);
        if (f.flags & ACK) {
          assert.equal(f.flags, ACK, `${what}: flags`);
          assert.equal(len, 0, `${what}: SETTINGS ACK with a payload`);
          const s = this.peer.settings[this.acks++];
          assert.ok(s !== undefined, `${what}: more SETTINGS ACKs than SETTINGS`);
          this.applyPeerSettings(s);
        } else {
          assert.equal(f.flags, 0, `${what}: flags`);
          assert.equal(len % 6, 0, `${what}: SETTINGS length`);
        }
        return;
      case PING:
        assert.equal(f.id, 0, `${what}: PING on a stream`);
        assert.equal(len, 8, `${what}: PING length`);
        assert.equal(f.flags & ~ACK, 0, `${what}: flags`);
        if (f.flags & ACK) {
          const ping = this.peer.pings[this.pingAcks++];
          assert.ok(ping !== undefined, `${what}: PING ACK without a PING`);
          assert.deepEqual(f.payload, ping, `${what}: PING ACK payload`);
        }
        return;
      case GOAWAY: {
        assert.equal(f.id, 0, `${what}: GOAWAY on a stream`);
        assert.ok(len >= 8, `${what}: GOAWAY length`);
        assert.equal(f.flags, 0, `${what}: flags`);
        const last = f.payload.readUInt32BE(0);
        const code = f.payload.readUInt32BE(4);
        assert.equal(last >>> 31, 0, `${what}: reserved bit in the last stream id`);
        // §6.8: the last stream id of successive GOAWAYs must not increase.
        assert.ok(last <= this.lastGoaway, `${what}: last stream id ${last} above the previous ${this.lastGoaway}`);
        this.lastGoaway = last;
        assert.ok(code <= HIGHEST_ERROR_CODE, `${what}: error code ${code}`);
        if (code !== 0) this.errorGoaway = true;
        return;
      }
      case WINDOW_UPDATE: {
        assert.equal(len, 4, `${what}: WINDOW_UPDATE length`);
        assert.equal(f.flags, 0, `${what}: flags`);
        const inc = f.payload.readUInt32BE(0);
        assert.ok(inc >= 1 && inc <= MAX_WINDOW, `${what}: increment ${inc}`);
        const total = (this.ourGrant.get(f.id) ?? 0) + inc;
        this.ourGrant.set(f.id, total);
        // The peer's send window as the peer sees it may not pass 2^31-1 (§6.9.1).
        const base = f.id === 0 ? 65535 : Math.max(65535, this.opts.initialWindowSize);
        const window = base + total - (this.peer.sent.get(f.id) ?? 0);
        assert.ok(window <= MAX_WINDOW, `${what}: the peer's window would be ${window}`);
        return;
      }
      default:
        assert.fail(`${what}: a type the server never sends`);
    }
  }

  private endBlock(): void {
    const b = this.block!;
    this.block = null;
    const block = Buffer.concat(b.parts);
    const out: string[] = [];
    const r = this.mirror.decode(block, 0, block.length, out);
    assert.equal(r, null, `stream ${b.id}: the peer cannot decode the header block (${block.toString('hex')})`);
    // The block is one of the header lists the handler sent on that stream, in order.
    const tried = this.attempts.get(b.id) ?? [];
    let i = this.attemptAt.get(b.id) ?? 0;
    while (i < tried.length && !sameList(tried[i]!, out)) i++;
    assert.ok(i < tried.length, `stream ${b.id}: header block ${JSON.stringify(out)} was never sent`);
    this.attemptAt.set(b.id, i + 1);
    if (b.endStream) this.localEnded.add(b.id);
  }

  private applyPeerSettings(payload: Buffer): void {
    let table = -1;
    for (let i = 0; i + 6 <= payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const v = payload.readUInt32BE(i + 2);
      if (id === 1) table = v;
      else if (id === 4) this.iws = v;
      else if (id === 5) this.maxFrame = v;
    }
    // The last value in a frame is the one in force (§6.5.3: processed in order).
    if (table >= 0) this.mirror.setMaxTableSize(table);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------------------------
// One connection under test

/** Every connection of the current property run, destroyed when the run ends whatever happened. */
const live: Run[] = [];

class Run {
  readonly conn: Http2Connection;
  readonly log: string[] = [];
  readonly errors: string[] = [];
  readonly written: { ref: Buffer; copy: Buffer }[] = [];
  readonly streams: Http2Stream[] = [];
  readonly attempts = new Map<number, string[][]>();
  readonly opened = new Set<number>();
  /** Streams the handler ended (END_STREAM asked for). */
  private readonly ended = new Set<number>();
  readonly socket: Duplex;
  closeCount = 0;
  failure: ConnectionFailure | null = null;
  private readonly actions: Action[];
  private nextAction = 0;
  private lastStreamId = 0;
  private readonly opts: ConnectionOptions;

  constructor(opts: ConnectionOptions, actions: Action[]) {
    live.push(this);
    this.opts = opts;
    this.actions = actions;
    const written = this.written;
    this.socket = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        written.push({ ref: chunk, copy: Buffer.from(chunk) });
        cb();
      },
      // Never congested: flushes stay synchronous and the runs deterministic.
      writableHighWaterMark: 1 << 30,
    });
    this.socket.on('error', (e) => this.errors.push(`socket error: ${e.stack}`));
    const handler: ConnectionHandler = {
      onStream: (stream, fields, endStream) => this.guard('onStream', () => this.onStream(stream, fields, endStream)),
      onGoaway: (last, code) => this.log.push(`goaway ${last} ${code}`),
      onPingAck: (payload) => this.log.push(`ping-ack ${payload.toString('hex')}`),
      onStall: (s) => this.log.push(`stall ${s.id}`),
      onClose: (failure) => {
        this.closeCount++;
        this.failure = failure;
      },
    };
    this.conn = new Http2Connection(this.socket as unknown as Socket, 'server', handler, opts);
    // The flush runs from a microtask: catch there what would otherwise be an uncaught exception.
    const transport = this.conn.transport;
    const flush = transport.flush.bind(transport);
    transport.flush = () => this.guard('flush', flush);
  }

  guard(where: string, f: () => void): void {
    try {
      f();
    } catch (e) {
      this.errors.push(`${where}: ${(e as Error)?.stack ?? String(e)}`);
    }
  }

  /** Everything written so far since `from` (an index into `written`). */
  output(from = 0): Buffer {
    return Buffer.concat(this.written.slice(from).map((w) => w.copy));
  }

  /**
   * The handler uses the stream API as the proxy's owners do (H2RequestStream): one head, then body
   * and one end, never a body before the head. (The engine does not enforce that order itself.)
   */
  private send(s: Http2Stream, fields: string[], endStream: boolean): void {
    if (s.headersSent) return;
    if (endStream) this.ended.add(s.id);
    let list = this.attempts.get(s.id);
    if (list === undefined) this.attempts.set(s.id, (list = []));
    list.push(fields);
    s.respond(fields, endStream);
  }

  private write(s: Http2Stream, n: number): void {
    if (s.headersSent && !this.ended.has(s.id)) s.write(fill(n, s.id));
  }

  private end(s: Http2Stream, trailers: boolean, stop = false): void {
    if (!s.headersSent || this.ended.has(s.id)) return;
    this.ended.add(s.id);
    if (trailers) {
      const t = ['x-trailer', `t${s.id}`];
      let list = this.attempts.get(s.id);
      if (list === undefined) this.attempts.set(s.id, (list = []));
      list.push(t);
      s.end(t, stop);
    } else s.end(null, stop);
  }

  private onStream(stream: Http2Stream, fields: readonly string[] | null, endStream: boolean): void {
    const id = stream.id;
    this.log.push(`stream ${id} ${JSON.stringify(fields)} ${endStream}`);
    assert.equal(id & 1, 1, `onStream for even stream ${id}`);
    assert.ok(id > this.lastStreamId, `onStream for stream ${id} after ${this.lastStreamId}`);
    assert.ok(!this.conn.closed, 'onStream on a closed connection');
    assert.ok(
      this.conn.peerStreams <= this.opts.maxConcurrentStreams,
      `${this.conn.peerStreams} streams open, over max_concurrent_streams ${this.opts.maxConcurrentStreams}`,
    );
    this.lastStreamId = id;
    this.opened.add(id);
    this.streams.push(stream);
    const a = this.actions[this.nextAction++ % this.actions.length]!;
    const run = this;
    const sink: StreamSink = {
      onHeaders(f, end) {
        run.log.push(`headers ${id} ${JSON.stringify(f)} ${end}`);
      },
      onData(buf, start, end) {
        let sum = 0;
        for (let i = start; i < end; i++) sum = (sum * 31 + buf[i]!) >>> 0;
        run.log.push(`data ${id} ${end - start} ${sum}`);
        if (a.kind === 'reset-on-data') run.guard('onData', () => stream.reset(a.code >>> 0));
      },
      onEnd() {
        run.log.push(`end ${id}`);
        if (a.kind === 'later') {
          run.guard('onEnd', () => {
            run.send(stream, [':status', '200'], false);
            if (a.body > 0) run.write(stream, a.body);
            run.end(stream, false);
          });
        }
      },
      onReset(code, local) {
        run.log.push(`reset ${id} ${code} ${local}`);
      },
      onWritable() {
        run.log.push(`writable ${id}`);
      },
    };
    stream.sink = sink;
    switch (a.kind) {
      case 'respond': {
        const head = [':status', a.status, ...a.extra];
        if (a.end === 'headers-only') {
          this.send(stream, head, true);
          return;
        }
        this.send(stream, head, false);
        if (a.body > 0) this.write(stream, a.body);
        if (a.end === 'end') this.end(stream, false);
        else if (a.end === 'trailers') this.end(stream, true);
        else if (a.end === 'stop') this.end(stream, false, true);
        return;
      }
      case 'reset':
        stream.reset(a.code >>> 0);
        return;
      case 'pause':
        stream.pause();
        return;
      default:
        return;
    }
  }

  doOp(o: Op): void {
    const c = this.conn;
    switch (o.op) {
      case 'shutdown':
        c.shutdown();
        return;
      case 'ping':
        c.ping(Buffer.from('fuzzping', 'latin1'));
        return;
      case 'expire':
        c.expire(performance.now() + (o.what === 'settings' ? 121_000 : 31_000));
        return;
      case 'drain':
        c.onDrain();
        return;
      case 'stream': {
        if (this.streams.length === 0) return;
        const s = this.streams[o.pick % this.streams.length]!;
        const act = o.act;
        switch (act.a) {
          case 'write':
            this.write(s, act.n);
            return;
          case 'end':
            this.end(s, false);
            return;
          case 'trailers':
            this.end(s, true);
            return;
          case 'reset':
            s.reset(act.code >>> 0);
            return;
          case 'pause':
            s.pause();
            return;
          case 'resume':
            s.resume();
            return;
          case 'respond':
            this.send(s, [':status', '200', 'x-late', 'y'], act.endStream);
            return;
        }
      }
    }
  }

  /** Checks after the run, once the connection is destroyed and its socket closed. */
  finalChecks(): void {
    assert.equal(this.closeCount, 1, 'onClose once');
    for (const [i, w] of this.written.entries()) {
      assert.ok(w.ref.equals(w.copy), `written buffer ${i} changed after it was handed to the socket`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Feeding

/** A reused input buffer, scribbled over after every onBytes call. */
let scratch = Buffer.alloc(64 * 1024);

function feedLent(run: Run, bytes: Buffer, at: number): void {
  if (scratch.length < at + bytes.length) scratch = Buffer.alloc(at + bytes.length + 1024);
  bytes.copy(scratch, at);
  run.guard('onBytes', () => run.conn.onBytes(scratch, at, at + bytes.length));
  scratch.fill(0xa5, at, at + bytes.length);
}

/** `bytes` cut into pieces of the sizes given (cycled), at most `most` of them (the last takes the rest). */
function chunksOf(bytes: Buffer, sizes: number[], state: { i: number }, most: number): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < bytes.length) {
    const n = out.length === most - 1 ? bytes.length - p : sizes[state.i++ % sizes.length]!;
    out.push(bytes.subarray(p, p + n));
    p += n;
  }
  return out;
}

/** Runs A (whole) or B (split, lent): byte runs between operations, one flush at the end. */
function runWhole(opts: ConnectionOptions, actions: Action[], pieces: Piece[], split: number[] | null): Run {
  const run = new Run(opts, actions);
  run.guard('start', () => run.conn.start(null));
  const state = { i: 0 };
  let pending: Buffer[] = [];
  const flushPending = () => {
    if (pending.length === 0) return;
    const bytes = Buffer.concat(pending);
    pending = [];
    if (split === null) run.guard('onBytes', () => run.conn.onBytes(bytes, 0, bytes.length));
    else for (const c of chunksOf(bytes, split, state, 256)) feedLent(run, c, state.i % 7);
  };
  for (const p of pieces) {
    if ('op' in p) {
      flushPending();
      run.guard(`op ${p.op.op}`, () => run.doOp(p.op));
    } else pending.push(p.bytes);
  }
  flushPending();
  run.conn.transport.flush();
  return run;
}

/** Run C: a frame at a time, cut into pieces, flushed after each, checked against the exact peer model. */
function runStepwise(opts: ConnectionOptions, actions: Action[], pieces: Piece[], split: number[]): Run {
  const run = new Run(opts, actions);
  const peer = new PeerModel();
  const check = new OutputChecker(peer, run.attempts, run.opened, opts);
  let seen = 0;
  const flush = () => {
    run.conn.transport.flush();
    const out = run.output(seen);
    seen = run.written.length;
    check.feed(out);
    if (check.errorGoaway) assert.ok(run.conn.closed, 'a GOAWAY with an error code went out, yet not closed');
  };
  run.guard('start', () => run.conn.start(null));
  flush();
  const state = { i: 0 };
  for (const p of pieces) {
    if (run.conn.closed) break;
    if ('op' in p) {
      run.guard(`op ${p.op.op}`, () => run.doOp(p.op));
      flush();
      continue;
    }
    for (const frame of p.frames ? splitFrames(p.bytes) : [p.bytes]) {
      const f = parseFrame(frame);
      const chunks = chunksOf(frame, split, state, 4);
      for (const [k, c] of chunks.entries()) {
        // The peer model moves when the frame is complete, just before the connection sees it.
        if (k === chunks.length - 1 && f !== null) peer.frame(f);
        feedLent(run, c, state.i % 5);
        flush();
        if (run.conn.closed) break;
      }
      if (run.conn.closed) break;
    }
  }
  assert.deepEqual(run.errors, [], 'no exception escapes');
  return run;
}

/** Checks a single-flush run's output (windows known only as totals). */
function checkWhole(run: Run, pieces: Piece[], opts: ConnectionOptions): void {
  const peer = new PeerModel();
  for (const p of pieces) {
    if ('op' in p || !p.frames) continue;
    for (const frame of splitFrames(p.bytes)) {
      const f = parseFrame(frame);
      if (f !== null) peer.frame(f);
    }
  }
  const check = new OutputChecker(peer, run.attempts, run.opened, opts);
  check.feed(run.output());
  if (check.errorGoaway) assert.ok(run.conn.closed, 'a GOAWAY with an error code went out, yet not closed');
}

async function finish(): Promise<void> {
  const runs = live.splice(0);
  for (const r of runs) {
    r.conn.destroy();
    // After a connection error, destroy() does nothing: the connection is already closed, its
    // socket ended and waiting for the peer's FIN (or a 2 s timer). The peer closes its side.
    if (!r.socket.destroyed) r.socket.push(null);
  }
  // The socket's 'end' and 'close' (and so onClose) come on later ticks.
  for (let i = 0; i < 5 && runs.some((r) => r.closeCount === 0); i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (const r of runs) r.finalChecks();
  assert.equal(sweeper.size, 0, 'a destroyed connection left in the sweeper');
}

/** FUZZ_STATS=1: how deep the runs went, printed at the end (to tune the generators). */
const STATS =
  process.env.FUZZ_STATS === '1' ? { runs: 0, streams: 0, framesOut: 0, ends: new Map<string, number>() } : null;
if (STATS !== null) {
  process.on('exit', () => console.error({ ...STATS, ends: [...STATS.ends].sort((x, y) => y[1] - x[1]) }));
}

/** All three runs of one input, and their comparison. */
async function exercise(opts: ConnectionOptions, actions: Action[], pieces: Piece[], split: number[]): Promise<void> {
  let c: Run | null = null;
  try {
    const a = runWhole(opts, actions, pieces, null);
    const b = runWhole(opts, actions, pieces, split);
    assert.deepEqual(a.errors, [], 'no exception escapes (whole input)');
    assert.deepEqual(b.errors, [], 'no exception escapes (split input)');
    checkWhole(a, pieces, opts);
    // Partial frames change nothing: the same output, the same story told to the handler.
    assert.deepEqual(b.log, a.log, 'split input: what the handler heard');
    assert.ok(b.output().equals(a.output()), 'split input: the same bytes written');
    assert.equal(b.conn.closed, a.conn.closed);
    c = runStepwise(opts, actions, pieces, split);
  } finally {
    await finish();
  }
  if (STATS !== null && c !== null) {
    STATS.runs++;
    STATS.streams += c.opened.size;
    STATS.framesOut += splitFrames(c.output()).length;
    const why = c.failure === null ? 'ok' : `${c.failure.code}: ${c.failure.detail.replace(/[0-9]+/g, 'N')}`;
    STATS.ends.set(why, (STATS.ends.get(why) ?? 0) + 1);
  }
}

// ---------------------------------------------------------------------------------------------

describe('HTTP/2 connection fuzz (server role)', () => {
  test('structured frames: well-formed output, windows honoured, split input alike', async () => {
    await fc.assert(
      fc.asyncProperty(
        connectionOptions,
        fc.array(action, { minLength: 1, maxLength: 4 }),
        fc.oneof({ weight: 12, arbitrary: clientSettings }, fc.constant(null)),
        frameSequence,
        chunking,
        async (opts, actions, settings, specs, split) => {
          const pieces = serialize(settings === null ? specs : [settings, ...specs], opts);
          await exercise(opts, actions, pieces, split);
        },
      ),
      params(),
    );
  });

  test('random octets after the preface (and SETTINGS)', async () => {
    const octet = fc.oneof(
      { weight: 2, arbitrary: fc.constant(0) },
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 0, max: 255 }),
    );
    await fc.assert(
      fc.asyncProperty(
        connectionOptions,
        fc.array(action, { minLength: 1, maxLength: 3 }),
        fc.constantFrom('preface', 'preface+settings', 'preface+settings', 'preface+settings', 'bad-preface'),
        fc.array(octet, { maxLength: 400 }),
        chunking,
        async (opts, actions, start, octets, split) => {
          const pieces: Piece[] = [
            {
              bytes: start === 'bad-preface' ? Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r', 'latin1') : PREFACE,
              frames: false,
            },
          ];
          if (start === 'preface+settings')
            pieces.push({ frames: true, bytes: frameBytes(SETTINGS, 0, 0, Buffer.alloc(0)) });
          pieces.push({ bytes: Buffer.from(octets), frames: true });
          await exercise(opts, actions, pieces, split);
        },
      ),
      params(),
    );
  });
});
