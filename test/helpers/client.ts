import http from 'node:http';
import net from 'node:net';

/**
 * One step of a raw exchange: bytes to write, or a function awaited before the next write (e.g. "wait
 * until the upstream has seen the bytes so far"). Strings are written as UTF-8: use a latin1 Buffer
 * for exact non-ASCII bytes.
 */
export type RawPart = string | Buffer | (() => Promise<unknown>);

/**
 * Sends raw bytes and collects everything the peer sends until it closes the connection or goes quiet
 * for `quietMs`. For tests that need exact bytes on the wire (smuggling, framing, pipelining).
 */
export function rawExchange(
  port: number,
  data: string | Buffer | RawPart[],
  opts: { quietMs?: number; timeoutMs?: number; endAfterWrite?: boolean } = {},
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const quietMs = opts.quietMs ?? 300;
    const done = (closed: boolean) => {
      clearTimeout(quiet);
      clearTimeout(total);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const total = setTimeout(() => done(false), opts.timeoutMs ?? 5000);
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => done(false), quietMs);
    };
    s.on('connect', async () => {
      const parts = Array.isArray(data) ? data : [data];
      for (const p of parts) {
        if (typeof p === 'function') {
          try {
            await p();
          } catch (err) {
            clearTimeout(total);
            s.destroy();
            reject(err);
            return;
          }
          continue;
        }
        s.write(p);
        if (parts.length > 1) await new Promise((r) => setTimeout(r, 20));
      }
      if (opts.endAfterWrite) s.end();
      arm();
    });
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    s.on('close', () => done(true));
    s.on('error', (e) => (chunks.length ? done(true) : reject(e)));
  });
}

/** Splits a byte stream of responses into status codes, e.g. "HTTP/1.1 200 OK" -> 200. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

/** One HTTP response read off a raw socket by RawClient; 1xx interim responses are skipped. */
export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  /** The body with its framing removed (chunked bodies are decoded). */
  body: Buffer;
  /** The response's exact bytes as received. */
  raw: Buffer;
}

/**
 * A keep-alive HTTP/1.1 client on one raw TCP connection: exact bytes out, responses parsed one at a
 * time, and connection-level facts (did the peer close? did it send bytes after a response?) kept.
 * Every wait is bounded by a timeout.
 */
export class RawClient {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  /** The peer closed (FIN or reset) or the socket was destroyed. */
  ended = false;
  private wake: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  static connect(port: number, opts: { host?: string; localAddress?: string } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress, noDelay: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawClient(s));
      });
      s.once('error', reject);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends `data` and reads the next response. */
  request(data: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
    this.send(data);
    return this.response(timeoutMs);
  }

  /** Bytes received and not consumed by `response()` yet. */
  get unread(): Buffer {
    return this.buf;
  }

  /** Resolves with the next complete response; rejects if the connection ends first or on timeout. */
  async response(timeoutMs = 5000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parseResponse(this.buf, this.ended);
      if (r !== null) {
        this.buf = this.buf.subarray(r.raw.length);
        if (r.status >= 200) return r;
        continue;
      }
      if (this.ended) {
        throw new Error(
          `connection closed before a complete response; got ${JSON.stringify(this.buf.toString('latin1'))}`,
        );
      }
      await this.waitFor(deadline, 'a response');
    }
  }

  /** Resolves when the peer has closed the connection; rejects on timeout. */
  async closed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) await this.waitFor(deadline, 'the connection to close');
  }

  /** Resolves when the predicate holds for the unread bytes (or the connection ends); rejects on timeout. */
  async until(pred: (unread: Buffer) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.buf) && !this.ended) await this.waitFor(deadline, 'more bytes');
  }

  close(): void {
    this.socket.destroy();
  }

  private waitFor(deadline: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.wake = null;
          reject(new Error(`timed out waiting for ${what}; unread: ${JSON.stringify(this.buf.toString('latin1'))}`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
}

/**
 * Parses one response at the start of `buf`, or returns null when it is not complete yet. A body
 * without Content-Length or chunked framing is complete only once `ended`.
 */
function parseResponse(buf: Buffer, ended: boolean): RawResponse | null {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd === -1) return null;
  const lines = buf.toString('latin1', 0, headEnd).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (m === null) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const status = Number(m[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const bodyStart = headEnd + 4;
  if (status < 200 || status === 204 || status === 304) {
    return { status, headers, body: Buffer.alloc(0), raw: buf.subarray(0, bodyStart) };
  }
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const parts: Buffer[] = [];
    let pos = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd === -1) return null;
      const size = Number.parseInt(buf.toString('latin1', pos, lineEnd), 16);
      if (size === 0) {
        const end = buf.indexOf('\r\n\r\n', lineEnd);
        if (end === -1) return null;
        return { status, headers, body: Buffer.concat(parts), raw: buf.subarray(0, end + 4) };
      }
      if (buf.length < lineEnd + 2 + size + 2) return null;
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      pos = lineEnd + 2 + size + 2;
    }
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    const end = bodyStart + Number(cl);
    if (buf.length < end) return null;
    return { status, headers, body: buf.subarray(bodyStart, end), raw: buf.subarray(0, end) };
  }
  if (!ended) return null;
  return { status, headers, body: buf.subarray(bodyStart), raw: buf };
}

/** GET / from a chosen local address (127.0.0.0/8 is all local), on a fresh connection; resolves with the body. */
export function getFrom(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', localAddress, agent: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
  });
}
