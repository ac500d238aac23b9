import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { detachDirect, readDirect, resumeDirect, writeDirect, writeDirectTo, writevDirect } from '../core/direct-io.ts';
import { DATA, FLAG_END_STREAM, FRAME_HEADER, HEADERS, writeFrameHeader } from './frame.ts';
import type { HpackEncoder } from './hpack-encoder.ts';

/** What the transport drives: the connection's reads, its flush hook, drain and close. */
export interface TransportOwner {
  onBytes(buf: Buffer, start: number, end: number): void;
  beforeFlush(): void;
  onDrain(): void;
  onTransportClosed(error: boolean): void;
  congested: boolean;
}

/**
 * Output of every transport is gathered in one shared arena per turn of the event loop; pieces up to
 * COPY_MAX are copied in, larger owned ones referenced. One arena for all rather than one per
 * connection: a burst of new connections that each write a few hundred bytes (SETTINGS, a response)
 * used to cost a 64 KiB malloc each, freed only by a later GC, and the malloc heap stayed fragmented
 * (about 2 KiB of RSS per idle connection).
 */
const ARENA_BYTES = 64 * 1024;
const COPY_MAX = 4096;
let arena: Buffer = Buffer.allocUnsafeSlow(ARENA_BYTES);
let arenaUsed = 0;
/**
 * A direct write that did not complete at once left views of this turn's arenas with libuv: they are
 * never rewound, fresh ones take over after the turn (the old ones go when their writes complete).
 */
let arenaPinned = false;
/** The transport whose slice ends at arenaUsed: only it may extend its slice in place. */
let appender: H2Transport | null = null;
/** Arenas filled during this turn, and those kept for reuse once a turn ended with none pinned. */
const fullArenas: Buffer[] = [];
const spareArenas: Buffer[] = [];
const SPARE_ARENAS = 2;

function nextArena(): void {
  fullArenas.push(arena);
  arena = spareArenas.pop() ?? Buffer.allocUnsafeSlow(ARENA_BYTES);
  arenaUsed = 0;
}

/** Whether `b` is a view of an arena that will be rewound (a stream socket must get a copy). */
function inArena(b: Buffer): boolean {
  if (b.buffer === arena.buffer) return true;
  for (let i = 0; i < fullArenas.length; i++) if (b.buffer === fullArenas[i]!.buffer) return true;
  return false;
}

/** Transports with output this turn; all flushed from one setImmediate. */
const toFlush: H2Transport[] = [];
let flushQueued = false;

function flushAll(): void {
  flushQueued = false;
  // Index loop: a flush can schedule another transport (a stream relayed between two connections).
  for (let i = 0; i < toFlush.length; i++) toFlush[i]!.flush();
  toFlush.length = 0;
  // Every transport that appended was scheduled (reserve sees to it), so all output is out: the
  // arena starts over, unless the kernel did not take some of it yet.
  appender = null;
  if (arenaPinned) {
    arenaPinned = false;
    arena = spareArenas.pop() ?? Buffer.allocUnsafeSlow(ARENA_BYTES);
  } else {
    for (let i = 0; i < fullArenas.length && spareArenas.length < SPARE_ARENAS; i++) spareArenas.push(fullArenas[i]!);
  }
  fullArenas.length = 0;
  arenaUsed = 0;
}

// Socket events reach the transport through the socket: no closures per connection.
const kTransport = Symbol('muxgate.h2Transport');
type TransportSocket = Socket & { [kTransport]: H2Transport };

function onSocketError(this: TransportSocket): void {
  this[kTransport].failed = true;
}

function onSocketEnd(this: Socket): void {
  if (!this.destroyed) this.destroy();
}

function onSocketClose(this: TransportSocket): void {
  this[kTransport].onClose();
}

function onSocketData(this: TransportSocket, chunk: Buffer): void {
  this[kTransport].onDirectRead(chunk, chunk.length);
}

function onSocketDrain(this: TransportSocket): void {
  this[kTransport].onDirectDrain();
}

