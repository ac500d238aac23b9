/**
 * WebSocket test peers built on the `ws` package: an HTTP/1.1 echo backend, an HTTP/2 (RFC 8441) echo
 * backend that can also answer HTTP/1.1 Upgrades on the same cleartext port, and clients for both.
 *
 * Echo protocol: every message comes back as sent (text stays text, binary stays binary). A text
 * message "close <code> <reason>" makes the backend close with that code and reason.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';

export interface WsBackend {
  port: number;
  addr: string;
  /** TCP connections accepted so far / open now. */
  accepted: number;
  open: number;
  /** WebSockets opened via HTTP/1.1 Upgrade and via RFC 8441 streams. */
  h1Upgrades: number;
  h2Streams: number;
  /** Most RFC 8441 streams open at once on one HTTP/2 session. */
  peakStreamsPerSession: number;
  /** Headers of the last handshake (HTTP/1.1 request headers, or the HTTP/2 stream's headers). */
  lastHeaders: http.IncomingHttpHeaders | http2.IncomingHttpHeaders | null;
  /** Open server-side sockets (for close codes and backpressure checks). */
  sockets: Set<WebSocket>;
  /** Close codes the backend received from clients. */
  closeCodes: number[];
  /** Answer handshakes with this status instead of upgrading (a refusal). */
  refuseWith: number | null;
  close(): Promise<void>;
}

export interface WsBackendOptions {
  /** Serve RFC 8441 over h2c (prior knowledge); HTTP/1.1 Upgrades still work on the same port. */
  h2?: boolean;
  /** Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (default true with h2). */
  connectProtocol?: boolean;
  /** Echo messages back (default true). */
  echo?: boolean;
}

interface ServerWebSocket extends WebSocket {
  setSocket(socket: Duplex, head: Buffer, opts: { maxPayload?: number; allowSynchronousEvents?: boolean }): void;
}
type RawWsCtor = new (a: null, p: undefined, o: { autoPong?: boolean; closeTimeout?: number }) => ServerWebSocket;
const RawWs = WebSocket as unknown as RawWsCtor;
const MAX_PAYLOAD = 256 * 1024 * 1024;

/**
 * A WebSocket over an already-open duplex (an HTTP/2 stream). `client` makes it mask its frames and
 * expect unmasked ones, as a client must; ws decides that by an internal flag, set here.
 */
export function wsOverStream(stream: Duplex, client: boolean): WebSocket {
  const w = new RawWs(null, undefined, { autoPong: true, closeTimeout: 30_000 });
  if (client) (w as unknown as { _isServer: boolean })._isServer = false;
  w.setSocket(stream, Buffer.alloc(0), { maxPayload: MAX_PAYLOAD, allowSynchronousEvents: true });
  return w;
}

