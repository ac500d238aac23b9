import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { type Backend, rawBackend } from './backend.ts';

/**
 * Byte-exact HTTP/1.x on a socket, for end-to-end tests that must see what is on the wire: a
 * `SocketReader` wraps a client or upstream socket and reads whole messages (heads, bodies by their
 * framing, chunk sizes and trailers kept raw) with a timeout on every read.
 */

export type Field = [name: string, value: string];

export interface WireMessage {
  startLine: string;
  /** The head as received, CRLFCRLF included. */
  head: string;
  /** Header fields in wire order, names as received, values trimmed of OWS. */
  fields: Field[];
  /** The payload (chunked framing removed). */
  body: Buffer;
  /** The body bytes exactly as they were on the wire (chunk sizes, extensions and trailers included). */
  rawBody: Buffer;
  trailers: Field[];
  chunked: boolean;
  /** Every byte of the message. */
  raw: Buffer;
}

export interface WireResponse extends WireMessage {
  version: string;
  status: number;
  reason: string;
}

export interface WireRequest extends WireMessage {
  method: string;
  target: string;
  version: string;
}

/** First value of a field (case-insensitive name), or undefined. */
export function field(m: { fields: Field[] }, name: string): string | undefined {
  const n = name.toLowerCase();
  return m.fields.find(([k]) => k.toLowerCase() === n)?.[1];
}

/** Every value of a field, one per field line. */
export function fieldAll(m: { fields: Field[] }, name: string): string[] {
  const n = name.toLowerCase();
  return m.fields.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
}

/** Lower-cased names of all fields. */
export function fieldNames(m: { fields: Field[] }): string[] {
  return m.fields.map(([k]) => k.toLowerCase());
}

const DEFAULT_TIMEOUT = 5000;

