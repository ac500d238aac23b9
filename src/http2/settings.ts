import { Buffer } from 'node:buffer';
import {
  DEFAULT_WINDOW,
  FLOW_CONTROL_ERROR,
  MAX_MAX_FRAME_SIZE,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  PROTOCOL_ERROR,
  readU32,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
} from './frame.ts';

/** One side's SETTINGS (RFC 9113 §6.5.2); unknown identifiers are ignored (§6.5.2). */
export interface Settings {
  headerTableSize: number;
  enablePush: boolean;
  maxConcurrentStreams: number;
  initialWindowSize: number;
  maxFrameSize: number;
  maxHeaderListSize: number;
  enableConnectProtocol: boolean;
}

/** What a peer is assumed to have until its first SETTINGS says otherwise. */
export function defaultSettings(): Settings {
  return {
    headerTableSize: 4096,
    enablePush: true,
    maxConcurrentStreams: Number.POSITIVE_INFINITY,
    initialWindowSize: DEFAULT_WINDOW,
    maxFrameSize: MIN_MAX_FRAME_SIZE,
    maxHeaderListSize: Number.POSITIVE_INFINITY,
    enableConnectProtocol: false,
  };
}

/**
 * Applies a SETTINGS payload to `s`. Returns 0, or the connection error code the payload earns
 * (§6.5.2: push not 0/1, a window over 2^31-1, a frame size out of range; RFC 8441 §3: connect
 * protocol not 0/1, or turned off again).
 */
export function applySettings(s: Settings, b: Uint8Array, start: number, end: number): number {
  for (let i = start; i + 6 <= end; i += 6) {
    const id = (b[i]! << 8) | b[i + 1]!;
    const v = readU32(b, i + 2);
    switch (id) {
      case SETTINGS_HEADER_TABLE_SIZE:
        s.headerTableSize = v;
        break;
      case SETTINGS_ENABLE_PUSH:
        if (v > 1) return PROTOCOL_ERROR;
        s.enablePush = v === 1;
        break;
      case SETTINGS_MAX_CONCURRENT_STREAMS:
        s.maxConcurrentStreams = v;
        break;
      case SETTINGS_INITIAL_WINDOW_SIZE:
        if (v > MAX_WINDOW) return FLOW_CONTROL_ERROR;
        s.initialWindowSize = v;
        break;
      case SETTINGS_MAX_FRAME_SIZE:
        if (v < MIN_MAX_FRAME_SIZE || v > MAX_MAX_FRAME_SIZE) return PROTOCOL_ERROR;
        s.maxFrameSize = v;
        break;
      case SETTINGS_MAX_HEADER_LIST_SIZE:
        s.maxHeaderListSize = v;
        break;
      case SETTINGS_ENABLE_CONNECT_PROTOCOL:
        if (v > 1 || (s.enableConnectProtocol && v === 0)) return PROTOCOL_ERROR;
        s.enableConnectProtocol = v === 1;
        break;
      default:
        break;
    }
  }
  return 0;
}

/** A SETTINGS payload listing `pairs` (identifier, value). */
export function encodeSettings(pairs: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(pairs.length * 6);
  let o = 0;
  for (const [id, v] of pairs) {
    b.writeUInt16BE(id, o);
    b.writeUInt32BE(v, o + 2);
    o += 6;
  }
  return b;
}
