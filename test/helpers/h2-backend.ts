import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type net from 'node:net';

export type StreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  session: http2.ServerHttp2Session,
) => void;

export interface H2BackendOptions {
  /** SETTINGS the server advertises (maxConcurrentStreams, initialWindowSize...). */
  settings?: http2.Settings;
  /** Handles each stream; the default answers 200 with a body echoing `:path`. */
  onStream?: StreamHandler;
  /** PEM certificate and key: serve h2 over TLS (ALPN h2) instead of h2c. */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface H2Backend {
  server: http2.Http2Server | http2.Http2SecureServer;
  port: number;
  addr: string;
  /** TCP connections accepted so far. */
  accepted: number;
  /** TCP connections open right now. */
  open: number;
  /** Highest number of simultaneously open TCP connections. */
  peak: number;
  /** HTTP/2 sessions established so far. */
  sessions: number;
  /** Streams received so far, over all sessions. */
  streams: number;
  /** Streams open right now, over all sessions. */
  openStreams: number;
  /** Most streams seen open at once on any one session. */
  peakStreamsPerSession: number;
  /** PING frames received (keepalive from the client). */
  pings: number;
  /** Sessions alive right now. */
  liveSessions: Set<http2.ServerHttp2Session>;
  close(): Promise<void>;
}

/** Answers 200 with `:path` as the body. */
export const echoPath: StreamHandler = (stream, headers) => {
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.end(String(headers[':path']));
};

/**
 * An HTTP/2 upstream on 127.0.0.1 (port 0) that counts TCP connections, sessions and streams, and
 * the most streams open at once per session, so tests can check how a client spreads its load.
 */
export async function h2cBackend(opts: H2BackendOptions = {}): Promise<H2Backend> {
  const settings = opts.settings ?? {};
  const server =
    opts.tls === undefined
      ? http2.createServer({ settings })
      : http2.createSecureServer({ settings, cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: false });
  const handler = opts.onStream ?? echoPath;
  const sockets = new Set<net.Socket>();
  const perSession = new Map<http2.ServerHttp2Session, number>();
  const b: Omit<H2Backend, 'port' | 'addr' | 'close'> = {
    server,
    accepted: 0,
    open: 0,
    peak: 0,
    sessions: 0,
    streams: 0,
    openStreams: 0,
    peakStreamsPerSession: 0,
    pings: 0,
    liveSessions: new Set(),
  };
  server.on('connection', (s: net.Socket) => {
    b.accepted++;
    b.open++;
    if (b.open > b.peak) b.peak = b.open;
    sockets.add(s);
    s.on('close', () => {
      b.open--;
      sockets.delete(s);
    });
  });
  server.on('session', (session: http2.ServerHttp2Session) => {
    b.sessions++;
    b.liveSessions.add(session);
    perSession.set(session, 0);
    session.on('error', () => {});
    session.on('ping', () => b.pings++);
    session.on('close', () => {
      b.liveSessions.delete(session);
      perSession.delete(session);
    });
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const session = stream.session as http2.ServerHttp2Session;
    b.streams++;
    b.openStreams++;
    const n = (perSession.get(session) ?? 0) + 1;
    perSession.set(session, n);
    if (n > b.peakStreamsPerSession) b.peakStreamsPerSession = n;
    // Streams refused by a GOAWAY or reset by the client error here: not the test's concern.
    stream.on('error', () => {});
    stream.on('close', () => {
      b.openStreams--;
      const left = perSession.get(session);
      if (left !== undefined) perSession.set(session, left - 1);
    });
    handler(stream, headers, session);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(b, {
    port,
    addr: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of b.liveSessions) s.destroy();
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  });
}
