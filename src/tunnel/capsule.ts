/**
 * The Capsule Protocol (RFC 9297 §3.2) as CONNECT-UDP (RFC 9298) uses it over HTTP/1.1 and HTTP/2,
 * where there are no QUIC datagrams: the tunnel stream's body is a sequence of
 *
 *   Capsule { Type (varint), Length (varint), Value (Length bytes) }
 *
 * and an HTTP Datagram travels as a DATAGRAM capsule (type 0x00) whose value is a Context ID varint
 * followed by the payload. For CONNECT-UDP, context 0 carries whole UDP payloads; other contexts
 * belong to extensions this proxy does not negotiate, so their datagrams are dropped.
 */
import { Buffer } from 'node:buffer';
import { readVarint, VARINT_NEED_MORE, VARINT_UNSAFE, varintLength, varintSizeAt, writeVarint } from './quic-varint.ts';

export const CAPSULE_DATAGRAM = 0x00;

/**
 * The default largest capsule value: a UDP payload is at most 65,535 bytes minus headers, so this
 * leaves room for the context id (and a little slack) without accepting anything bigger.
 */
export const DEFAULT_MAX_CAPSULE_BYTES = 65_535 + 16;

export type CapsuleErrorCode = 'capsule_too_large' | 'malformed_capsule';

/** A capsule of any type with `value` copied after its header. */
export function encodeCapsule(type: number, value: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(varintLength(type) + varintLength(value.length) + value.length);
  let pos = writeVarint(out, 0, type);
  pos = writeVarint(out, pos, value.length);
  out.set(value, pos);
  return out;
}

/** A DATAGRAM capsule carrying `payload` as one UDP payload (context id 0); one allocation. */
export function encodeDatagramCapsule(payload: Uint8Array): Buffer {
  const length = 1 + payload.length;
  const out = Buffer.allocUnsafe(1 + varintLength(length) + length);
  out[0] = CAPSULE_DATAGRAM;
  const pos = writeVarint(out, 1, length);
  out[pos] = 0; // context id 0
  out.set(payload, pos + 1);
  return out;
}

export interface CapsuleParserOptions {
  /**
   * A context-0 datagram's payload, possibly empty. It may be a view into a chunk given to `feed`:
   * it stays valid (chunks are not reused by this parser), but is not a private copy.
   */
  onDatagram: (payload: Buffer) => void;
  /** Called at most once; the parser then ignores all further input. */
  onError: (code: CapsuleErrorCode) => void;
  /**
   * The largest Length (value bytes, headers excluded) accepted for a capsule of any type, so that a
   * peer cannot make the parser buffer, or wait on, more than this. Default DEFAULT_MAX_CAPSULE_BYTES.
   */
  maxCapsuleBytes?: number;
}

const HEADER = 0;
const DATAGRAM = 1;
const SKIP = 2;
const STOPPED = 3;

/** Type and Length are at most 8 bytes each. */
const MAX_HEADER_BYTES = 16;

/**
 * An incremental capsule parser fed with stream chunks as they arrive, however they are split.
 *
 * Memory stays bounded: a header split across chunks is kept in a 16-byte scratch buffer, a DATAGRAM
 * value that arrives whole in one chunk is passed on as a view of that chunk (no copy), one split
 * across chunks is gathered into a buffer of exactly its length (≤ maxCapsuleBytes), and the value
 * of an unknown capsule type is counted down as it arrives, never stored.
 */
export class CapsuleParser {
  /** DATAGRAM capsules dropped because their context id is not 0. */
  droppedDatagrams = 0;
  /** Capsules of unknown types skipped (RFC 9297 §3.2: receivers ignore them). */
  skippedCapsules = 0;

  private readonly onDatagram: (payload: Buffer) => void;
  private readonly onError: (code: CapsuleErrorCode) => void;
  private readonly maxCapsuleBytes: number;
  private state = HEADER;
  private readonly header = Buffer.allocUnsafe(MAX_HEADER_BYTES);
  private headerLen = 0;
  /** Value bytes of the current capsule still to come (DATAGRAM and SKIP). */
  private remaining = 0;
  /** A DATAGRAM value being gathered across chunks; null while none is split. */
  private value: Buffer | null = null;
  private valueLen = 0;

