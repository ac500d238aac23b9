import { FIELD_VALUE, HEX, TCHAR } from './chars.ts';

const SIZE_START = 0;
const SIZE = 1;
const EXT = 2;
const SIZE_LF = 3;
const DATA = 4;
const DATA_CR = 5;
const DATA_LF = 6;
const TRAILER_START = 7;
const TRAILER_NAME = 8;
const TRAILER_VALUE = 9;
const TRAILER_LF = 10;
const FINAL_LF = 11;
const DONE = 12;
const FAILED = -1;

/** 13 hex digits stay below 2^52, so sizes never lose precision in a double. */
const MAX_SIZE_DIGITS = 13;
const MAX_EXT_BYTES = 4096;

/**
 * A strict, incremental validator of a chunked body (RFC 9112 §7.1). It does not copy: it tells the
 * caller how many bytes of the input belong to the body, so valid bytes are relayed as they are and
 * the end of the message is known exactly (the basis of safe connection reuse). With `decode`, it
 * also records the payload ranges so a body can be re-framed for an HTTP/1.0 peer.
 */
export class ChunkedScanner {
  state = SIZE_START;
  private remaining = 0;
  private digits = 0;
  private extBytes = 0;
  private trailerBytes = 0;
  private readonly maxTrailerBytes: number;
  /** Payload byte ranges [start, end, start, end...] of the last feed, when decoding. */
  readonly ranges: number[] | null;
  /** Total payload bytes seen. */
  payloadBytes = 0;

  constructor(maxTrailerBytes: number, decode = false) {
    this.maxTrailerBytes = maxTrailerBytes;
    this.ranges = decode ? [] : null;
  }

  get done(): boolean {
    return this.state === DONE;
  }

  /** Consumes buf[start, end). Returns how many bytes belong to the body, or -1 on malformed input. */
  feed(buf: Uint8Array, start: number, end: number): number {
    if (this.state === FAILED) return -1;
    const ranges = this.ranges;
    if (ranges !== null) ranges.length = 0;
    let i = start;
    let state = this.state;
    while (i < end) {
      const c = buf[i]!;
      switch (state) {
        case SIZE_START:
        case SIZE: {
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail();
            this.remaining = this.remaining * 16 + h;
            state = SIZE;
          } else if (state === SIZE && c === 0x3b /* ; */) {
            state = EXT;
            this.extBytes = 0;
          } else if (state === SIZE && c === 0x0d) {
            state = SIZE_LF;
          } else {
            return this.fail();
          }
          i++;
          break;
        }
        case EXT:
          // Extensions are relayed untouched; only their bytes are policed.
          if (c === 0x0d) state = SIZE_LF;
          else if (FIELD_VALUE[c] !== 1 || ++this.extBytes > MAX_EXT_BYTES) return this.fail();
          i++;
          break;
        case SIZE_LF:
          if (c !== 0x0a) return this.fail();
          this.digits = 0;
          state = this.remaining === 0 ? TRAILER_START : DATA;
          i++;
          break;
        case DATA: {
          const take = Math.min(end - i, this.remaining);
          if (ranges !== null) ranges.push(i, i + take);
          this.payloadBytes += take;
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) state = DATA_CR;
          break;
        }
        case DATA_CR:
          if (c !== 0x0d) return this.fail();
          state = DATA_LF;
          i++;
          break;
        case DATA_LF:
          if (c !== 0x0a) return this.fail();
          state = SIZE_START;
          i++;
          break;
        case TRAILER_START:
          if (c === 0x0d) state = FINAL_LF;
          else if (TCHAR[c] === 1) state = TRAILER_NAME;
          else return this.fail(); // includes obs-fold (SP/HTAB)
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail();
          i++;
          break;
        case TRAILER_NAME:
          if (c === 0x3a) state = TRAILER_VALUE;
          else if (TCHAR[c] !== 1) return this.fail();
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail();
          i++;
          break;
        case TRAILER_VALUE:
          if (c === 0x0d) state = TRAILER_LF;
          else if (FIELD_VALUE[c] !== 1) return this.fail();
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail();
          i++;
          break;
        case TRAILER_LF:
          if (c !== 0x0a) return this.fail();
          state = TRAILER_START;
          i++;
          break;
        case FINAL_LF:
          if (c !== 0x0a) return this.fail();
          this.state = DONE;
          return i + 1 - start;
        default:
          return i - start; // DONE: nothing more belongs to this body
      }
    }
    this.state = state;
    return i - start;
  }

  private fail(): number {
    this.state = FAILED;
    return -1;
  }
}
