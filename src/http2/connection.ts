import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { isLent } from '../core/direct-io.ts';
import type { Expirable } from '../core/sweeper.ts';
import { sweeper, deadlineIn } from '../core/sweeper.ts';
import {
  CANCEL,
  CLIENT_PREFACE,
  COMPRESSION_ERROR,
  CONTINUATION,
  DATA,
  DEFAULT_WINDOW,
  ENHANCE_YOUR_CALM,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FLOW_CONTROL_ERROR,
  FRAME_HEADER,
  FRAME_SIZE_ERROR,
  GOAWAY,
  HEADERS,
  INTERNAL_ERROR,
  MAX_STREAM_ID,
  MAX_WINDOW,
  NO_ERROR,
  PING,
  PRIORITY,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  REFUSED_STREAM,
  RST_STREAM,
  readU32,
  SETTINGS,
  SETTINGS_TIMEOUT,
  STREAM_CLOSED,
  WINDOW_UPDATE,
  writeU32,
} from './frame.ts';
import {
  FLOOD_CODES,
  FLOOD_EMPTY,
  FLOOD_PING,
  FLOOD_PRIORITY,
  FLOOD_RESET,
  FLOOD_SETTINGS,
  FLOOD_WINDOW_UPDATE,
  FloodGuard,
} from './flood-guard.ts';
import { HpackDecoder } from './hpack-decoder.ts';
import { HpackEncoder } from './hpack-encoder.ts';
import { applySettings, defaultSettings, type Settings } from './settings.ts';
import { FrameReader, type FrameSink } from './frame-reader.ts';
import { contentLength, hasPseudo, isInterim, noBodyStatus } from './message-fields.ts';
import { Http2Stream, type StreamSink } from './stream.ts';
import { H2Transport } from './transport.ts';
import { StreamTable } from './stream-table.ts';
import type { ConnectionFailure, ConnectionHandler, ConnectionOptions, Role } from './connection-types.ts';
import { settingsPayload, sharedOf } from './local-settings.ts';
import { ClosedStreamIds } from './closed-stream-ids.ts';

export type { ConnectionFailure, ConnectionHandler, ConnectionOptions, Role } from './connection-types.ts';

const PREFACE = Buffer.from(CLIENT_PREFACE, 'latin1');
/** Scratch for 4-byte payloads (copied into the output at once). */
const U32 = Buffer.alloc(4);
/** Sentinel for "no header block in progress". */
const NONE = 0;
/** Output a stream may queue beyond its window before its producer is asked to wait. */
const STREAM_HIGH_WATER = 64 * 1024;
/** Connection-level unacknowledged output past which producers are asked to wait. */
const EMPTY = Buffer.alloc(0);

/**
 * One HTTP/2 connection (RFC 9113), either role: frames parsed in place from the transport's reads,
 * HPACK both ways, the stream state machine, flow control both ways, SETTINGS/PING/GOAWAY, and the
 * flood defences. Output frames are gathered and written once per turn of the event loop by the
 * transport. Streams are `Http2Stream` records; their owners hear through `StreamSink`.
 *
 * Errors follow §5.4: a stream error sends RST_STREAM and ends that stream only; a connection error
 * sends GOAWAY with the code and closes. The peer's FIN or a socket error closes everything at once.
 */
export class Http2Connection implements Expirable, FrameSink {
  readonly role: Role;
  readonly transport: H2Transport;
  /** Our settings: shared by the connections of one options object, never changed. */
  readonly local: Readonly<Settings>;
  readonly remote: Settings = defaultSettings();
  /** Open streams (holds no array while none is). */
  private readonly streams = new StreamTable();
  private readonly handler: ConnectionHandler;
  private readonly opts: ConnectionOptions;
  private readonly decoder: HpackDecoder;
  private readonly encoder: HpackEncoder;
  private readonly floods: FloodGuard;
  /** Every byte read (keepalive: a connection that receives anything is alive). */
  bytesReceived = 0;
  /** Highest stream id the peer opened; our next stream id (client role). */
  lastPeerStreamId = 0;
  nextStreamId: number;
  /** Streams the peer opened that are not closed (counted against max_concurrent_streams). */
  peerStreams = 0;
  /** Connection send window (the peer's) and what we still grant. */
  sendWindow = DEFAULT_WINDOW;
  private recvWindow = DEFAULT_WINDOW;
  private recvUnacked = 0;
  // The lists below are made when first needed: an idle connection holds none of them.
  /** Streams with output waiting for connection window, in order. */
  private waiting: Http2Stream[] | null = null;
  /** Cuts the bytes read into frames (FrameReader calls onFrame, onBadPreface, onOversizeFrame). */
  private readonly reader: FrameReader;
  private gotSettings = false;
  private settingsAcked = false;
  /** Header block in progress (HEADERS without END_HEADERS, then CONTINUATION). */
  private blockStream = NONE;
  private blockParts: Buffer[] | null = null;
  private blockBytes = 0;
  private blockFlags = 0;
  /** Streams we reset and ids the peer skipped, remembered past the stream table (made on first use). */
  private closedIds: ClosedStreamIds | null = null;
  /** Our SETTINGS waiting for ACK, and when the ACK is due (0 = none). */
  private settingsPending = 0;
  private settingsDeadline = 0;
  /** When the next stream's zero-window stall is due for a check (0 = none stalled). */
  private stallCheckAt = 0;
  /** The sweeper deadline: the earlier of the two above (all three in whole ms: see deadlineIn). */
  deadline = 0;
  sweepSlot = -1;
  /** GOAWAY state: sent (with the last id we will process) and received. */
  goawaySent = false;
  private goawayLastId = MAX_STREAM_ID;
  goawayReceived = false;
  closed = false;
  private failure: ConnectionFailure | null = null;
  /** We sent a GOAWAY with an error: nothing more is written. */
  private failing = false;
  /** Streams that need a WINDOW_UPDATE at the next flush. */
  private creditStreams: Http2Stream[] | null = null;
  /** Bytes framed but not yet accepted by the kernel: producers wait while this is large. */
  congested = false;
  private needWritable: Http2Stream[] | null = null;
  private drainStep = 0;
  private drainTimer: NodeJS.Timeout | null = null;

