import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * Direct I/O on a plain TCP socket's libuv handle, for the HTTP/1.1 hot path (client connections and
 * pooled upstream connections): reads into one shared buffer, and writes that skip the Writable stream.
 *
 * Why: profiling showed that the cost of a `net.Socket` read is not the stream layer but the buffer
 * Node allocates for each read (64 KiB from the allocator, shrunk with realloc, wrapped in an
 * ArrayBuffer that the GC must sweep): ~1.5 µs of the 3 µs user time a bare Node forwarder spends
 * per request (bench/analysis.md). Node's own `onread` option (a caller-supplied read buffer) does
 * this for sockets it connects, but not for accepted ones; here the same two handle calls are made
 * on any connected socket: `useUserBuffer` and a replacement for the handle's `onread` callback,
 * which also skips the per-read timer and stream bookkeeping of Node's.
 *
 * This uses internal Node API (`process.binding('stream_wrap')`, `socket._handle`), so it is
 * feature-checked: when anything is missing the caller keeps using 'data' events.
 *
 * The socket stays a normal `net.Socket` in every other respect (end, destroy, 'close', 'error').
 * While a sink is attached, each read is lent to it as a view of the shared buffer (the sink copies
 * what it keeps: see ReadSink); without a sink (after `detach`) reads are copied and pushed into the
 * socket's Readable side as Node would, so pipes and 'data' listeners work. End of input and read
 * errors take Node's own path in both modes.
 */
export interface ReadSink {
  /**
   * The read is `buf[0, length)`. `buf` is lent: it is the shared read buffer, valid only during the
   * call. Bytes kept past it (or written where the write may complete later) must be copied. (The
   * buffer and a length rather than a view: a view is an object per read.)
   */
  onDirectRead(buf: Buffer, length: number): void;
}

/** Told when every direct write that had to wait for the kernel has gone out (the 'drain' of direct writes). */
export interface DrainSink {
  onDirectDrain(): void;
}

/** The request object libuv holds for a write that could not complete at once. */
interface WriteReq {
  oncomplete: (this: WriteReq, status: number) => void;
  handle: StreamHandle;
  buffer: unknown;
  writeStatus?: number | null;
}

interface StreamHandle {
  onread: (this: StreamHandle) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buffer: Uint8Array): void;
  writeBuffer(req: null, data: Uint8Array): number | WriteReq;
  writeLatin1String(req: null, data: string): number | WriteReq;
  writev(req: null, chunks: Uint8Array[], allBuffers: true): number | WriteReq;
  readonly writeQueueSize: number;
  [kSink]?: ReadSink | null;
  [kDrain]?: DrainSink | null;
  [kSocket]?: Socket;
}

interface StreamBinding {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteErr: number;
}

const kSink = Symbol('muxgate.readSink');
const kDrain = Symbol('muxgate.drainSink');
const kSocket = Symbol('muxgate.socket');
/** libuv's UV_EOF (the same value on every platform). */
const UV_EOF = -4095;

const binding = loadBinding();
/**
 * Every direct-read socket (client connections and plain-TCP upstream connections) reads here. Reads
 * are delivered one callback at a time, and Node runs the microtask queue (where queued writes are
 * flushed) after each callback, so each read is used up, or copied, before the next one lands.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

/** Whether `b` is a view of the shared read buffer, i.e. only valid during the read's callback. */
export function isLent(b: Buffer): boolean {
  return b.buffer === READ_BUFFER_MEMORY;
}
const READ_BUFFER_MEMORY = READ_BUFFER.buffer;

function loadBinding(): StreamBinding | null {
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamBinding> }).binding('stream_wrap');
    if (
      b.streamBaseState instanceof Int32Array &&
      typeof b.kReadBytesOrError === 'number' &&
      typeof b.kLastWriteErr === 'number'
    ) {
      return b as StreamBinding;
    }
  } catch {
    // not available: callers fall back to 'data' events
  }
  return null;
}

function handleOf(socket: Socket): StreamHandle | null {
  const h = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (h === null || h === undefined) return null;
  if (
    typeof h.useUserBuffer !== 'function' ||
    typeof h.readStart !== 'function' ||
    typeof h.readStop !== 'function' ||
    typeof h.writeBuffer !== 'function' ||
    typeof h.writeLatin1String !== 'function' ||
    typeof h.writev !== 'function'
  ) {
    return null;
  }
  return h as StreamHandle;
}

/**
 * Switches a connected plain TCP socket to direct reads into `sink`. Returns false (and changes
 * nothing) when the socket is not a plain TCP socket or the internal API is missing; then the caller
 * reads with 'data' events. Not for TLS sockets: their handle is the TLS layer's, not the TCP one.
 */
export function readDirect(socket: Socket, sink: ReadSink): boolean {
  const handle = plainHandle(socket);
  if (handle === null) return false;
  handle[kSink] = sink;
  handle[kSocket] = socket;
  handle.useUserBuffer(READ_BUFFER);
  handle.onread = onDirectRead;
  return true;
}

