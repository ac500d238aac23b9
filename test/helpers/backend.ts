import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { waitUntil } from './wait.ts';

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

/** A TCP echo upstream: every byte goes back on the connection it came from (`open` counts them). */
export function echoBackend(): Promise<Backend<net.Server>> {
  return rawBackend((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

/** A TCP upstream that records every byte each connection sent (`got[i]`, in accept order); with `echo`, also sends them back. */
export async function recordingBackend(echo: boolean): Promise<Backend<net.Server> & { got: Buffer[] }> {
  const got: Buffer[] = [];
  const b = await rawBackend((s) => {
    const i = got.push(Buffer.alloc(0)) - 1;
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      got[i] = Buffer.concat([got[i]!, c]);
      if (echo) s.write(c);
    });
    s.on('end', () => s.end());
  });
  return Object.assign(b, { got });
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

/** Kernel TCP states as /proc/net/tcp writes them. */
const TCP_SYN_SENT = 0x02;
const TCP_LISTEN = 0x0a;

/** One IPv4 socket of /proc/net/tcp; addresses as the kernel writes them ("0100007F:1F90"). */
interface KernelSocket {
  local: string;
  remote: string;
  state: number;
  /** For a listener: the connections in its accept queue. */
  rxQueue: number;
}

/** The IPv4 TCP sockets of this network namespace, or null where there is no /proc/net/tcp (not Linux). */
function kernelSockets(): KernelSocket[] | null {
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return null;
  }
  const out: KernelSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const queues = (f[4] ?? '').split(':');
    out.push({
      local: f[1] ?? '',
      remote: f[2] ?? '',
      state: Number.parseInt(f[3] ?? '', 16),
      rxQueue: Number.parseInt(queues[1] ?? '', 16),
    });
  }
  return out;
}

/** 127.0.0.1:port the way /proc/net/tcp writes it. */
function loopbackKey(port: number): string {
  return `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Resolves when `s` connects or fails, or with 'pending' after `ms`. */
function settle(s: net.Socket, ms: number): Promise<'connected' | 'failed' | 'pending'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('pending'), ms);
    const done = (r: 'connected' | 'failed') => {
      clearTimeout(timer);
      resolve(r);
    };
    s.once('connect', () => done('connected'));
    s.once('error', () => done('failed'));
  });
}

/** The listen() backlog of the blackhole's listener. */
const BLACKHOLE_BACKLOG = 1;

/**
 * A local address where TCP connects hang (for connect timeouts without relying on the network): a
 * listener whose thread never accepts, with its accept queue filled by held connections, so the
 * kernel drops further SYNs. `hangs` says whether that held here; where it is false (no
 * /proc/net/tcp, or a kernel that answers a full queue) callers skip.
 *
 * Nothing here reads the clock to decide: on a loaded machine a connect that succeeded can look
 * "still pending" to a starved event loop. The decision is the kernel's own state: Linux drops a SYN
 * to a listener whose accept queue holds more than its backlog (sk_acceptq_is_full), and
 * /proc/net/tcp shows both the queue length and a probe connect left in SYN_SENT.
 */
export async function blackhole(): Promise<{ port: number; addr: string; hangs: boolean; close(): Promise<void> }> {
  const release = new Int32Array(new SharedArrayBuffer(4));
  // The worker's event loop is blocked in Atomics.wait, so libuv never calls accept().
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const srv = require('node:net').createServer();
     srv.listen({ port: 0, host: '127.0.0.1', backlog: ${BLACKHOLE_BACKLOG} }, () => {
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
  const hole = {
    port,
    addr: `127.0.0.1:${port}`,
    hangs: false,
    close: async () => {
      for (const s of held) s.destroy();
      Atomics.store(release, 0, 1);
      Atomics.notify(release, 0);
      await worker.terminate();
    },
  };
  try {
    hole.hangs = await fillAcceptQueue(port, held);
  } catch (err) {
    await hole.close();
    throw err;
  }
  return hole;
}

/** Fills the accept queue of the listener on 127.0.0.1:port; true when the kernel now drops SYNs to it. */
async function fillAcceptQueue(port: number, held: net.Socket[]): Promise<boolean> {
  const key = loopbackKey(port);
  const acceptQueue = () => kernelSockets()?.find((k) => k.local === key && k.state === TCP_LISTEN)?.rxQueue;
  if (acceptQueue() === undefined) return false; // no /proc/net/tcp: the kernel cannot be asked
  // listen() caps the backlog at net.core.somaxconn.
  let somaxconn = BLACKHOLE_BACKLOG;
  try {
    somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1').trim());
  } catch {}
  const limit = Math.min(BLACKHOLE_BACKLOG, somaxconn);
  const open = () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    held.push(s);
    return s;
  };
  // Up to `limit + 1` connections the kernel completes the handshake itself, without accept(). Each
  // is awaited for as long as a starved event loop needs to see it; the bound only keeps a kernel
  // that counts differently from hanging the test (it then skips).
  for (let i = 0; i <= limit; i++) {
    if ((await settle(open(), 10_000)) !== 'connected') return false;
  }
  // The client's side of a handshake can complete before the listener has queued it: wait for the queue.
  try {
    await waitUntil(() => (acceptQueue() ?? 0) > limit, 'the accept queue to fill', { timeoutMs: 10_000 });
  } catch {
    return false;
  }
  // The queue is full and nobody will ever accept. A probe confirms that SYNs now go unanswered: one
  // that connects, or is refused, means this kernel answers a full queue after all. A probe still
  // pending by the clock is checked in the kernel too, for it may only be this process running late.
  const probe = open();
  const r = await settle(probe, 200);
  if (r !== 'pending') return false;
  const probeKey = loopbackKey(probe.localPort ?? 0);
  const state = kernelSockets()?.find((k) => k.local === probeKey && k.remote === key)?.state;
  return state === TCP_SYN_SENT;
}
