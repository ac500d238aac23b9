import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

export interface Backend<S> {
  server: S;
  port: number;
  addr: string;
  /** TCP connections accepted so far. */
  accepted: number;
  /** Connections open right now. */
  open: number;
  /** Highest number of simultaneously open connections seen. */
  peak: number;
  close(): Promise<void>;
}

function track<S extends net.Server>(server: S): Omit<Backend<S>, 'port' | 'addr' | 'close'> & { sockets: Set<net.Socket> } {
  const b = { server, accepted: 0, open: 0, peak: 0, sockets: new Set<net.Socket>() };
  server.on('connection', (s: net.Socket) => {
    b.accepted++;
    b.open++;
    b.sockets.add(s);
    if (b.open > b.peak) b.peak = b.open;
    s.on('close', () => {
      b.open--;
      b.sockets.delete(s);
    });
  });
  return b;
}

async function listen<S extends net.Server>(server: S): Promise<Backend<S>> {
  const b = track(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(b, {
    port,
    addr: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of b.sockets) s.destroy();
        server.close(() => r());
      }),
  });
}

/** A node:http upstream. */
export function httpBackend(handler: http.RequestListener): Promise<Backend<http.Server>> {
  const server = http.createServer({ keepAliveTimeout: 30_000 }, handler);
  return listen(server);
}

/** A raw TCP upstream for misbehaving on purpose: `onSocket` gets each accepted connection. */
export function rawBackend(onSocket: (s: net.Socket) => void): Promise<Backend<net.Server>> {
  return listen(net.createServer({ allowHalfOpen: true }, onSocket));
}

/** Reads from a socket until a full HTTP/1.1 request head arrives; resolves with it and any extra bytes. */
export function readHead(s: net.Socket): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const i = buf.indexOf('\r\n\r\n');
      if (i !== -1) {
        s.off('data', onData);
        resolve({ head: buf.subarray(0, i + 4).toString('latin1'), rest: buf.subarray(i + 4) });
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}