export async function wsBackend(o: WsBackendOptions = {}): Promise<WsBackend> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD });
  const b: WsBackend = {
    port: 0,
    addr: '',
    accepted: 0,
    open: 0,
    h1Upgrades: 0,
    h2Streams: 0,
    peakStreamsPerSession: 0,
    lastHeaders: null,
    sockets: new Set(),
    closeCodes: [],
    refuseWith: null,
    close: async () => {},
  };
  const echo = o.echo ?? true;
  const serve = (w: WebSocket) => {
    b.sockets.add(w);
    w.on('close', (code: number) => {
      b.sockets.delete(w);
      b.closeCodes.push(code);
    });
    w.on('error', () => {});
    w.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        const m = /^close (\d+) ?(.*)$/.exec(data.toString());
        if (m !== null) {
          w.close(Number(m[1]), m[2]);
          return;
        }
      }
      if (echo) w.send(data, { binary: isBinary });
    });
  };
  const h1 = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('plain http\n');
  });
  h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    b.lastHeaders = req.headers;
    if (b.refuseWith !== null) {
      const body = 'go away\n';
      socket.end(
        `HTTP/1.1 ${b.refuseWith} Refused\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nx-reason: test\r\n\r\n${body}`,
      );
      return;
    }
    b.h1Upgrades++;
    wss.handleUpgrade(req, socket, head, serve);
  });
  let h2: http2.Http2Server | null = null;
  if (o.h2 === true) {
    h2 = http2.createServer({
      settings: { enableConnectProtocol: o.connectProtocol ?? true, maxConcurrentStreams: 100 },
    });
    h2.on('session', (session: http2.ServerHttp2Session) => {
      let open = 0;
      session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
        if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
          stream.respond({ ':status': 200 });
          stream.end('plain h2\n');
          return;
        }
        b.lastHeaders = headers;
        if (b.refuseWith !== null) {
          stream.respond({ ':status': b.refuseWith, 'x-reason': 'test' });
          stream.end('go away\n');
          return;
        }
        b.h2Streams++;
        open++;
        b.peakStreamsPerSession = Math.max(b.peakStreamsPerSession, open);
        stream.on('close', () => open--);
        stream.respond({ ':status': 200 });
        serve(wsOverStream(stream, false));
      });
    });
  }
  const PREFACE = 'PRI * HTTP/2.0';
  const server = net.createServer((socket) => {
    b.accepted++;
    b.open++;
    socket.on('close', () => b.open--);
    if (h2 === null) {
      h1.emit('connection', socket);
      return;
    }
    // One cleartext port for both: the HTTP/2 preface, or else HTTP/1.1.
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first.toString('latin1', 0, PREFACE.length) === PREFACE) {
        // node:http2 takes the unshifted bytes from the socket's buffer itself.
        h2?.emit('connection', socket);
        return;
      }
      h1.emit('connection', socket);
      socket.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  b.port = (server.address() as AddressInfo).port;
  b.addr = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((resolve) => {
      for (const w of b.sockets) w.terminate();
      h1.closeAllConnections();
      h2?.close();
      server.close(() => resolve());
      setTimeout(resolve, 500).unref();
    });
  return b;
}

/** An HTTP/1.1 WebSocket client; resolves once open. */
export function wsConnect(url: string, opts: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const w = new WebSocket(url, { maxPayload: MAX_PAYLOAD, ...opts });
    w.once('open', () => resolve(w));
    w.once('error', reject);
    w.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () =>
        reject(
          Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, body, headers: res.headers }),
        ),
      );
    });
  });
}

/** Resolves with the next message (as a Buffer, plus whether it was binary). */
export function nextMessage(w: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve, reject) => {
    const onMsg = (data: Buffer, binary: boolean) => {
      w.off('close', onClose);
      resolve({ data, binary });
    };
    const onClose = (code: number) => {
      w.off('message', onMsg);
      reject(new Error(`closed with ${code} before a message`));
    };
    w.once('message', onMsg);
    w.once('close', onClose);
  });
}

/** Resolves with the close code and reason. */
export function closed(w: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    if (w.readyState === WebSocket.CLOSED) resolve({ code: 1006, reason: '' });
    w.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
}

/**
 * Opens an RFC 8441 WebSocket over an HTTP/2 session: extended CONNECT, then WebSocket frames on the
 * stream. Rejects with the status when the answer is not 200.
 */
export function wsOverH2(
  session: http2.ClientHttp2Session,
  path: string,
  authority: string,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<{ ws: WebSocket; headers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'http',
        ':path': path,
        ':authority': authority,
        'sec-websocket-version': '13',
        ...extra,
      },
      { endStream: false },
    );
    stream.once('error', reject);
    stream.once('response', (headers) => {
      const status = Number(headers[':status']);
      if (status !== 200) {
        let body = '';
        stream.on('data', (c: Buffer) => {
          body += c.toString();
        });
        stream.on('end', () => reject(Object.assign(new Error(`status ${status}`), { status, body, headers })));
        return;
      }
      resolve({ ws: wsOverStream(stream, true), headers });
    });
  });
}

export { WebSocket };
