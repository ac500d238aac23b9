import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';

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

function track<S extends net.Server>(
  server: S,
): Omit<Backend<S>, 'port' | 'addr' | 'close'> & { sockets: Set<net.Socket> } {
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

/**
 * A local address where TCP connects hang (for connect timeouts without relying on the network): a
 * listener whose thread never accepts, with its accept queue filled by two held connections, so the
 * kernel drops further SYNs. `hangs` says whether that held here (checked with a probe connect).
 */
export async function blackhole(): Promise<{ port: number; addr: string; hangs: boolean; close(): Promise<void> }> {
  const release = new Int32Array(new SharedArrayBuffer(4));
  // The worker's event loop is blocked in Atomics.wait, so libuv never calls accept().
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const srv = require('node:net').createServer();
     srv.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(srv.address().port);
       Atomics.wait(workerData, 0, 0);
       srv.close();
     });`,
    { eval: true, workerData: release },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const held: net.Socket[] = [];
  const attempt = (ms: number) =>
    new Promise<'connected' | 'failed' | 'pending'>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      held.push(s);
      s.on('error', () => resolve('failed'));
      s.on('connect', () => resolve('connected'));
      setTimeout(() => resolve('pending'), ms);
    });
  // Linux queues backlog + 1 connections; allow a few in case the limit is counted differently.
  let hangs = false;
  for (let i = 0; i < 4 && !hangs; i++) {
    const r = await attempt(300);
    if (r === 'failed') break;
    hangs = r === 'pending';
  }
  return {
    port,
    addr: `127.0.0.1:${port}`,
    hangs,
    close: async () => {
      for (const s of held) s.destroy();
      Atomics.store(release, 0, 1);
      Atomics.notify(release, 0);
      await worker.terminate();
    },
  };
}