/**
 * The bytes under one HTTP/2 connection. A plain TCP socket is read through the shared direct-read
 * buffer (frames are parsed in place; only an incomplete frame is copied) and written through its
 * handle; a TLS socket uses 'data' events and `write`.
 *
 * Output is gathered and written once per turn of the event loop (a setImmediate after the poll
 * phase), not after every read: a connection whose streams are answered by many upstream reads in one
 * turn then costs one write syscall, not one per response. Frame headers and small payloads are
 * copied into the shared arena, each transport keeping the slices that are its own (one, unless
 * other connections appended in between: then a writev); since the write happens after later reads
 * may have reused the shared read buffer, lent views are always copied. A stream socket (TLS) gets
 * its slices copied at the write, since it may hold them past the call.
 *
 * The peer's FIN ends the connection at once: HTTP/2 has no use for a half-closed connection
 * (everything the peer could still want is on a stream), and waiting would leave the socket in
 * CLOSE-WAIT until a timeout.
 */
export class H2Transport {
  readonly socket: Socket;
  private readonly owner: TransportOwner;
  /** Sealed output in order (arena slices and large owned payloads). */
  private parts: Buffer[] | null = null;
  /** The open slice of the output: `slice[sliceStart, sliceEnd)`, slice being the arena it is in. */
  private slice: Buffer | null = null;
  private sliceStart = 0;
  private sliceEnd = 0;
  private scheduled = false;
  /** Written through the handle (plain TCP); else through the socket's stream (TLS, tests). */
  private readonly direct: boolean;
  private ending = false;
  failed = false;
  private finished = false;
  /** Where the last frame header went (until the next flush): see endLastData. */
  private lastArena: Buffer | null = null;
  private lastPos = 0;
  private lastType = -1;
  private lastStream = 0;

  constructor(socket: Socket, owner: TransportOwner) {
    this.socket = socket;
    this.owner = owner;
    (socket as TransportSocket)[kTransport] = this;
    this.direct = writeDirectTo(socket, this);
    socket.on('error', onSocketError);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
  }

  startReading(): void {
    const socket = this.socket;
    if (socket.destroyed) {
      this.owner.onTransportClosed(true);
      return;
    }
    if (this.direct && readDirect(socket, this)) {
      // The handle reads (socket.resume() would also cost a tick and stream bookkeeping).
      resumeDirect(socket);
      return;
    }
    socket.on('data', onSocketData);
    if (!this.direct) socket.on('drain', onSocketDrain);
    socket.resume();
  }

  onDirectRead(buf: Buffer, length: number): void {
    this.owner.onBytes(buf, 0, length);
  }

  onDirectDrain(): void {
    this.owner.onDrain();
  }

  onClose(): void {
    this.release();
    this.owner.onTransportClosed(this.failed || !this.ending);
  }

  /** Where `n` (at most what the arena has left) more bytes of this transport's output go in `arena`. */
  private reserve(n: number): number {
    if (appender !== this || this.slice !== arena) {
      this.seal();
      this.slice = arena;
      this.sliceStart = arenaUsed;
      appender = this;
      // Whatever is in the arena must be flushed before the turn rewinds it.
      if (!this.scheduled) this.schedule();
    }
    const at = arenaUsed;
    arenaUsed += n;
    this.sliceEnd = arenaUsed;
    return at;
  }

  /** The open slice joins the sealed output. */
  private seal(): void {
    const a = this.slice;
    if (a === null) return;
    this.slice = null;
    (this.parts ??= []).push(a.subarray(this.sliceStart, this.sliceEnd));
  }

  /** A frame header; its payload follows with `bytes`. */
  header(length: number, type: number, flags: number, streamId: number): void {
    if (arenaUsed + FRAME_HEADER > arena.length) nextArena();
    const at = this.reserve(FRAME_HEADER);
    this.lastArena = arena;
    this.lastPos = at;
    this.lastType = type;
    this.lastStream = streamId;
    writeFrameHeader(arena, at, length, type, flags, streamId);
  }

