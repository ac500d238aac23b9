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

export class FloodGuard {
  private readonly limits: FloodLimits;
  private readonly max: readonly number[];
  // Plain arrays, not typed ones: a typed array costs an ArrayBuffer and a backing store each, about
  // 300 bytes, on every idle connection.
  private readonly counts = [0, 0, 0, 0, 0, 0];
  private readonly starts = [0, 0, 0, 0, 0, 0];

  constructor(limits: FloodLimits) {
    this.limits = limits;
    this.max = [
      limits.maxResets,
      limits.maxSettings,
      limits.maxPings,
      limits.maxEmptyFrames,
      limits.maxWindowUpdates,
      limits.maxPriority,
    ];
  }

  /**
   * Earned allowance: frames of `kind` the peer may send because we caused them (each DATA frame we
   * send lets a careful client answer with a stream and a connection WINDOW_UPDATE).
   */
  allow(kind: number, n: number): void {
    const c = this.counts[kind]! - n;
    this.counts[kind] = Math.max(c, 0);
  }

  /** Counts one frame of `kind`; true when that kind is over its limit. */
  hit(kind: number): boolean {
    const now = performance.now();
    const interval = kind === 0 ? this.limits.resetIntervalMs : this.limits.intervalMs;
    if (now - this.starts[kind]! > interval) {
      this.starts[kind] = now;
      this.counts[kind] = 0;
    }
    return ++this.counts[kind]! > this.max[kind]!;
  }
}