/**
 * Switches a connected plain TCP socket to direct writes (`writeDirect`), reporting 'drain' to `sink`.
 * Returns false when that is not possible; then the caller writes with `socket.write`. Once switched,
 * the owner writes only through writeDirect: a direct write would overtake bytes that `socket.write`
 * still holds in the stream's buffer. (The other way round is safe: libuv keeps its writes in order,
 * which is why a tunnel may take over the socket with `socket.write` and `pipe`.) `socket.end()` stays
 * correct: libuv shuts the connection down only after pending writes.
 */
export function writeDirectTo(socket: Socket, sink: DrainSink): boolean {
  const handle = plainHandle(socket);
  if (handle === null) return false;
  handle[kDrain] = sink;
  handle[kSocket] = socket;
  return true;
}

function plainHandle(socket: Socket): StreamHandle | null {
  if (binding === null || (socket as { encrypted?: boolean }).encrypted === true) return null;
  return handleOf(socket);
}

/**
 * Writes `data` (a Buffer, or a latin1 string) straight to the handle: usually one `write` syscall
 * and nothing allocated. Returns false when part of it waits for the kernel (the caller should stop
 * producing until the DrainSink hears). A failed write destroys the socket, as socket.write would.
 * `data` must not change until the write completes: pass owned buffers, never views of a shared one.
 */
export function writeDirect(socket: Socket, data: Buffer | string): boolean {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle === null) return true; // destroyed: the data has nowhere to go
  const r = typeof data === 'string' ? handle.writeLatin1String(null, data) : handle.writeBuffer(null, data);
  return afterWrite(socket, handle, r, data);
}

/** Several buffers in one `writev` syscall; the array and its buffers are kept until it completes. */
export function writevDirect(socket: Socket, chunks: Buffer[]): boolean {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle === null) return true;
  return afterWrite(socket, handle, handle.writev(null, chunks, true), chunks);
}

function afterWrite(socket: Socket, handle: StreamHandle, r: number | WriteReq, data: unknown): boolean {
  if (typeof r === 'number') {
    if (r !== 0) socket.destroy(errnoError(r, 'write'));
    return true;
  }
  const err = binding!.streamBaseState[binding!.kLastWriteErr]!;
  if (err !== 0) {
    socket.destroy(errnoError(err, 'write'));
    return true;
  }
  r.handle = handle;
  r.buffer = data; // keeps the bytes alive while libuv still points at them
  r.oncomplete = onDirectWriteComplete;
  // A write can finish inside the call, before oncomplete was attached: Node records the status then.
  const status = r.writeStatus;
  if (status !== null && status !== undefined) {
    r.writeStatus = null;
    r.buffer = null;
    if (status < 0) socket.destroy(errnoError(status, 'write'));
    // Done; if earlier writes still wait, their completion reports the drain.
    return handle.writeQueueSize === 0;
  }
  return false;
}

function onDirectWriteComplete(this: WriteReq, status: number): void {
  const handle = this.handle;
  this.buffer = null;
  const socket = handle[kSocket];
  if (socket === undefined) return;
  if (status < 0) {
    if (!socket.destroyed) socket.destroy(errnoError(status, 'write'));
    return;
  }
  if (handle.writeQueueSize === 0) handle[kDrain]?.onDirectDrain();
}

function errnoError(errno: number, syscall: string): Error {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`${syscall} ${code}`), { errno, code, syscall });
}

/**
 * Hand the socket back to its streams: reads go to its Readable side ('data', pipe) from now on, and
 * the drain sink hears no more. Writes already handed to libuv go out before any later socket.write.
 */
export function detachDirect(socket: Socket): void {
  const handle = handleOf(socket);
  if (handle === null) return;
  handle[kSink] = null;
  handle[kDrain] = null;
}

/** Stop reading (the kernel buffer fills and TCP pushes back). */
export function pauseDirect(socket: Socket): void {
  const handle = handleOf(socket);
  if (handle === null || !handle.reading) return;
  handle.reading = false;
  handle.readStop();
}

export function resumeDirect(socket: Socket): void {
  const handle = handleOf(socket);
  if (handle === null || handle.reading || socket.destroyed) return;
  handle.reading = true;
  handle.readStart();
}

function onDirectRead(this: StreamHandle): void {
  const state = binding!.streamBaseState;
  const n = state[binding!.kReadBytesOrError]!;
  const socket = this[kSocket]!;
  if (n > 0) {
    if (socket.destroyed) return;
    const sink = this[kSink];
    if (sink !== null && sink !== undefined) {
      sink.onDirectRead(READ_BUFFER, n);
    } else if (!socket.push(Buffer.from(READ_BUFFER.subarray(0, n)))) {
      this.reading = false;
      this.readStop();
    }
    return;
  }
  if (n === 0) return;
  if (n !== UV_EOF) {
    socket.destroy(errnoError(n, 'read'));
    return;
  }
  // End of input, as Node does it: the Readable side ends, which emits 'end' once buffered data is read.
  socket.push(null);
  socket.read(0);
}