export class SocketReader {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  private length = 0;
  /** The peer half-closed or the socket closed: no more bytes will come. */
  ended = false;
  closed = false;
  private readonly waiters = new Set<() => void>();

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.length += c.length;
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('close', () => {
      this.ended = true;
      this.closed = true;
      this.notify();
    });
    socket.on('error', () => {});
  }

  /** Bytes received and not read yet. */
  get pending(): number {
    return this.length;
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const w of this.waiters) w();
  }

  /** Until something arrives (or the peer ends), at most `ms`. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.add(wake);
    });
  }

  private flat(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  private take(n: number): Buffer {
    const b = this.flat();
    const out = b.subarray(0, n);
    const rest = b.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  private async waitFor<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const seen = JSON.stringify(this.flat().toString('latin1').slice(0, 300));
      if (this.ended) throw new Error(`connection ended while waiting for ${what}; unread: ${seen}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}; unread: ${seen}`);
      await this.sleep(left);
    }
  }

  /** Reads up to and including `delim`. */
  readUntil(delim: string, what = JSON.stringify(delim), timeoutMs = DEFAULT_TIMEOUT): Promise<Buffer> {
    return this.waitFor(
      what,
      () => {
        const i = this.flat().indexOf(delim, 0, 'latin1');
        return i === -1 ? undefined : this.take(i + delim.length);
      },
      timeoutMs,
    );
  }

  readExactly(n: number, what = `${n} bytes`, timeoutMs = DEFAULT_TIMEOUT): Promise<Buffer> {
    return this.waitFor(what, () => (this.length >= n ? this.take(n) : undefined), timeoutMs);
  }

  /** Waits until at least `n` bytes are buffered, without consuming them. */
  waitBuffered(n: number, timeoutMs = DEFAULT_TIMEOUT): Promise<void> {
    return this.waitFor(`${n} buffered bytes`, () => (this.length >= n ? true : undefined), timeoutMs).then(() => {});
  }

  /** Reads everything until the peer closes. */
  async readToEnd(timeoutMs = DEFAULT_TIMEOUT): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs}ms waiting for the peer to close`);
      await this.sleep(left);
    }
    return this.take(this.length);
  }

  /** Resolves true once the peer has closed (or half-closed), false if it is still open after `timeoutMs`. */
  async waitEnded(timeoutMs = DEFAULT_TIMEOUT): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.sleep(left);
    }
    return true;
  }

  private async readHeadParts(
    what: string,
    timeoutMs: number,
  ): Promise<{ head: string; startLine: string; fields: Field[] }> {
    const head = (await this.readUntil('\r\n\r\n', what, timeoutMs)).toString('latin1');
    const lines = head.slice(0, -4).split('\r\n');
    const startLine = lines.shift() ?? '';
    return { head, startLine, fields: lines.map(parseFieldLine) };
  }

  private async readBody(
    fields: Field[],
    framing: 'none' | 'auto-close' | 'auto-none',
    timeoutMs: number,
  ): Promise<{ body: Buffer; rawBody: Buffer; trailers: Field[]; chunked: boolean }> {
    const empty = { body: Buffer.alloc(0), rawBody: Buffer.alloc(0), trailers: [], chunked: false };
    if (framing === 'none') return empty;
    const te = fieldAll({ fields }, 'transfer-encoding');
    if (te.length > 0 && /(^|,)\s*chunked\s*$/i.test(te.join(',')))
      return { ...(await this.readChunked(timeoutMs)), chunked: true };
    const cl = field({ fields }, 'content-length');
    if (cl !== undefined) {
      const body = await this.readExactly(Number(cl), `a ${cl}-byte body`, timeoutMs);
      return { body, rawBody: body, trailers: [], chunked: false };
    }
    if (framing === 'auto-none') return empty;
    const body = await this.readToEnd(timeoutMs);
    return { body, rawBody: body, trailers: [], chunked: false };
  }

  /** Reads a chunked body; `rawBody` keeps every framing byte. */
  async readChunked(timeoutMs = DEFAULT_TIMEOUT): Promise<{ body: Buffer; rawBody: Buffer; trailers: Field[] }> {
    const raw: Buffer[] = [];
    const data: Buffer[] = [];
    for (;;) {
      const sizeLine = await this.readUntil('\r\n', 'a chunk size line', timeoutMs);
      raw.push(sizeLine);
      const size = Number.parseInt(sizeLine.toString('latin1').split(';')[0]!.trim(), 16);
      if (!Number.isFinite(size)) throw new Error(`bad chunk size line ${JSON.stringify(sizeLine.toString('latin1'))}`);
      if (size === 0) break;
      const chunk = await this.readExactly(size + 2, `a ${size}-byte chunk`, timeoutMs);
      raw.push(chunk);
      data.push(chunk.subarray(0, size));
    }
    const trailers: Field[] = [];
    for (;;) {
      const line = await this.readUntil('\r\n', 'a trailer line', timeoutMs);
      raw.push(line);
      if (line.length === 2) break;
      trailers.push(parseFieldLine(line.toString('latin1').slice(0, -2)));
    }
    return { body: Buffer.concat(data), rawBody: Buffer.concat(raw), trailers };
  }

  /**
   * Reads one response (a 1xx interim response is returned on its own). `method` tells whether it
   * answers a HEAD (no body, whatever the head says).
   */
  async readResponse(opts: { method?: string; timeoutMs?: number } = {}): Promise<WireResponse> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT;
    const { head, startLine, fields } = await this.readHeadParts('a response head', timeoutMs);
    const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(startLine);
    if (m === null) throw new Error(`bad status line ${JSON.stringify(startLine)}`);
    const status = Number(m[2]);
    const bodiless = opts.method === 'HEAD' || status < 200 || status === 204 || status === 304;
    const b = await this.readBody(fields, bodiless ? 'none' : 'auto-close', timeoutMs);
    return {
      version: m[1]!,
      status,
      reason: m[3] ?? '',
      startLine,
      head,
      fields,
      ...b,
      raw: Buffer.concat([Buffer.from(head, 'latin1'), b.rawBody]),
    };
  }

  /** Reads one request (body by Content-Length or chunked). */
  async readRequest(timeoutMs = DEFAULT_TIMEOUT): Promise<WireRequest> {
    const { head, startLine, fields } = await this.readHeadParts('a request head', timeoutMs);
    const [method = '', target = '', version = ''] = startLine.split(' ');
    const b = await this.readBody(fields, 'auto-none', timeoutMs);
    return {
      method,
      target,
      version,
      startLine,
      head,
      fields,
      ...b,
      raw: Buffer.concat([Buffer.from(head, 'latin1'), b.rawBody]),
    };
  }
}

function parseFieldLine(line: string): Field {
  const colon = line.indexOf(':');
  if (colon === -1) return [line, ''];
  return [line.slice(0, colon), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')];
}

/** Opens a client connection to host:port; with `t`, it is destroyed when the test ends. */
export function connect(port: number, t?: TestContext, host = '127.0.0.1'): Promise<SocketReader> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    s.setNoDelay(true);
    t?.after(() => s.destroy());
    s.once('connect', () => {
      s.off('error', reject);
      resolve(new SocketReader(s));
    });
    s.once('error', reject);
  });
}

/**
 * A scripted raw upstream: reads requests off each connection in turn and lets `onRequest` answer
 * them byte by byte (`r.write`). Returning false stops reading that connection. A read error or
 * timeout destroys the connection.
 */
export function rawHttpBackend(
  onRequest: (req: WireRequest, r: SocketReader) => undefined | boolean | Promise<undefined | boolean>,
): Promise<Backend<net.Server>> {
  return rawBackend((s) => {
    const r = new SocketReader(s);
    void (async () => {
      try {
        for (;;) {
          const req = await r.readRequest(30_000);
          if ((await onRequest(req, r)) === false) return;
        }
      } catch {
        s.destroy();
      }
    })();
  });
}

/**
 * Low ports for closedPort: below 1024 and below any ephemeral range, so no listen(0) and no connect()
 * of any process is ever given one (a port freed after listen(0) could be, by a test running
 * alongside; and a connect() to a free ephemeral port on loopback can, rarely, connect to itself).
 */
const LOW_PORTS = Array.from({ length: 16 }, (_, i) => i + 1);
let nextLowPort = 0;

/** Whether a connect to 127.0.0.1:port is refused (nothing listens there). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const done = (r: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(false), 2000);
    s.once('connect', () => done(false));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}

/**
 * A port on 127.0.0.1 that nothing listens on, and nothing will while the test runs: one of
 * LOW_PORTS, checked to refuse connects (a machine's own service there is skipped). Successive calls
 * in a process return different ports (cycling after 16).
 */
export async function closedPort(): Promise<number> {
  for (let tried = 0; tried < LOW_PORTS.length; tried++) {
    const port = LOW_PORTS[nextLowPort++ % LOW_PORTS.length] as number;
    if (await refused(port)) return port;
  }
  throw new Error(`no port of ${LOW_PORTS[0]}-${LOW_PORTS.at(-1)} refuses connects on 127.0.0.1`);
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Rejects if `p` does not settle within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface CurlResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs curl with `args` (stdin from `input` if given), killed after `timeoutMs`. */
export function curl(args: string[], opts: { input?: Buffer; timeoutMs?: number } = {}): Promise<CurlResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  if (opts.input === undefined) {
    return new Promise((resolve, reject) => {
      execFile(
        'curl',
        ['--max-time', String(timeoutMs / 1000), ...args],
        { encoding: 'buffer', timeout: timeoutMs + 1000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err !== null && typeof err.code !== 'number') return reject(err);
          resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr: stderr.toString('latin1') });
        },
      );
    });
  }
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['--max-time', String(timeoutMs / 1000), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 1000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {});
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('latin1') });
    });
    child.stdin.end(opts.input);
  });
}
