import { performance } from 'node:perf_hooks';

/**
 * Frames that cost the receiver work but the sender nothing (RFC 9113 §10.5; CVE-2019-9512..9518,
 * CVE-2023-44487): each kind is counted over a sliding interval and past its limit the connection
 * is closed with GOAWAY ENHANCE_YOUR_CALM. Counting per interval (not per connection lifetime) keeps
 * long-lived connections that ping now and then out of trouble.
 */
export interface FloodLimits {
  /** The window every limit below is counted over (but resets). */
  intervalMs: number;
  /** Streams the peer resets, or that are refused, before their response is complete (rapid reset)... */
  maxResets: number;
  /** ...within this window. */
  resetIntervalMs: number;
  /** SETTINGS frames (each needs an ACK). */
  maxSettings: number;
  /** PING frames that need an answer. */
  maxPings: number;
  /** DATA frames with no payload and no END_STREAM; HEADERS/CONTINUATION fragments with nothing in them. */
  maxEmptyFrames: number;
  /** WINDOW_UPDATE frames beyond two per DATA frame we sent (a client may credit every frame). */
  maxWindowUpdates: number;
  /** PRIORITY frames (validated, otherwise ignored). */
  maxPriority: number;
}

export const DEFAULT_FLOOD_LIMITS: FloodLimits = {
  intervalMs: 10_000,
  maxResets: 200,
  resetIntervalMs: 10_000,
  maxSettings: 100,
  maxPings: 100,
  maxEmptyFrames: 100,
  maxWindowUpdates: 10_000,
  maxPriority: 1_000,
};

export const FLOOD_RESET = 0;
export const FLOOD_SETTINGS = 1;
export const FLOOD_PING = 2;
export const FLOOD_EMPTY = 3;
export const FLOOD_WINDOW_UPDATE = 4;
export const FLOOD_PRIORITY = 5;

/** The stable error code each kind of flood is logged and counted under. */
export const FLOOD_CODES = [
  'rapid_reset',
  'h2_settings_flood',
  'h2_ping_flood',
  'h2_empty_frame_flood',
  'h2_window_update_flood',
  'h2_priority_flood',
] as const;
export type FloodCode = (typeof FLOOD_CODES)[number];

/** The limit on `kind`. */
function limitOf(l: FloodLimits, kind: number): number {
  switch (kind) {
    case FLOOD_RESET:
      return l.maxResets;
    case FLOOD_SETTINGS:
      return l.maxSettings;
    case FLOOD_PING:
      return l.maxPings;
    case FLOOD_EMPTY:
      return l.maxEmptyFrames;
    case FLOOD_WINDOW_UPDATE:
      return l.maxWindowUpdates;
    default:
      return l.maxPriority;
  }
}

const KINDS = FLOOD_CODES.length;

export class FloodGuard {
  private readonly limits: FloodLimits;
  /**
   * Per kind, the count, then at KINDS + kind the start of its interval; made at the first frame
   * counted. One plain array (of doubles once a start is set: stored unboxed), not typed arrays,
   * which cost an ArrayBuffer and a backing store each, nor three arrays: every idle connection
   * keeps its guard.
   */
  private state: number[] | null = null;

  constructor(limits: FloodLimits) {
    this.limits = limits;
  }

  /**
   * Earned allowance: frames of `kind` the peer may send because we caused them (each DATA frame we
   * send lets a careful client answer with a stream and a connection WINDOW_UPDATE).
   */
  allow(kind: number, n: number): void {
    const st = this.state;
    if (st === null) return; // nothing counted yet: nothing to take back
    st[kind] = Math.max(st[kind]! - n, 0);
  }

  /** Counts one frame of `kind`; true when that kind is over its limit. */
  hit(kind: number): boolean {
    const now = performance.now();
    const st = (this.state ??= new Array<number>(2 * KINDS).fill(0));
    const interval = kind === FLOOD_RESET ? this.limits.resetIntervalMs : this.limits.intervalMs;
    if (now - st[KINDS + kind]! > interval) {
      st[KINDS + kind] = now;
      st[kind] = 0;
    }
    return ++st[kind]! > limitOf(this.limits, kind);
  }
}
