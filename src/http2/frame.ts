/**
 * HTTP/2 framing constants and the frame header (RFC 9113 §4.1, §6). Numbers, not enums: the code
 * runs by type stripping, and frames are dispatched on these values in the hot path.
 */

/** The client connection preface (§3.4), sent before the first SETTINGS. */
export const CLIENT_PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
export const PREFACE_LENGTH = 24;

export const FRAME_HEADER = 9;

export const DATA = 0x0;
export const HEADERS = 0x1;
export const PRIORITY = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PUSH_PROMISE = 0x5;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;

export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const FLAG_PADDED = 0x8;
export const FLAG_PRIORITY = 0x20;

/** Error codes (§7). */
export const NO_ERROR = 0x0;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const FLOW_CONTROL_ERROR = 0x3;
export const SETTINGS_TIMEOUT = 0x4;
export const STREAM_CLOSED = 0x5;
export const FRAME_SIZE_ERROR = 0x6;
export const REFUSED_STREAM = 0x7;
export const CANCEL = 0x8;
export const COMPRESSION_ERROR = 0x9;
export const CONNECT_ERROR = 0xa;
export const ENHANCE_YOUR_CALM = 0xb;
export const INADEQUATE_SECURITY = 0xc;
export const HTTP_1_1_REQUIRED = 0xd;

const ERROR_NAMES = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** Settings identifiers (§6.5.2, RFC 8441 §3). */
export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;
export const SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8;

export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 2 ** 31 - 1;
export const MIN_MAX_FRAME_SIZE = 16384;
export const MAX_MAX_FRAME_SIZE = 2 ** 24 - 1;
export const MAX_STREAM_ID = 2 ** 31 - 1;

/** Writes a frame header at `off`; the caller writes the payload after it. */
export function writeFrameHeader(
  out: Uint8Array,
  off: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  out[off] = length >>> 16;
  out[off + 1] = (length >>> 8) & 0xff;
  out[off + 2] = length & 0xff;
  out[off + 3] = type;
  out[off + 4] = flags;
  writeU32(out, off + 5, streamId);
}

export function writeU32(out: Uint8Array, off: number, v: number): void {
  out[off] = v >>> 24;
  out[off + 1] = (v >>> 16) & 0xff;
  out[off + 2] = (v >>> 8) & 0xff;
  out[off + 3] = v & 0xff;
}

export function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}