  /**
   * One HEADERS frame whose block `encoder` makes of `fields`, encoded in the arena right after the
   * frame header. False, with nothing written or encoded, when the block might not fit `maxLength`
   * (the peer's frame size) or an arena: the caller then encodes it apart.
   */
  headers(
    streamId: number,
    flags: number,
    fields: readonly string[],
    encoder: HpackEncoder,
    maxLength: number,
  ): boolean {
    // The same block as the encoder's last (a request repeating the previous one's fields): its octets again.
    const again = encoder.repeatLength(fields);
    const bound = again >= 0 ? again : encoder.bound(fields);
    if (bound > maxLength || FRAME_HEADER + bound > ARENA_BYTES) return false;
    if (arenaUsed + FRAME_HEADER + bound > arena.length) nextArena();
    const at = this.reserve(FRAME_HEADER + bound);
    const end =
      again >= 0 ? encoder.writeKept(arena, at + FRAME_HEADER) : encoder.encodeInto(fields, arena, at + FRAME_HEADER);
    // The room not used goes back: this transport appended last, just now.
    arenaUsed = end;
    this.sliceEnd = end;
    writeFrameHeader(arena, at, end - at - FRAME_HEADER, HEADERS, flags, streamId);
    this.lastArena = arena;
    this.lastPos = at;
    this.lastType = HEADERS;
    this.lastStream = streamId;
    return true;
  }

  /**
   * Sets END_STREAM on the frame written last if it is a DATA frame of `streamId` not yet flushed:
   * a response whose end follows its last body bytes then costs no empty DATA frame.
   */
  endLastData(streamId: number): boolean {
    const a = this.lastArena;
    if (a === null || this.lastType !== DATA || this.lastStream !== streamId) return false;
    a[this.lastPos + 4]! |= FLAG_END_STREAM;
    this.lastArena = null;
    return true;
  }

  /** Payload bytes `buf[start, end)`: copied when small or lent, else referenced (must not change). */
  bytes(buf: Buffer, start: number, end: number, owned: boolean): void {
    if (start === end) return;
    if (end - start <= COPY_MAX || !owned) {
      // A large lent view is copied in pieces that fill each arena.
      while (start < end) {
        if (arenaUsed === arena.length) nextArena();
        const take = Math.min(end - start, arena.length - arenaUsed);
        buf.copy(arena, this.reserve(take), start, start + take);
        start += take;
      }
      return;
    }
    this.seal();
    (this.parts ??= []).push(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
    if (!this.scheduled) this.schedule();
  }

  /** Output was added: flush it this turn. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    toFlush.push(this);
    if (!flushQueued) {
      flushQueued = true;
      setImmediate(flushAll);
    }
  }

  flush(): void {
    const socket = this.socket;
    if (socket.destroyed) {
      this.scheduled = false;
      this.release();
      return;
    }
    // What beforeFlush appends leaves with this write: no second flush for it.
    this.scheduled = true;
    this.owner.beforeFlush();
    this.scheduled = false;
    this.lastArena = null;
    if (this.parts === null && this.slice === null) {
      if (this.ending) this.finishEnd();
      return;
    }
    let ok: boolean;
    if (this.parts === null) {
      const view = this.slice!.subarray(this.sliceStart, this.sliceEnd);
      this.slice = null;
      if (this.direct) {
        ok = writeDirect(socket, view);
        // Not written at once: libuv holds the view.
        if (!ok) arenaPinned = true;
      } else ok = socket.write(Buffer.from(view));
    } else {
      this.seal();
      const parts = this.parts!;
      this.parts = null;
      if (this.direct) {
        ok = writevDirect(socket, parts);
        if (!ok) arenaPinned = true;
      } else {
        socket.cork();
        ok = true;
        for (const p of parts) ok = socket.write(inArena(p) ? Buffer.from(p) : p) && ok;
        socket.uncork();
      }
    }
    if (!ok) this.owner.congested = true;
    if (this.ending) this.finishEnd();
  }

  private release(): void {
    this.slice = null;
    this.parts = null;
    this.lastArena = null;
  }

  /** Sends what is queued, then FIN; the socket is destroyed if the peer does not close in time. */
  end(): void {
    if (this.ending) return;
    this.ending = true;
    if (this.scheduled) return; // flush() ends it
    this.flush();
  }

  private finishEnd(): void {
    const socket = this.socket;
    if (this.finished || socket.destroyed) return;
    this.finished = true;
    if (this.direct) {
      // From now on reads go to the socket's stream: let it flow, so that what the peer still sends
      // is dropped and its FIN reaches 'end' (reads were never through the stream until now).
      detachDirect(socket);
      socket.resume();
    }
    socket.end();
    // The peer may never read our GOAWAY: do not keep the socket for longer than a moment.
    const t = setTimeout(() => socket.destroy(), 2000);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  }

  destroy(): void {
    this.ending = true;
    this.socket.destroy();
  }
}
