/**
 * A raw HTTP/2 client for tests that must misbehave frame by frame: it connects (plain TCP, or TLS
 * with ALPN h2), sends the preface and SETTINGS, writes any frame (well-formed or not), and reads the
 * peer's frames back as parsed objects that a test awaits with a predicate. Header blocks are encoded
 * with muxgate's own HpackEncoder (or given as raw bytes, see `literal` for fields HpackEncoder will
 * not write) and the peer's are decoded with its HpackDecoder.
 *
 * By default the client behaves like a quiet, correct peer: it acknowledges SETTINGS and PINGs and
 * credits every DATA frame with WINDOW_UPDATE. Each of those can be switched off.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import tls from 'node:tls';
import {
  CLIENT_PREFACE,
  CONTINUATION,
  DATA,
  DEFAULT_WINDOW,
  errorName,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FRAME_HEADER,
  GOAWAY,
  HEADERS,
  PING,
  PRIORITY,
  RST_STREAM,
  SETTINGS,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  WINDOW_UPDATE,
} from '../../src/http2/frame.ts';
import { HpackDecoder } from '../../src/http2/hpack-decoder.ts';
import { HpackEncoder } from '../../src/http2/hpack-encoder.ts';

export * from '../../src/http2/frame.ts';

/** Generous: the suite runs on a loaded two-core machine. */
export const DEFAULT_WAIT = 10_000;

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
  /** HEADERS only: the decoded header block (CONTINUATIONs included), as [name, value] pairs. */
  fields?: [string, string][];
  /** HEADERS only: the block did not decode. */
  hpackError?: string;
}

export interface Goaway {
  lastStreamId: number;
  code: number;
  debug: string;
}

export interface RawResponse {
  status: number;
  fields: [string, string][];
  /** First value of each field name. */
  headers: Record<string, string>;
  body: Buffer;
  /** The stream ended with END_STREAM. */
  ended: boolean;
  /** RST_STREAM code when the stream was reset before END_STREAM, else null. */
  rst: number | null;
}

export interface FrameClientOptions {
  /** TLS with ALPN h2 (certificate not verified); an object adds tls.connect options. */
  tls?: boolean | tls.ConnectionOptions;
  host?: string;
  /** Pairs for the first SETTINGS frame (identifier, value). */
  settings?: [number, number][];
  /** Send the preface and SETTINGS, and wait for the peer's SETTINGS (default true). */
  preface?: boolean;
  /** Acknowledge the peer's SETTINGS (default true). */
  ackSettings?: boolean;
  /** Answer the peer's PINGs (default true). */
  ackPings?: boolean;
  /**
   * Credit received DATA with WINDOW_UPDATE (default true): the connection always, a stream when this
   * is true or the function says so for its id.
   */
  autoWindowUpdate?: boolean | ((streamId: number) => boolean);
  /**
   * Credit once this many bytes are unacknowledged (connection and each stream alike). Default: half
   * the stream window the client advertises (as nghttp2 does); 0 credits every DATA frame.
   */
  creditThreshold?: number;
}

const TYPE_NAMES = [
  'DATA',
  'HEADERS',
  'PRIORITY',
  'RST_STREAM',
  'SETTINGS',
  'PUSH_PROMISE',
  'PING',
  'GOAWAY',
  'WINDOW_UPDATE',
  'CONTINUATION',
];