  constructor(socket: Socket, role: Role, handler: ConnectionHandler, opts: ConnectionOptions) {
    this.role = role;
    this.handler = handler;
    this.opts = opts;
    this.nextStreamId = role === 'client' ? 1 : 2;
    this.reader = new FrameReader(this, role === 'server');
    this.local = sharedOf(opts).local;
    // The peer may encode with the default 4096 until it has seen our SETTINGS: a smaller table is
    // only enforced once they are acknowledged (RFC 7541 §4.2).
    // Upstream connections (client role) remember short literals: a backend repeats them per response.
    this.decoder = new HpackDecoder(Math.max(4096, opts.headerTableSize), opts.maxHeaderListSize, role === 'client');
    this.encoder = new HpackEncoder();
    this.floods = new FloodGuard(opts.floods);
    this.transport = new H2Transport(socket, this);
  }

  /** Starts the connection: our preface (client) and SETTINGS, then reads (`initial`: bytes already read). */
  start(initial: Buffer | null): void {
    if (this.role === 'client') this.transport.bytes(PREFACE, 0, PREFACE.length, true);
    this.frame(SETTINGS, 0, 0, settingsPayload(sharedOf(this.opts), this.role));
    this.settingsPending++;
    this.settingsDeadline = deadlineIn(this.opts.settingsTimeoutMs);
    this.deadline = this.settingsDeadline;
    sweeper.add(this);
    const grow = this.opts.connectionWindowSize - DEFAULT_WINDOW;
    if (grow > 0) {
      this.recvWindow += grow;
      this.windowUpdate(0, grow);
    }
    this.transport.schedule();
    if (initial !== null && initial.length > 0) this.onBytes(initial, 0, initial.length);
    if (!this.closed) this.transport.startReading();
  }

  /** The sweeper: a SETTINGS ACK that did not come in time, or streams stalled on a zero window. */
  expire(now: number): void {
    if (this.settingsDeadline !== 0 && now >= this.settingsDeadline) {
      this.fail(SETTINGS_TIMEOUT, 'h2_settings_timeout', 'no SETTINGS ACK in time');
      return;
    }
    if (this.stallCheckAt !== 0 && now >= this.stallCheckAt) {
      this.stallCheckAt = 0;
      const limit = this.opts.stallTimeoutMs;
      for (const s of this.streams.values()) {
        if (s.stalledSince === 0) continue;
        if (now - s.stalledSince >= limit) {
          this.handler.onStall?.(s);
          this.resetStream(s, CANCEL);
        } else {
          const at = s.stalledSince + limit;
          if (this.stallCheckAt === 0 || at < this.stallCheckAt) this.stallCheckAt = Math.ceil(at);
        }
      }
    }
    this.rearm();
  }

  private rearm(): void {
    const a = this.settingsDeadline;
    const b = this.stallCheckAt;
    this.deadline = a === 0 ? b : b === 0 ? a : Math.min(a, b);
  }

  /** `s` has output the windows hold back: start (or keep) its stall clock. */
  private stalled(s: Http2Stream): void {
    if (s.stalledSince !== 0) return;
    const now = performance.now();
    s.stalledSince = now;
    if (this.stallCheckAt === 0) {
      this.stallCheckAt = Math.ceil(now + this.opts.stallTimeoutMs);
      this.rearm();
    }
  }

  get openStreams(): number {
    return this.streams.size;
  }

  private openStream(s: Http2Stream): void {
    this.streams.add(s);
  }

  // ------------------------------------------------------------------------------------------
  // Reading

  /** Bytes from the transport: `buf[start, end)`, possibly lent (valid only during the call). */
  onBytes(buf: Buffer, start: number, end: number): void {
    if (this.closed) return;
    this.bytesReceived += end - start;
    this.reader.push(buf, start, end);
  }

  onBadPreface(): void {
    this.fail(PROTOCOL_ERROR, 'h2_bad_preface', 'invalid connection preface');
  }

  onOversizeFrame(length: number): void {
    this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', `frame of ${length} bytes`);
  }

