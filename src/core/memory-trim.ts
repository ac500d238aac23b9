import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from './log.ts';

/**
 * Gives memory back after a burst, once the process is idle.
 *
 * Why: a burst of long-lived allocations (10,000 WebSockets or tunnels opening in a second or two)
 * makes V8 grow its young generation to its maximum (2 × 8 MiB semi-spaces with muxgate's
 * --max-semi-space-size=8), and V8 inside Node never shrinks it again: the RSS stays up for as long
 * as the process lives (measured flat for 60 s and more), memory that idle connections then appear to
 * cost. V8 shrinks the young generation, and compacts the old one, only in a GC made to reduce the
 * footprint. So once a second this checks two cheap figures: the event loop's utilisation since the
 * last check (below `idle_below`: the process is idle) and the young generation's size (above
 * `young_above`: a burst grew it); when both hold, it runs that GC once (and once at the first idle
 * check after start, for what loading and start-up left behind). Under steady load neither
 * holds (V8 keeps the young generation at its working size and the loop is busy), so it costs
 * nothing there; `min_interval` bounds how often it can run at all.
 */
export interface MemoryTrimSettings {
  enabled: boolean;
  /** Event loop utilisation (0-1) since the last check under which the process counts as idle. */
  idle_below: number;
  /** Young generation size (bytes) above which a trim is worth its pause. */
  young_above: number;
  min_interval: number;
}

export interface MemoryTrimCounters {
  /** Trims run since start. */
  trims: number;
  /** How long the last one paused the event loop, in ms (0 before the first). */
  last_pause_ms: number;
  /** RSS given back by the last one, in bytes (0 before the first). */
  last_freed_bytes: number;
}

type GcOptions = { type: 'major'; execution: 'sync'; flavor: 'last-resort' };
type GcFunction = (options: GcOptions) => void;

const CHECK_INTERVAL_MS = 1000;

export class MemoryTrim {
  private settings: MemoryTrimSettings;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private lastElu = performance.eventLoopUtilization();
  private lastTrimAt = 0;
  private gc: GcFunction | null | undefined;
  /** Start-up (modules, config, TLS contexts) leaves garbage behind: the first idle check trims it. */
  private startup = true;
  readonly counters: MemoryTrimCounters = { trims: 0, last_pause_ms: 0, last_freed_bytes: 0 };

  constructor(settings: MemoryTrimSettings, log: Logger) {
    this.settings = settings;
    this.log = log;
  }

  /** Starts (or stops) the checks for these settings; called at start and on reload. */
  apply(settings: MemoryTrimSettings): void {
    this.settings = settings;
    if (!settings.enabled) {
      this.stop();
      return;
    }
    if (this.timer !== null) return;
    this.lastElu = performance.eventLoopUtilization();
    this.timer = setInterval(() => this.check(), CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    const elu = performance.eventLoopUtilization(this.lastElu);
    this.lastElu = performance.eventLoopUtilization();
    const s = this.settings;
    if (elu.utilization >= s.idle_below) return;
    if (performance.now() - this.lastTrimAt < s.min_interval) return;
    if (!this.startup && youngGenerationBytes() <= s.young_above) return;
    this.startup = false;
    this.trim();
  }

  /** One footprint-reducing GC now; false when this Node cannot run one. */
  trim(): boolean {
    this.gc ??= loadGc();
    if (this.gc === null) {
      this.log.warn({ code: 'memory_trim_unavailable' }, 'memory trim: no GC function in this Node; trims are off');
      this.stop();
      return false;
    }
    const rssBefore = process.memoryUsage.rss();
    const t0 = performance.now();
    this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    const t1 = performance.now();
    this.lastTrimAt = t1;
    // The GC's own pause is not the event loop's work: start the next idle measure after it.
    this.lastElu = performance.eventLoopUtilization();
    const c = this.counters;
    c.trims++;
    c.last_pause_ms = Math.round((t1 - t0) * 10) / 10;
    c.last_freed_bytes = Math.max(0, rssBefore - process.memoryUsage.rss());
    this.log.debug({ pause_ms: c.last_pause_ms, freed_bytes: c.last_freed_bytes }, 'memory trimmed');
    return true;
  }
}

function youngGenerationBytes(): number {
  let bytes = 0;
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') bytes += s.space_size;
  return bytes;
}

/**
 * V8's `gc` function without --expose-gc on the command line (workers and `node bin/muxgate.js`
 * alike): the flag, set now, installs it in contexts created after it; one such context hands it
 * over, and the flag is turned off again.
 */
function loadGc(): GcFunction | null {
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') return global as GcFunction;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as GcFunction) : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
