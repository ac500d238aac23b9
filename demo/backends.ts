import { Buffer } from 'node:buffer';
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';

/** A demo upstream that answers every request with a small JSON description of what it received. */
export function startDemoBackend(name: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = `${JSON.stringify(
        {
          backend: name,
          method: req.method,
          url: req.url,
          body_bytes: bytes,
          forwarded: {
            'x-forwarded-for': req.headers['x-forwarded-for'],
            'x-forwarded-proto': req.headers['x-forwarded-proto'],
            'x-forwarded-host': req.headers['x-forwarded-host'],
            forwarded: req.headers.forwarded,
            via: req.headers.via,
          },
        },
        null,
        2,
      )}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

interface ServerWebSocket extends WebSocket {
  setSocket(socket: Duplex, head: Buffer, opts: { maxPayload?: number; allowSynchronousEvents?: boolean }): void;
}
type RawWsCtor = new (a: null, p: undefined, o: { autoPong?: boolean }) => ServerWebSocket;

/**
 * The demo's HTTP/2 upstream (h2c, prior knowledge): GET answers like the HTTP/1.1 backends, and
 * WebSockets arrive as RFC 8441 extended CONNECT streams (SETTINGS_ENABLE_CONNECT_PROTOCOL), echoed.
 * This is what lets thousands of client WebSockets ride a handful of muxgate's upstream connections.
 * `ws` speaks WebSocket over any duplex through setSocket, which it uses for its own server side.
 */
export function startDemoH2Backend(name: string, port: number): Promise<http2.Http2Server> {
  const server = http2.createServer({ settings: { enableConnectProtocol: true, maxConcurrentStreams: 1000 } });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on('error', () => {});
    if (headers[':method'] === 'CONNECT' && headers[':protocol'] === 'websocket') {
      stream.respond({ ':status': 200 });
      const w = new (WebSocket as unknown as RawWsCtor)(null, undefined, { autoPong: true });
      w.setSocket(stream, Buffer.alloc(0), { maxPayload: 1 << 20 });
      w.on('error', () => {});
      w.on('message', (data: Buffer, binary: boolean) => w.send(data, { binary }));
      return;
    }
    const body = `${JSON.stringify({ backend: name, protocol: 'HTTP/2', method: headers[':method'], url: headers[':path'] })}\n`;
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    stream.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