  constructor(opts: CapsuleParserOptions) {
    this.onDatagram = opts.onDatagram;
    this.onError = opts.onError;
    this.maxCapsuleBytes = opts.maxCapsuleBytes ?? DEFAULT_MAX_CAPSULE_BYTES;
  }

  /** True between capsules: a stream that ends while this is false ended inside a capsule. */
  get atBoundary(): boolean {
    return this.state === HEADER && this.headerLen === 0;
  }

  /** True once an error was reported or `stop` was called. */
  get stopped(): boolean {
    return this.state === STOPPED;
  }

  /** Ignores all further input without reporting an error (the owner is done with the stream). */
  stop(): void {
    this.state = STOPPED;
    this.value = null;
  }

  feed(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    // Callbacks may call stop(), so the state is checked again on every turn.
    while (pos < end) {
      switch (this.state) {
        case HEADER:
          pos = this.headerLen === 0 ? this.headerFromChunk(chunk, pos) : this.headerFromScratch(chunk, pos);
          break;
        case SKIP: {
          const n = Math.min(this.remaining, end - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = HEADER;
          break;
        }
        case DATAGRAM:
          pos = this.datagramValue(chunk, pos);
          break;
        default:
          return;
      }
    }
  }

  /** The usual case: the whole header is in this chunk and is read in place. */
  private headerFromChunk(chunk: Buffer, pos: number): number {
    const type = readVarint(chunk, pos);
    if (type !== VARINT_NEED_MORE) {
      const lengthAt = pos + varintSizeAt(chunk, pos);
      const length = readVarint(chunk, lengthAt);
      if (length !== VARINT_NEED_MORE) {
        this.begin(type, length);
        return lengthAt + varintSizeAt(chunk, lengthAt);
      }
    }
    // Fewer than 16 bytes are left (two complete varints would have been read), all of them header.
    chunk.copy(this.header, 0, pos);
    this.headerLen = chunk.length - pos;
    return chunk.length;
  }

  /** A header split across chunks: moved byte by byte into the scratch buffer until it is whole. */
  private headerFromScratch(chunk: Buffer, pos: number): number {
    const h = this.header;
    while (pos < chunk.length) {
      h[this.headerLen++] = chunk[pos++]!;
      const type = readVarint(h, 0, this.headerLen);
      if (type === VARINT_NEED_MORE) continue;
      const length = readVarint(h, varintSizeAt(h, 0), this.headerLen);
      if (length === VARINT_NEED_MORE) continue;
      this.headerLen = 0;
      this.begin(type, length);
      break;
    }
    return pos;
  }

  /** `type` may be VARINT_UNSAFE: such a type is simply not one we know. */
  private begin(type: number, length: number): void {
    if (length === VARINT_UNSAFE || length > this.maxCapsuleBytes) {
      this.fail('capsule_too_large');
    } else if (type === CAPSULE_DATAGRAM) {
      // Even an empty UDP payload has its context id, so an empty value is not a datagram.
      if (length === 0) this.fail('malformed_capsule');
      else {
        this.state = DATAGRAM;
        this.remaining = length;
      }
    } else {
      this.skippedCapsules++;
      this.remaining = length;
      this.state = length === 0 ? HEADER : SKIP;
    }
  }

  private datagramValue(chunk: Buffer, pos: number): number {
    const available = chunk.length - pos;
    if (this.value === null && available >= this.remaining) {
      const end = pos + this.remaining;
      this.state = HEADER;
      this.datagram(chunk.subarray(pos, end));
      return end;
    }
    if (this.value === null) {
      this.value = Buffer.allocUnsafe(this.remaining);
      this.valueLen = 0;
    }
    const n = Math.min(this.remaining, available);
    chunk.copy(this.value, this.valueLen, pos, pos + n);
    this.valueLen += n;
    this.remaining -= n;
    if (this.remaining === 0) {
      const value = this.value;
      this.value = null;
      this.state = HEADER;
      this.datagram(value);
    }
    return pos + n;
  }

  private datagram(value: Buffer): void {
    const context = readVarint(value, 0);
    if (context === VARINT_NEED_MORE) this.fail('malformed_capsule');
    else if (context !== 0) this.droppedDatagrams++;
    else this.onDatagram(value.subarray(varintSizeAt(value, 0)));
  }

  private fail(code: CapsuleErrorCode): void {
    this.stop();
    this.onError(code);
  }
}