  /** One complete frame: `b[start, end)`, header included. */
  onFrame(b: Buffer, start: number, end: number): void {
    const type = b[start + 3]!;
    const flags = b[start + 4]!;
    const id = readU32(b, start + 5) & 0x7fffffff;
    const p = start + FRAME_HEADER;
    if (!this.gotSettings) {
      if (type !== SETTINGS || (flags & FLAG_ACK) !== 0) {
        this.fail(PROTOCOL_ERROR, 'h2_bad_preface', 'the first frame is not SETTINGS');
        return;
      }
    }
    if (this.blockStream !== NONE && (type !== CONTINUATION || id !== this.blockStream)) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'a header block was interrupted');
      return;
    }
    switch (type) {
      case DATA:
        this.onData(b, p, end, flags, id);
        return;
      case HEADERS:
        this.onHeaders(b, p, end, flags, id);
        return;
      case PRIORITY:
        this.onPriority(b, p, end, id);
        return;
      case RST_STREAM:
        this.onRstStream(b, p, end, id);
        return;
      case SETTINGS:
        this.onSettings(b, p, end, flags, id);
        return;
      case PUSH_PROMISE:
        // Servers never receive it; as a client we advertise ENABLE_PUSH 0 (§8.4).
        this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'PUSH_PROMISE received');
        return;
      case PING:
        this.onPing(b, p, end, flags, id);
        return;
      case GOAWAY:
        this.onGoawayFrame(b, p, end, id);
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(b, p, end, id);
        return;
      case CONTINUATION:
        this.onContinuation(b, p, end, flags, id);
        return;
      default:
        // Unknown frame types are ignored (§4.1, §5.5).
        return;
    }
  }

  /** Whether `id` names a stream that was never opened ("idle", §5.1). */
  private isIdle(id: number): boolean {
    if ((id & 1) === (this.role === 'server' ? 1 : 0)) return id > this.lastPeerStreamId;
    return id >= this.nextStreamId;
  }

  /** A stream the peer opened after our GOAWAY's last id: its frames are ignored, not errors (§6.8). */
  private ignoredAfterGoaway(id: number): boolean {
    return this.goawaySent && id > this.goawayLastId && (id & 1) === (this.role === 'server' ? 1 : 0);
  }

  /**
   * Frames on a closed stream are ignored when we reset it (they were in flight, §5.1) and, as a
   * client, always: an upstream that is late is not an attack, and killing the connection would
   * fail every other request on it. A server is strict (§5.1: STREAM_CLOSED).
   */
  private lenientClosed(id: number): boolean {
    return this.role === 'client' || (this.closedIds?.wasReset(id) ?? false);
  }

  /** Strips padding (§6.1, §6.2): the payload start, or -1 after a connection error. */
  private unpad(b: Buffer, p: number, end: number, flags: number): number {
    if ((flags & FLAG_PADDED) === 0) return p;
    if (p >= end) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'padded frame without a pad length');
      return -1;
    }
    const pad = b[p]!;
    if (pad >= end - p) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'padding longer than the payload');
      return -1;
    }
    return p + 1;
  }

  private onData(b: Buffer, p: number, end: number, flags: number, id: number): void {
    if (id === 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'DATA on stream 0');
      return;
    }
    const length = end - p;
    // Flow control counts the whole payload, padding included (§6.9.1).
    if (length > this.recvWindow) {
      this.fail(FLOW_CONTROL_ERROR, 'h2_flow_control', 'DATA beyond the connection window');
      return;
    }
    this.recvWindow -= length;
    // The connection window is credited as DATA arrives: what a paused stream holds is bounded by
    // that stream's own window, and one slow stream must not stall the others.
    this.creditConnection(length);
    const q = this.unpad(b, p, end, flags);
    if (q < 0) return;
    const dataEnd = (flags & FLAG_PADDED) !== 0 ? end - b[p]! : end;
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (dataEnd === q && !endStream && this.floods.hit(FLOOD_EMPTY)) {
      this.flood(FLOOD_EMPTY);
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined || s.remoteClosed) {
      if (this.isIdle(id)) {
        if (!this.ignoredAfterGoaway(id)) this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'DATA on an idle stream');
      } else if (s !== undefined) this.streamError(s, STREAM_CLOSED);
      else if (!this.lenientClosed(id)) this.fail(STREAM_CLOSED, 'h2_stream_closed', 'DATA on a closed stream');
      return;
    }
    if (!s.headersReceived && this.role === 'client') {
      this.streamError(s, PROTOCOL_ERROR);
      return;
    }
    if (length > s.recvWindow) {
      this.streamError(s, FLOW_CONTROL_ERROR);
      return;
    }
    s.recvWindow -= length;
    const n = dataEnd - q;
    // Padding is credited at once; the data when the owner has taken it.
    if (length > n) this.creditStream(s, length - n);
    if (s.expectedLength >= 0) {
      s.receivedLength += n;
      if (s.receivedLength > s.expectedLength || (endStream && s.receivedLength !== s.expectedLength)) {
        this.streamError(s, PROTOCOL_ERROR, 'h2_content_length_mismatch');
        return;
      }
    }
    if (endStream) s.remoteClosed = true;
    if (s.paused || s.held !== null) {
      if (n > 0) (s.held ??= []).push(Buffer.from(b.subarray(q, dataEnd)));
      if (endStream) s.heldEnd = true;
      return;
    }
    if (n > 0) {
      this.creditStream(s, n);
      s.sink?.onData(b, q, dataEnd);
    }
    if (endStream && !s.closed) this.peerEnded(s);
  }

  /** Hands held DATA to a stream's owner after it resumed. */
  releaseHeld(s: Http2Stream): void {
    while (!s.paused && s.held !== null) {
      const chunk = s.held.shift();
      if (chunk === undefined) {
        s.held = null;
        break;
      }
      if (s.held.length === 0) s.held = null;
      this.creditStream(s, chunk.length);
      s.sink?.onData(chunk, 0, chunk.length);
      if (s.closed) return;
    }
    if (!s.paused && s.held === null && s.heldEnd) {
      s.heldEnd = false;
      this.peerEnded(s);
    }
    this.transport.schedule();
  }

  private peerEnded(s: Http2Stream): void {
    // Closed first when both sides are done: the owner, told of the end, releases the stream, and a
    // stream it finds still open it cuts with RST_STREAM (an upstream leg did so after every response).
    if (s.localClosed) this.closeStream(s);
    s.sink?.onEnd();
  }

  private onHeaders(b: Buffer, p: number, end: number, flags: number, id: number): void {
    if (id === 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'HEADERS on stream 0');
      return;
    }
    let q = this.unpad(b, p, end, flags);
    if (q < 0) return;
    const blockEnd = (flags & FLAG_PADDED) !== 0 ? end - b[p]! : end;
    if ((flags & FLAG_PRIORITY) !== 0) {
      if (blockEnd - q < 5) {
        this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'HEADERS too short for its priority');
        return;
      }
      const dep = readU32(b, q) & 0x7fffffff;
      q += 5;
      if (dep === id) {
        // A stream that depends on itself (§5.3.1): a stream error, but the block still feeds HPACK.
        this.blockSelfDependent = true;
      }
    }
    if (blockEnd === q && (flags & FLAG_END_HEADERS) === 0 && this.floods.hit(FLOOD_EMPTY)) {
      this.flood(FLOOD_EMPTY);
      return;
    }
    this.blockFlags = flags;
    if ((flags & FLAG_END_HEADERS) !== 0) {
      if (blockEnd - q > this.opts.maxHeaderBlockBytes) {
        this.fail(
          ENHANCE_YOUR_CALM,
          'h2_header_block_too_large',
          `header block over ${this.opts.maxHeaderBlockBytes} bytes`,
        );
        return;
      }
      this.headerBlock(id, b, q, blockEnd);
      return;
    }
    this.blockStream = id;
    this.blockBytes = 0;
    this.addFragment(b, q, blockEnd);
  }
  private blockSelfDependent = false;

  private onContinuation(b: Buffer, p: number, end: number, flags: number, id: number): void {
    if (this.blockStream === NONE || id !== this.blockStream) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'CONTINUATION without a header block');
      return;
    }
    if (p === end && (flags & FLAG_END_HEADERS) === 0 && this.floods.hit(FLOOD_EMPTY)) {
      this.flood(FLOOD_EMPTY);
      return;
    }
    if (!this.addFragment(b, p, end)) return;
    if ((flags & FLAG_END_HEADERS) === 0) return;
    const parts = this.blockParts!;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.blockParts = null;
    this.blockStream = NONE;
    this.headerBlock(id, block, 0, block.length);
  }

  private addFragment(b: Buffer, p: number, end: number): boolean {
    this.blockBytes += end - p;
    // CONTINUATION flood (CVE-2024-27316): the block is bounded before it is decoded.
    if (this.blockBytes > this.opts.maxHeaderBlockBytes) {
      this.fail(
        ENHANCE_YOUR_CALM,
        'h2_header_block_too_large',
        `header block over ${this.opts.maxHeaderBlockBytes} bytes`,
      );
      return false;
    }
    (this.blockParts ??= []).push(Buffer.from(b.subarray(p, end)));
    return true;
  }

  /** A complete header block for stream `id` (flags from its HEADERS frame). */
  private headerBlock(id: number, b: Buffer, start: number, end: number): void {
    const flags = this.blockFlags;
    const selfDependent = this.blockSelfDependent;
    this.blockSelfDependent = false;
    // A new list per block, or (upstream) the list of an equal block decoded before: read-only either way.
    const decoded = this.decoder.decodeList(b, start, end);
    if (decoded === 'compression') {
      this.fail(COMPRESSION_ERROR, 'h2_compression_error', 'HPACK decoding failed');
      return;
    }
    const fields = decoded === 'too_large' ? null : decoded;
    const clean = this.decoder.clean;
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s !== undefined) {
      s.fieldsClean = clean;
      this.moreHeaders(s, fields, endStream, selfDependent);
      return;
    }
    if (this.role === 'client' || (id & 1) === 0) {
      // A client's own stream that is gone: its answer arriving after we reset it is normal.
      if (!this.isIdle(id) && (id & 1) === 1) {
        if (!this.lenientClosed(id)) this.fail(STREAM_CLOSED, 'h2_stream_closed', 'HEADERS on a closed stream');
        return;
      }
      // Servers do not open streams towards clients (no push); a client never sees new peer streams.
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', `HEADERS opening stream ${id}`);
      return;
    }
    if (id <= this.lastPeerStreamId) {
      // A lower id the peer skipped was never opened: an unexpected id (§5.1.1). One it used is closed.
      if (this.closedIds?.wasSkipped(id))
        this.fail(PROTOCOL_ERROR, 'h2_protocol_error', `stream id ${id} after a higher one`);
      else if (!this.closedIds?.wasReset(id))
        this.fail(STREAM_CLOSED, 'h2_stream_closed', 'HEADERS on a closed stream');
      return;
    }
    // After our GOAWAY, a new stream above its last id is ignored (§6.8), and the last id stays put.
    if (this.goawaySent && id > this.goawayLastId) return;
    if (id > this.lastPeerStreamId + 2)
      (this.closedIds ??= new ClosedStreamIds()).rememberSkip(this.lastPeerStreamId + 2, id - 2);
    this.lastPeerStreamId = id;
    // A stream we reset while idle (a PRIORITY that made it depend on itself) is closed: ignored.
    if (this.closedIds?.wasReset(id)) return;
    if (selfDependent) {
      this.resetUnopened(id, PROTOCOL_ERROR);
      return;
    }
    if (this.peerStreams >= this.local.maxConcurrentStreams) {
      this.resetUnopened(id, REFUSED_STREAM);
      if (this.floods.hit(FLOOD_RESET)) this.flood(FLOOD_RESET);
      return;
    }
    const stream = new Http2Stream(this, id, this.remote.initialWindowSize, this.local.initialWindowSize);
    stream.headersReceived = true;
    stream.fieldsClean = clean;
    this.openStream(stream);
    this.peerStreams++;
    if (fields !== null) stream.expectedLength = contentLength(fields);
    if (endStream) {
      stream.remoteClosed = true;
      // A request that ends with its head but announces a body is malformed (§8.1.1): never forwarded.
      if (stream.expectedLength > 0) {
        this.streamError(stream, PROTOCOL_ERROR, 'h2_content_length_mismatch');
        return;
      }
    }
    this.handler.onStream(stream, fields, endStream);
  }

  /** A header block on a stream that exists: trailers, or (client role) the response head. */
  private moreHeaders(
    s: Http2Stream,
    fields: readonly string[] | null,
    endStream: boolean,
    selfDependent: boolean,
  ): void {
    if (selfDependent) {
      this.streamError(s, PROTOCOL_ERROR);
      return;
    }
    if (s.remoteClosed) {
      this.streamError(s, STREAM_CLOSED);
      return;
    }
    if (fields === null) {
      this.streamError(s, PROTOCOL_ERROR, 'h2_header_list_too_large');
      return;
    }
    const head = this.role === 'client' && !s.headersReceived;
    if (!head) {
      // Trailers (§8.1): they end the stream and carry no pseudo-fields.
      if (!endStream || hasPseudo(fields)) {
        this.streamError(s, PROTOCOL_ERROR, 'h2_malformed_trailers');
        return;
      }
      if (s.expectedLength >= 0 && s.receivedLength !== s.expectedLength) {
        this.streamError(s, PROTOCOL_ERROR, 'h2_content_length_mismatch');
        return;
      }
    } else if (!isInterim(fields)) {
      s.headersReceived = true;
      // HEAD, 204 and 304 announce a length they do not send (RFC 9110 §8.6).
      s.expectedLength = s.noResponseBody || noBodyStatus(fields) ? -1 : contentLength(fields);
      if (endStream && s.expectedLength > 0) {
        this.streamError(s, PROTOCOL_ERROR, 'h2_content_length_mismatch');
        return;
      }
    } else if (endStream) {
      this.streamError(s, PROTOCOL_ERROR, 'h2_malformed_response');
      return;
    }
    if (endStream) s.remoteClosed = true;
    // Done both ways: closed before the owner hears of it (see peerEnded).
    if (endStream && s.held === null && s.localClosed) this.closeStream(s);
    s.sink?.onHeaders(fields, endStream);
  }

  private onPriority(b: Buffer, p: number, end: number, id: number): void {
    if (id === 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'PRIORITY on stream 0');
      return;
    }
    if (this.floods.hit(FLOOD_PRIORITY)) {
      this.flood(FLOOD_PRIORITY);
      return;
    }
    if (end - p !== 5) {
      this.resetAny(id, FRAME_SIZE_ERROR);
      return;
    }
    // Validated, otherwise ignored (RFC 9113 §5.3.2): priorities are not used to schedule.
    if ((readU32(b, p) & 0x7fffffff) === id) this.resetAny(id, PROTOCOL_ERROR);
  }

  private onRstStream(b: Buffer, p: number, end: number, id: number): void {
    if (end - p !== 4) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'RST_STREAM of the wrong size');
      return;
    }
    if (id === 0 || (this.isIdle(id) && !this.ignoredAfterGoaway(id))) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'RST_STREAM on an idle stream');
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) return;
    const code = readU32(b, p);
    const unfinished = !s.localClosed;
    s.resetCode = code;
    this.closeStream(s);
    s.sink?.onReset(code, false);
    // A stream reset before its answer was complete costs us a request and the peer nothing.
    if (unfinished && this.role === 'server' && this.floods.hit(FLOOD_RESET)) this.flood(FLOOD_RESET);
  }

  private onSettings(b: Buffer, p: number, end: number, flags: number, id: number): void {
    if (id !== 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'SETTINGS on a stream');
      return;
    }
    if ((flags & FLAG_ACK) !== 0) {
      if (end !== p) {
        this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'SETTINGS ACK with a payload');
        return;
      }
      if (this.settingsPending > 0 && --this.settingsPending === 0) {
        this.settingsDeadline = 0;
        this.rearm();
      }
      if (!this.settingsAcked) {
        this.settingsAcked = true;
        if (this.opts.headerTableSize < 4096) this.decoder.setMaxTableSize(this.opts.headerTableSize);
      }
      return;
    }
    if ((end - p) % 6 !== 0) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'SETTINGS length not a multiple of 6');
      return;
    }
    if (this.gotSettings && this.floods.hit(FLOOD_SETTINGS)) {
      this.flood(FLOOD_SETTINGS);
      return;
    }
    this.gotSettings = true;
    const r = this.remote;
    const oldWindow = r.initialWindowSize;
    const oldTable = r.headerTableSize;
    const err = applySettings(r, b, p, end);
    if (err !== 0) {
      this.fail(err, 'h2_bad_settings', 'invalid SETTINGS value');
      return;
    }
    if (r.headerTableSize !== oldTable) this.encoder.setMaxTableSize(r.headerTableSize);
    const delta = r.initialWindowSize - oldWindow;
    if (delta !== 0) {
      for (const s of this.streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > MAX_WINDOW) {
          this.fail(FLOW_CONTROL_ERROR, 'h2_flow_control', 'a stream window over 2^31-1');
          return;
        }
      }
    }
    this.frame(SETTINGS, FLAG_ACK, 0, EMPTY);
    if (delta > 0) {
      // Every stream's window grew (§6.9.2): what waited on its own window may go now.
      for (const s of this.streams.values()) {
        if ((s.queue !== null || s.endQueued) && s.sendWindow > 0 && !s.closed) this.flushStream(s);
      }
      this.sendWaiting();
    }
    this.transport.schedule();
    this.handler.onSettings?.();
  }

  private onPing(b: Buffer, p: number, end: number, flags: number, id: number): void {
    if (id !== 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'PING on a stream');
      return;
    }
    if (end - p !== 8) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'PING of the wrong size');
      return;
    }
    if ((flags & FLAG_ACK) !== 0) {
      const payload = b.subarray(p, end);
      if (this.drainStep === 1) this.finishGoaway();
      this.handler.onPingAck?.(payload);
      return;
    }
    if (this.floods.hit(FLOOD_PING)) {
      this.flood(FLOOD_PING);
      return;
    }
    this.frame(PING, FLAG_ACK, 0, Buffer.from(b.subarray(p, end)));
    this.transport.schedule();
  }

  private onGoawayFrame(b: Buffer, p: number, end: number, id: number): void {
    if (id !== 0) {
      this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'GOAWAY on a stream');
      return;
    }
    if (end - p < 8) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'GOAWAY too short');
      return;
    }
    const last = readU32(b, p) & 0x7fffffff;
    const code = readU32(b, p + 4);
    this.goawayReceived = true;
    if (code !== NO_ERROR && this.failure === null) {
      this.failure = {
        h2code: code,
        code: 'h2_peer_goaway',
        detail: b.toString('latin1', p + 8, Math.min(end, p + 8 + 256)),
        local: false,
      };
    }
    // Our streams above `last` were never processed: refused, so their owners may retry them.
    for (const s of this.streams.values()) {
      if (s.id > last && (s.id & 1) === (this.role === 'client' ? 1 : 0)) {
        s.resetCode = REFUSED_STREAM;
        this.closeStream(s);
        s.sink?.onReset(REFUSED_STREAM, false);
      }
    }
    this.handler.onGoaway(last, code);
    this.closeIfDone();
  }

  private onWindowUpdate(b: Buffer, p: number, end: number, id: number): void {
    if (end - p !== 4) {
      this.fail(FRAME_SIZE_ERROR, 'h2_frame_size', 'WINDOW_UPDATE of the wrong size');
      return;
    }
    if (this.floods.hit(FLOOD_WINDOW_UPDATE)) {
      this.flood(FLOOD_WINDOW_UPDATE);
      return;
    }
    const inc = readU32(b, p) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) {
        this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'WINDOW_UPDATE of 0');
        return;
      }
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) {
        this.fail(FLOW_CONTROL_ERROR, 'h2_flow_control', 'connection window over 2^31-1');
        return;
      }
      this.sendWaiting();
      return;
    }
    if (this.isIdle(id)) {
      if (!this.ignoredAfterGoaway(id))
        this.fail(PROTOCOL_ERROR, 'h2_protocol_error', 'WINDOW_UPDATE on an idle stream');
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) return;
    if (inc === 0) {
      this.streamError(s, PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      this.streamError(s, FLOW_CONTROL_ERROR);
      return;
    }
    if (s.queue !== null || s.endQueued) this.flushStream(s);
  }

  // ------------------------------------------------------------------------------------------
  // Writing

  /** Appends one frame to the output (flushed once per turn). `payload` is copied when lent. */
  private frame(type: number, flags: number, id: number, payload: Buffer, start = 0, end = payload.length): void {
    const t = this.transport;
    t.header(end - start, type, flags, id);
    t.bytes(payload, start, end, !isLent(payload));
  }

  /** A frame with a 4-byte payload (WINDOW_UPDATE, RST_STREAM). */
  private frameU32(type: number, id: number, v: number): void {
    writeU32(U32, 0, v);
    this.transport.header(4, type, 0, id);
    this.transport.bytes(U32, 0, 4, false);
  }

  private windowUpdate(id: number, inc: number): void {
    this.frameU32(WINDOW_UPDATE, id, inc);
  }

  /** Received bytes were taken by their owner: credit the connection window (batched to half of it). */
  private creditConnection(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= this.opts.connectionWindowSize / 2) this.transport.schedule();
  }

  private creditStream(s: Http2Stream, n: number): void {
    if (s.remoteClosed) return;
    if (s.recvUnacked === 0) (this.creditStreams ??= []).push(s);
    s.recvUnacked += n;
    if (s.recvUnacked >= this.local.initialWindowSize / 2) this.transport.schedule();
  }

  /** Called by the transport just before it writes: WINDOW_UPDATEs owed, batched. */
  beforeFlush(): void {
    // After a connection error nothing follows the GOAWAY.
    if (this.failing) return;
    if (this.recvUnacked >= this.opts.connectionWindowSize / 2) {
      this.windowUpdate(0, this.recvUnacked);
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
    const list = this.creditStreams;
    if (list === null || list.length === 0) return;
    const half = this.local.initialWindowSize / 2;
    let keep = 0;
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      if (s.closed || s.remoteClosed || s.recvUnacked === 0) {
        s.recvUnacked = 0;
        continue;
      }
      if (s.recvUnacked >= half) {
        this.windowUpdate(s.id, s.recvUnacked);
        s.recvWindow += s.recvUnacked;
        s.recvUnacked = 0;
        continue;
      }
      list[keep++] = s;
    }
    list.length = keep;
  }

  /** Sends a head (HEADERS + CONTINUATION as the peer's frame size requires). */
  sendHeaders(s: Http2Stream, fields: readonly string[], endStream: boolean): void {
    // One head per stream (trailers go with `end`): a second would put HEADERS after queued DATA.
    if (s.closed || s.localClosed || s.headersSent || this.closed) return;
    this.sendBlock(s.id, fields, endStream ? FLAG_END_STREAM : 0);
    s.headersSent = true;
    if (endStream) this.localEnded(s);
    this.transport.schedule();
  }

  /** An interim (1xx) head: never ends the stream. */
  sendInterim(s: Http2Stream, fields: readonly string[]): void {
    if (s.closed || s.localClosed || this.closed) return;
    this.sendBlock(s.id, fields, 0);
    this.transport.schedule();
  }

  /**
   * A head as HEADERS (+ CONTINUATION). Encoded straight into the transport's output when it surely
   * fits one frame (nearly always): no block buffer per head, and no copy of it.
   */
  private sendBlock(id: number, fields: readonly string[], flags: number): void {
    if (this.transport.headers(id, flags | FLAG_END_HEADERS, fields, this.encoder, this.remote.maxFrameSize)) return;
    this.headerFrames(id, this.encodeBlock(fields), flags);
  }

  private encodeBlock(fields: readonly string[]): Buffer {
    let size = 256;
    for (let i = 0; i < fields.length; i++) size += fields[i]!.length + 8;
    const out = Buffer.allocUnsafe(size);
    const n = this.encoder.encodeInto(fields, out, 0);
    if (n >= 0) return out.subarray(0, n);
    return this.encoder.encode(fields);
  }

  private headerFrames(id: number, block: Buffer, flags: number): void {
    const max = this.remote.maxFrameSize;
    if (block.length <= max) {
      this.frame(HEADERS, flags | FLAG_END_HEADERS, id, block);
      return;
    }
    this.frame(HEADERS, flags, id, block, 0, max);
    let off = max;
    while (off < block.length) {
      const next = Math.min(off + max, block.length);
      this.frame(CONTINUATION, next === block.length ? FLAG_END_HEADERS : 0, id, block, off, next);
      off = next;
    }
  }

  /** Body bytes for `s`; what the windows do not allow now waits (copied). False: producer should wait. */
  sendData(s: Http2Stream, buf: Buffer, start: number, end: number): boolean {
    if (s.closed || s.localClosed || s.endQueued || this.closed) return true;
    if (!s.headersSent) {
      // A body before its head would be DATA before HEADERS (§8.1): an owner's bug, never on the wire.
      this.resetStream(s, INTERNAL_ERROR);
      return true;
    }
    if (start === end) return true;
    if (s.queue === null) {
      const n = Math.min(end - start, s.sendWindow, this.sendWindow);
      if (n > 0) {
        this.dataFrames(s, buf, start, start + n, false);
        start += n;
      }
      this.transport.schedule();
      if (start === end) {
        if (this.congested) {
          this.waitWritable(s);
          return false;
        }
        return true;
      }
    }
    const rest = Buffer.from(buf.subarray(start, end));
    (s.queue ??= []).push(rest);
    s.queuedBytes += rest.length;
    this.waitForWindow(s);
    this.stalled(s);
    if (s.queuedBytes > STREAM_HIGH_WATER || this.congested) {
      this.waitWritable(s);
      return false;
    }
    return true;
  }

  private waitWritable(s: Http2Stream): void {
    if (s.needWritable) return;
    s.needWritable = true;
    (this.needWritable ??= []).push(s);
  }

  private waitForWindow(s: Http2Stream): void {
    if (s.sendWindow > 0 && !s.waitingForWindow) {
      s.waitingForWindow = true;
      (this.waiting ??= []).push(s);
    }
  }

  /** DATA frames of at most the peer's frame size; windows already checked by the caller. */
  private dataFrames(s: Http2Stream, buf: Buffer, start: number, end: number, endStream: boolean): void {
    const max = this.remote.maxFrameSize;
    const n = end - start;
    s.sendWindow -= n;
    this.sendWindow -= n;
    const lent = isLent(buf);
    while (start < end || endStream) {
      const next = Math.min(start + max, end);
      const flags = endStream && next === end ? FLAG_END_STREAM : 0;
      this.transport.header(next - start, DATA, flags, s.id);
      this.transport.bytes(buf, start, next, !lent);
      this.floods.allow(FLOOD_WINDOW_UPDATE, 2);
      start = next;
      if (flags !== 0) break;
    }
  }

  /** Sends what a stream has queued, as far as both windows allow; then END_STREAM / trailers. */
  private flushStream(s: Http2Stream): void {
    const q = s.queue;
    const before = s.queuedBytes;
    while (q !== null && q.length > 0) {
      const avail = Math.min(s.sendWindow, this.sendWindow);
      if (avail <= 0) break;
      const chunk = q[0]!;
      if (chunk.length <= avail) {
        q.shift();
        s.queuedBytes -= chunk.length;
        this.dataFrames(s, chunk, 0, chunk.length, false);
      } else {
        this.dataFrames(s, chunk, 0, avail, false);
        q[0] = chunk.subarray(avail);
        s.queuedBytes -= avail;
      }
    }
    if (q !== null && q.length === 0) s.queue = null;
    // Progress restarts the stall clock; an empty queue stops it.
    if (s.queue === null) s.stalledSince = 0;
    else if (s.queuedBytes < before) {
      s.stalledSince = 0;
      this.stalled(s);
    }
    if (s.queue === null && s.endQueued) {
      s.endQueued = false;
      this.finishStream(s, s.trailersQueued);
      s.trailersQueued = null;
      // The owner may be waiting for its END_STREAM to leave (a Duplex's final callback).
      s.sink?.onWritable();
    } else if (s.queue !== null && this.sendWindow <= 0 && s.sendWindow > 0) this.waitForWindow(s);
    this.transport.schedule();
    if (s.needWritable && s.queuedBytes <= STREAM_HIGH_WATER / 2 && !this.congested) {
      s.needWritable = false;
      s.sink?.onWritable();
    }
  }

  /** The connection window opened: streams waiting for it send, oldest first. */
  private sendWaiting(): void {
    const list = this.waiting;
    if (list === null) return;
    this.waiting = null;
    for (const s of list) {
      s.waitingForWindow = false;
      if (!s.closed && (s.queue !== null || s.endQueued)) this.flushStream(s);
    }
    // Streams only waiting on their own window were dropped from the list; a WINDOW_UPDATE on the
    // stream brings them back.
  }

  endStream(s: Http2Stream, trailers: readonly string[] | null, stopPeer: boolean): void {
    if (s.closed || s.localClosed || s.endQueued || this.closed) return;
    s.stopPeerAfterEnd = stopPeer;
    if (s.queue !== null) {
      s.endQueued = true;
      s.trailersQueued = trailers === null ? null : [...trailers];
      return;
    }
    this.finishStream(s, trailers);
    this.transport.schedule();
  }

  private finishStream(s: Http2Stream, trailers: readonly string[] | null): void {
    if (!s.headersSent) return;
    if (trailers !== null && trailers.length > 0) this.sendBlock(s.id, trailers, FLAG_END_STREAM);
    else if (!this.transport.endLastData(s.id)) this.dataFrames(s, EMPTY, 0, 0, true);
    this.localEnded(s);
  }

  private localEnded(s: Http2Stream): void {
    s.localClosed = true;
    if (s.remoteClosed && s.held === null) this.closeStream(s);
    else if (s.stopPeerAfterEnd) {
      // The answer is complete while the request is still coming: stop it (§8.1).
      this.resetStream(s, NO_ERROR);
    }
  }

  /** Ends a stream with RST_STREAM `code`; its owner hears `onReset(code, true)`. */
  resetStream(s: Http2Stream, code: number): void {
    if (s.closed) return;
    this.sendRst(s.id, code);
    (this.closedIds ??= new ClosedStreamIds()).rememberReset(s.id);
    s.resetCode = code;
    this.closeStream(s);
    s.sink?.onReset(code, true);
  }

  /** RST_STREAM `code` even when our answer already closed the stream (a malformed request, §8.1.1). */
  resetAfterAnswer(s: Http2Stream, code: number): void {
    if (!s.closed) {
      this.resetStream(s, code);
      return;
    }
    if (!this.closedIds?.wasReset(s.id)) this.resetUnopened(s.id, code);
  }

  /** A stream error found by the engine (§5.4.2). */
  private streamError(s: Http2Stream, code: number, why?: string): void {
    if (why !== undefined) this.handler.onStreamError?.(s, why);
    this.resetStream(s, code);
  }

  private resetUnopened(id: number, code: number): void {
    this.sendRst(id, code);
    (this.closedIds ??= new ClosedStreamIds()).rememberReset(id);
    this.transport.schedule();
  }

  private resetAny(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) this.streamError(s, code);
    else this.resetUnopened(id, code);
  }

  private sendRst(id: number, code: number): void {
    if (this.closed) return;
    this.frameU32(RST_STREAM, id, code);
    this.transport.schedule();
  }

  private closeStream(s: Http2Stream): void {
    if (s.closed) return;
    s.closed = true;
    s.localClosed = true;
    s.remoteClosed = true;
    s.queue = null;
    s.queuedBytes = 0;
    s.held = null;
    this.streams.delete(s.id);
    if ((s.id & 1) === (this.role === 'server' ? 1 : 0)) this.peerStreams--;
    this.handler.onStreamClosed?.(s);
    this.closeIfDone();
  }

  /** Sends a PING (the payload comes back in `onPingAck`). */
  ping(payload: Buffer): void {
    if (this.closed) return;
    this.frame(PING, 0, 0, payload);
    this.transport.schedule();
  }

  // ------------------------------------------------------------------------------------------
  // Client role

  /** Opens a stream with a request head; null when the connection can take no more streams. */
  request(
    fields: readonly string[],
    endStream: boolean,
    sink: StreamSink | null,
    noResponseBody = false,
  ): Http2Stream | null {
    if (this.closed || this.goawayReceived || this.goawaySent || this.nextStreamId > MAX_STREAM_ID) return null;
    const s = new Http2Stream(this, this.nextStreamId, this.remote.initialWindowSize, this.local.initialWindowSize);
    this.nextStreamId += 2;
    s.sink = sink;
    s.noResponseBody = noResponseBody;
    this.openStream(s);
    this.sendHeaders(s, fields, endStream);
    return s;
  }

  // ------------------------------------------------------------------------------------------
  // Ending

  /**
   * Graceful shutdown (§6.8): GOAWAY with the highest id first, so requests already on the wire are
   * still served, then after a PING round trip (or a second) GOAWAY with the real last stream id.
   * The connection closes when its streams are done.
   */
  shutdown(): void {
    if (this.closed || this.drainStep !== 0) return;
    if (this.role === 'client') {
      this.drainStep = 2;
      this.goaway(NO_ERROR, this.lastPeerStreamId, '');
      this.closeIfDone();
      return;
    }
    this.drainStep = 1;
    this.goaway(NO_ERROR, MAX_STREAM_ID, '');
    this.ping(Buffer.from('muxgdrai', 'latin1'));
    this.drainTimer = setTimeout(() => this.finishGoaway(), 1000);
    this.drainTimer.unref();
  }

  private finishGoaway(): void {
    if (this.drainStep !== 1 || this.closed) return;
    this.drainStep = 2;
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.goaway(NO_ERROR, this.lastPeerStreamId, '');
    this.closeIfDone();
  }

  private goaway(code: number, lastId: number, debug: string): void {
    this.goawaySent = true;
    this.goawayLastId = lastId;
    const d = Buffer.from(debug, 'latin1');
    const f = Buffer.allocUnsafe(8 + d.length);
    writeU32(f, 0, lastId);
    writeU32(f, 4, code);
    d.copy(f, 8);
    this.frame(GOAWAY, 0, 0, f);
    this.transport.schedule();
  }

  private closeIfDone(): void {
    if (this.closed || this.streams.size > 0) return;
    if (this.drainStep === 2 || (this.goawayReceived && this.role === 'client')) this.transport.end();
  }

  /** A connection error (§5.4.1): GOAWAY with `h2code`, then close. */
  fail(h2code: number, code: string, detail: string): void {
    if (this.closed) return;
    this.failure ??= { h2code, code, detail, local: true };
    this.failing = true;
    this.goaway(h2code, this.lastPeerStreamId, detail);
    this.transport.end();
    this.teardown(h2code);
  }

  private flood(kind: number): void {
    this.fail(ENHANCE_YOUR_CALM, FLOOD_CODES[kind]!, `${FLOOD_CODES[kind]} over its limit`);
  }

  /** Closes at once (no GOAWAY): shutdown past its deadline, process exit. */
  destroy(): void {
    // Also after a connection error, whose GOAWAY may still be waiting for the peer's FIN.
    this.transport.destroy();
    if (!this.closed) this.teardown(CANCEL);
  }

  /** The socket ended or failed: every stream ends now. */
  onTransportClosed(error: boolean): void {
    if (!this.closed) {
      if (error && this.failure === null) {
        this.failure = { h2code: CANCEL, code: 'h2_transport_error', detail: 'the connection failed', local: false };
      }
      this.teardown(CANCEL);
    }
    if (!this.reported) {
      this.reported = true;
      this.handler.onClose(this.failure);
    }
  }
  private reported = false;

  private teardown(code: number): void {
    this.closed = true;
    this.deadline = 0;
    sweeper.delete(this);
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    const all = this.streams.clear();
    this.peerStreams = 0;
    for (const s of all) {
      s.resetCode = code;
      s.closed = true;
      s.localClosed = true;
      s.remoteClosed = true;
      s.queue = null;
      s.held = null;
      s.sink?.onReset(code, false);
      this.handler.onStreamClosed?.(s);
    }
    this.waiting = null;
    this.creditStreams = null;
    this.needWritable = null;
  }

  /** The transport's output drained: producers told to wait may write again. */
  onDrain(): void {
    this.congested = false;
    const list = this.needWritable;
    if (list === null) return;
    this.needWritable = null;
    for (const s of list) {
      if (s.closed || !s.needWritable) continue;
      if (s.queuedBytes > STREAM_HIGH_WATER / 2) {
        // Still waiting for window: it hears when its queue drains (flushStream), or at the next drain.
        (this.needWritable ??= []).push(s);
        continue;
      }
      s.needWritable = false;
      s.sink?.onWritable();
    }
  }
}