/** One frame as bytes. */
export function buildFrame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK prefixed integer (RFC 7541 §5.1): `flags` in the bits above a `prefixBits`-bit prefix. */
export function hpackInt(n: number, prefixBits: number, flags = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.of(flags | n);
  const out = [flags | max];
  n -= max;
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

/** An HPACK string literal without Huffman coding: the bytes exactly as given (latin1). */
export function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/**
 * A "literal header field without indexing" (RFC 7541 §6.2.2) with a literal name (or a static table
 * name index), no Huffman: any bytes at all, so names with upper case or ':' and values with CR, LF or
 * NUL reach the peer as written. It does not touch the dynamic table, so it can be appended to a
 * block from the client's encoder without putting the two HPACK contexts out of step.
 */
export function literal(name: string | number, value: string): Buffer {
  const head = typeof name === 'number' ? hpackInt(name, 4, 0x00) : Buffer.concat([Buffer.of(0x00), hpackString(name)]);
  return Buffer.concat([head, hpackString(value)]);
}

/** A short human-readable line for a frame, for assertion messages. */
export function describeFrame(f: Frame): string {
  const name = TYPE_NAMES[f.type] ?? `type 0x${f.type.toString(16)}`;
  const p = f.payload;
  let more = '';
  switch (f.type) {
    case DATA:
      more = ` len=${p.length}${f.flags & FLAG_END_STREAM ? ' END_STREAM' : ''}`;
      break;
    case HEADERS:
      more = `${f.flags & FLAG_END_STREAM ? ' END_STREAM' : ''} ${
        f.fields === undefined ? `(${f.hpackError ?? 'undecoded'})` : f.fields.map(([n, v]) => `${n}=${v}`).join(' ')
      }`;
      break;
    case RST_STREAM:
      more = p.length === 4 ? ` ${errorName(p.readUInt32BE(0))}` : ` (len ${p.length})`;
      break;
    case GOAWAY:
      more =
        p.length >= 8
          ? ` last=${p.readUInt32BE(0) & 0x7fffffff} ${errorName(p.readUInt32BE(4))} "${p.toString('latin1', 8)}"`
          : ` (len ${p.length})`;
      break;
    case SETTINGS:
    case PING:
      more = f.flags & FLAG_ACK ? ' ACK' : ` len=${p.length}`;
      break;
    case WINDOW_UPDATE:
      more = p.length === 4 ? ` +${p.readUInt32BE(0) & 0x7fffffff}` : '';
      break;
  }
  return `${name}[${f.streamId}]${more}`;
}

interface Waiter {
  pred: (f: Frame) => boolean;
  what: string;
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class H2FrameClient {
  readonly socket: net.Socket;
  readonly port: number;
  readonly host: string;
  readonly scheme: 'http' | 'https';
  /** Every frame received, in order. */
  readonly frames: Frame[] = [];
  /** The client's HPACK contexts: `encoder` for what it sends, `decoder` for what it receives. */
  readonly encoder = new HpackEncoder();
  readonly decoder = new HpackDecoder(4096, 1 << 30);
  /** The peer's first SETTINGS, as identifier -> value. */
  serverSettings = new Map<number, number>();
  /** The socket closed (after the peer's FIN, a reset, or `destroy`). */
  closed = false;
  /** The peer sent FIN. */
  gotEnd = false;
  /** A socket error (ECONNRESET, EPIPE...), if any. */
  error: Error | null = null;
  private readonly opts: FrameClientOptions;
  private readonly queue: Frame[] = [];
  private waiters: Waiter[] = [];
  private closeWaiters: (() => void)[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private block: Frame[] = [];
  private sawSettings = false;
  private readonly creditThreshold: number;
  private unackedConnection = 0;
  private readonly unackedStreams = new Map<number, number>();

  private constructor(socket: net.Socket, port: number, host: string, opts: FrameClientOptions) {
    this.socket = socket;
    this.port = port;
    this.host = host;
    this.opts = opts;
    this.scheme = opts.tls ? 'https' : 'http';
    const window = opts.settings?.find(([id]) => id === SETTINGS_INITIAL_WINDOW_SIZE)?.[1] ?? DEFAULT_WINDOW;
    // Strictly more than the threshold: with 0, every frame is credited.
    this.creditThreshold = opts.creditThreshold ?? Math.floor(window / 2) - 1;
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('end', () => {
      this.gotEnd = true;
    });
    socket.on('error', (e) => {
      this.error = e;
    });
    socket.on('close', () => this.onClose());
  }

  /** Connects to 127.0.0.1:`port`, sends the preface and SETTINGS and waits for the peer's SETTINGS. */
  static async connect(port: number, opts: FrameClientOptions = {}): Promise<H2FrameClient> {
    const host = opts.host ?? '127.0.0.1';
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      let s: net.Socket;
      if (opts.tls) {
        const extra = typeof opts.tls === 'object' ? opts.tls : {};
        const t = tls.connect({ host, port, ALPNProtocols: ['h2'], rejectUnauthorized: false, ...extra }, () => {
          if (t.alpnProtocol !== 'h2') {
            t.destroy();
            reject(new Error(`ALPN negotiated ${String(t.alpnProtocol)}, not h2`));
            return;
          }
          resolve(t);
        });
        s = t;
      } else {
        s = net.connect({ host, port, noDelay: true }, () => resolve(s));
      }
      s.once('error', reject);
    });
    socket.removeAllListeners('error');
    const c = new H2FrameClient(socket, port, host, opts);
    if (opts.preface !== false) {
      const settings = buildFrame(SETTINGS, 0, 0, settingsPayload(opts.settings ?? []));
      c.write(Buffer.concat([Buffer.from(CLIENT_PREFACE, 'latin1'), settings]));
      await c.next((f) => f.type === SETTINGS && (f.flags & FLAG_ACK) === 0, DEFAULT_WAIT, "the peer's SETTINGS");
    }
    return c;
  }

  // ------------------------------------------------------------------------------------------
  // Writing

  /** Raw bytes; ignored once the socket is gone (a test may keep writing into a closing connection). */
  write(b: Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(b);
  }

  /** Everything `fn` writes leaves in one write (one TCP segment where it fits). */
  batch(fn: () => void): void {
    this.socket.cork();
    try {
      fn();
    } finally {
      this.socket.uncork();
    }
  }

  frame(type: number, flags: number, streamId: number, payload?: Buffer): void {
    this.write(buildFrame(type, flags, streamId, payload));
  }

  settings(pairs: [number, number][] = []): void {
    this.frame(SETTINGS, 0, 0, settingsPayload(pairs));
  }

  settingsAck(): void {
    this.frame(SETTINGS, FLAG_ACK, 0);
  }

  /** A header block from the client's own HPACK encoder (stateful: blocks must be sent in order). */
  encode(fields: readonly string[]): Buffer {
    return this.encoder.encode(fields);
  }

  /** A request's fields, flat: pseudo-fields for `path`, then `extra`. */
  requestFields(path = '/', extra: readonly string[] = [], method = 'GET'): string[] {
    return [
      ':method',
      method,
      ':scheme',
      this.scheme,
      ':path',
      path,
      ':authority',
      `${this.host}:${this.port}`,
      ...extra,
    ];
  }

  headers(
    streamId: number,
    block: readonly string[] | Buffer,
    o: {
      endStream?: boolean;
      endHeaders?: boolean;
      priority?: { dependsOn: number; weight?: number; exclusive?: boolean };
      padLength?: number;
    } = {},
  ): void {
    const b = Buffer.isBuffer(block) ? block : this.encode(block);
    let flags = 0;
    if (o.endStream) flags |= FLAG_END_STREAM;
    if (o.endHeaders !== false) flags |= FLAG_END_HEADERS;
    const parts: Buffer[] = [];
    if (o.padLength !== undefined) {
      flags |= FLAG_PADDED;
      parts.push(Buffer.of(o.padLength));
    }
    if (o.priority !== undefined) {
      flags |= FLAG_PRIORITY;
      parts.push(priorityPayload(o.priority.dependsOn, o.priority.weight ?? 16, o.priority.exclusive ?? false));
    }
    parts.push(b);
    if (o.padLength !== undefined) parts.push(Buffer.alloc(o.padLength));
    this.frame(HEADERS, flags, streamId, Buffer.concat(parts));
  }

  /** A request on `streamId`: HEADERS (END_STREAM unless a body follows). */
  request(
    streamId: number,
    path = '/',
    o: { extra?: readonly string[]; method?: string; endStream?: boolean } = {},
  ): void {
    this.headers(streamId, this.requestFields(path, o.extra ?? [], o.method), { endStream: o.endStream ?? true });
  }

  continuation(streamId: number, block: Buffer, endHeaders: boolean): void {
    this.frame(CONTINUATION, endHeaders ? FLAG_END_HEADERS : 0, streamId, block);
  }

  data(streamId: number, payload: Buffer | string = '', o: { endStream?: boolean; padLength?: number } = {}): void {
    const b = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    let flags = o.endStream ? FLAG_END_STREAM : 0;
    let p = b;
    if (o.padLength !== undefined) {
      flags |= FLAG_PADDED;
      p = Buffer.concat([Buffer.of(o.padLength), b, Buffer.alloc(o.padLength)]);
    }
    this.frame(DATA, flags, streamId, p);
  }

  rstStream(streamId: number, code: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code >>> 0);
    this.frame(RST_STREAM, 0, streamId, p);
  }

  ping(payload: Buffer = Buffer.from('h2frames', 'latin1'), ack = false): void {
    this.frame(PING, ack ? FLAG_ACK : 0, 0, payload);
  }

  priority(streamId: number, dependsOn: number, weight = 16, exclusive = false): void {
    this.frame(PRIORITY, 0, streamId, priorityPayload(dependsOn, weight, exclusive));
  }

  windowUpdate(streamId: number, increment: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(increment >>> 0);
    this.frame(WINDOW_UPDATE, 0, streamId, p);
  }

  goaway(lastStreamId: number, code: number, debug = ''): void {
    const p = Buffer.alloc(8 + Buffer.byteLength(debug, 'latin1'));
    p.writeUInt32BE(lastStreamId >>> 0, 0);
    p.writeUInt32BE(code >>> 0, 4);
    p.write(debug, 8, 'latin1');
    this.frame(GOAWAY, 0, 0, p);
  }

  /** FIN (our side only; the peer's frames are still read). */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ------------------------------------------------------------------------------------------
  // Reading

  /**
   * The first frame not yet taken that matches `pred` (taking it), waiting up to `timeoutMs`. Rejects
   * when the connection closes first or the time runs out, listing every frame received.
   */
  next(pred: (f: Frame) => boolean, timeoutMs = DEFAULT_WAIT, what = 'a matching frame'): Promise<Frame> {
    const i = this.queue.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.queue.splice(i, 1)[0]!);
    if (this.closed) return Promise.reject(new Error(`connection closed before ${what}; ${this.transcript()}`));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        what,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`no ${what} within ${timeoutMs} ms; ${this.transcript()}`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Whether an untaken frame matching `pred` has arrived (without taking it). */
  has(pred: (f: Frame) => boolean): boolean {
    return this.queue.some(pred);
  }

  async waitGoaway(timeoutMs = DEFAULT_WAIT): Promise<Goaway> {
    const f = await this.next((x) => x.type === GOAWAY, timeoutMs, 'GOAWAY');
    return {
      lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
      code: f.payload.readUInt32BE(4),
      debug: f.payload.toString('latin1', 8),
    };
  }

  /** The code of the next RST_STREAM on `streamId`. */
  async waitRst(streamId: number, timeoutMs = DEFAULT_WAIT): Promise<number> {
    const f = await this.next(
      (x) => x.type === RST_STREAM && x.streamId === streamId,
      timeoutMs,
      `RST_STREAM on stream ${streamId}`,
    );
    return f.payload.readUInt32BE(0);
  }

  /** The next (decoded) HEADERS on `streamId`. */
  waitHeaders(streamId: number, timeoutMs = DEFAULT_WAIT): Promise<Frame> {
    return this.next((x) => x.type === HEADERS && x.streamId === streamId, timeoutMs, `HEADERS on stream ${streamId}`);
  }

  /**
   * The response on `streamId`: its final head, then DATA until END_STREAM; or until RST_STREAM,
   * whose code is then in `rst`. An RST_STREAM after END_STREAM is left for `waitRst`.
   */
  async response(streamId: number, timeoutMs = DEFAULT_WAIT): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    const r: RawResponse = { status: 0, fields: [], headers: {}, body: Buffer.alloc(0), ended: false, rst: null };
    const chunks: Buffer[] = [];
    for (;;) {
      const f = await this.next(
        (x) => x.streamId === streamId && (x.type === HEADERS || x.type === DATA || x.type === RST_STREAM),
        Math.max(1, deadline - Date.now()),
        `the response on stream ${streamId}`,
      );
      if (f.type === RST_STREAM) {
        r.rst = f.payload.readUInt32BE(0);
        break;
      }
      if (f.type === HEADERS) {
        const fields = f.fields ?? [];
        const status = Number(fields.find(([n]) => n === ':status')?.[1] ?? 0);
        if (r.status === 0 && status >= 100 && status < 200) continue;
        if (r.status === 0) {
          r.status = status;
          r.fields = fields;
          for (const [n, v] of fields) if (!(n in r.headers)) r.headers[n] = v;
        }
      } else chunks.push(f.payload);
      if (f.flags & FLAG_END_STREAM) {
        r.ended = true;
        break;
      }
    }
    r.body = Buffer.concat(chunks);
    return r;
  }

  /** Resolves when the socket has closed (rejects after `timeoutMs`). */
  waitClosed(timeoutMs = DEFAULT_WAIT): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the connection did not close within ${timeoutMs} ms; ${this.transcript()}`)),
        timeoutMs,
      );
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Every frame received so far, one line each. */
  transcript(): string {
    const lines = this.frames.map(describeFrame);
    if (lines.length > 40) lines.splice(20, lines.length - 40, `... ${lines.length - 40} more ...`);
    return `frames received: ${lines.length === 0 ? '(none)' : lines.join(', ')}${this.closed ? ' [closed]' : ''}`;
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= FRAME_HEADER) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < FRAME_HEADER + len) break;
      const f: Frame = {
        type: this.buf[3]!,
        flags: this.buf[4]!,
        streamId: this.buf.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.buf.subarray(FRAME_HEADER, FRAME_HEADER + len)),
      };
      this.buf = this.buf.subarray(FRAME_HEADER + len);
      this.onFrame(f);
    }
  }

  private onFrame(f: Frame): void {
    // A header block is delivered whole: HEADERS (decoded) once its last CONTINUATION is in.
    if (f.type === HEADERS) {
      if (f.flags & FLAG_END_HEADERS) {
        this.decodeBlock(f, [f]);
        this.deliver(f);
      } else this.block = [f];
      return;
    }
    if (f.type === CONTINUATION && this.block.length > 0) {
      this.block.push(f);
      if (f.flags & FLAG_END_HEADERS) {
        const all = this.block;
        this.block = [];
        this.decodeBlock(all[0]!, all);
        for (const x of all) this.deliver(x);
      }
      return;
    }
    if (f.type === SETTINGS && (f.flags & FLAG_ACK) === 0) {
      for (let i = 0; i + 6 <= f.payload.length; i += 6) {
        const id = f.payload.readUInt16BE(i);
        const v = f.payload.readUInt32BE(i + 2);
        if (!this.sawSettings) this.serverSettings.set(id, v);
        if (id === SETTINGS_HEADER_TABLE_SIZE) this.encoder.setMaxTableSize(v);
      }
      this.sawSettings = true;
      if (this.opts.ackSettings !== false) this.settingsAck();
    } else if (f.type === PING && (f.flags & FLAG_ACK) === 0 && this.opts.ackPings !== false) {
      this.ping(f.payload, true);
    } else if (f.type === DATA && f.payload.length > 0) {
      const auto = this.opts.autoWindowUpdate ?? true;
      if (auto !== false) {
        const n = f.payload.length;
        this.unackedConnection += n;
        // The connection window stays at its initial 65535 unless a test raises it.
        if (this.unackedConnection > Math.min(this.creditThreshold, DEFAULT_WINDOW / 2 - 1)) {
          this.windowUpdate(0, this.unackedConnection);
          this.unackedConnection = 0;
        }
        if ((auto === true || auto(f.streamId)) && (f.flags & FLAG_END_STREAM) === 0) {
          const unacked = (this.unackedStreams.get(f.streamId) ?? 0) + n;
          if (unacked > this.creditThreshold) {
            this.windowUpdate(f.streamId, unacked);
            this.unackedStreams.set(f.streamId, 0);
          } else this.unackedStreams.set(f.streamId, unacked);
        }
      }
    }
    this.deliver(f);
  }

  private decodeBlock(head: Frame, frames: Frame[]): void {
    let p = head.payload;
    let start = 0;
    let end = p.length;
    if (head.flags & FLAG_PADDED) {
      start = 1;
      end -= p[0]!;
    }
    if (head.flags & FLAG_PRIORITY) start += 5;
    const parts = [p.subarray(start, end), ...frames.slice(1).map((x) => x.payload)];
    p = Buffer.concat(parts);
    const out: string[] = [];
    const err = this.decoder.decode(p, 0, p.length, out);
    if (err !== null) {
      head.hpackError = err;
      return;
    }
    const fields: [string, string][] = [];
    for (let i = 0; i + 1 < out.length; i += 2) fields.push([out[i]!, out[i + 1]!]);
    head.fields = fields;
  }

  private deliver(f: Frame): void {
    this.frames.push(f);
    const i = this.waiters.findIndex((w) => w.pred(f));
    if (i === -1) {
      this.queue.push(f);
      return;
    }
    const w = this.waiters.splice(i, 1)[0]!;
    clearTimeout(w.timer);
    w.resolve(f);
  }

  private onClose(): void {
    this.closed = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection closed before ${w.what}; ${this.transcript()}`));
    }
    for (const cb of this.closeWaiters) cb();
    this.closeWaiters = [];
  }
}

function settingsPayload(pairs: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(v >>> 0, i * 6 + 2);
  });
  return b;
}

function priorityPayload(dependsOn: number, weight: number, exclusive: boolean): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(((exclusive ? 0x80000000 : 0) | dependsOn) >>> 0, 0);
  b[4] = weight - 1;
  return b;
}
