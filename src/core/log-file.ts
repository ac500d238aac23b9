import { Buffer } from 'node:buffer';
import { closeSync, openSync, write, writeSync } from 'node:fs';

/** Where access-log lines go: the file writer below, or a collector in tests. */
export interface LineSink {
  /** One or more complete lines, each ending in "\n". */
  write(lines: string, count: number): void;
  /** Writes what is buffered now; resolves when it is on its way to the kernel (or counted lost). */
  flush(): Promise<void>;
  /** At exit: what is buffered goes out synchronously; later lines are counted lost. */
  closeSync(): void;
  readonly stats: SinkStats;
}

export interface SinkStats {
  linesWritten: number;
  /** Lines that could not be written (a write error such as a full disk, or over `maxBuffer`). */
  linesLost: number;
  writeErrors: number;
  /** write(2) calls made (batches, and the rest of a batch after a short write). */
  writes: number;
}

export interface LogFileOptions {
  /** Write once this many bytes are buffered. */
  bufferBytes: number;
  /** ...or once the oldest buffered line is this old. */
  flushIntervalMs: number;
  /** Lines that arrive while this much is buffered or in flight are dropped and counted (a stalled disk or pipe). */
  maxBufferBytes: number;
  /** Told once when lines start being lost, and once when writes succeed again. */
  onTrouble: (what: 'lost' | 'recovered', detail: { error?: string; lost: number }) => void;
}

/** Lines are encoded into the batch's buffer once this many characters have gathered. */
const CHUNK_CHARS = 4096;

/** How long to wait before retrying a write that a full pipe refused (EAGAIN). */
const RETRY_MS = 20;

/**
 * An append-only log destination that batches lines into few large asynchronous writes, so the data
 * path pays a string append per line, not a syscall (nginx's `access_log ... buffer=64k` does the same).
 * One write is in flight at a time; lines that arrive meanwhile wait for the next one. Nothing is
 * dropped silently: a failed write counts its lines in `linesLost` and says so once through onTrouble.
 */
export class LogFile implements LineSink {
  readonly stats: SinkStats = { linesWritten: 0, linesLost: 0, writeErrors: 0, writes: 0 };
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly opts: LogFileOptions;
  /**
   * Lines not yet handed to a write, already encoded (a few KiB at a time, see `chunk`), into a
   * buffer reused from batch to batch: no 64 KiB string kept alive across collections, no new
   * 64 KiB Buffer per write.
   */
  private pending: Buffer;
  private pendingLines = 0;
  private pendingBytes = 0;
  /** Lines not yet encoded into `pending` (at most about CHUNK_CHARS). */
  private chunk = '';
  /** The buffer of the last finished write, reused as the next `pending` (two buffers take turns). */
  private spare: Buffer | null = null;
  /** The whole buffer `inFlight` is a view of. */
  private inFlightWhole: Buffer | null = null;
  /** The write in flight: its bytes, how far the kernel has taken them, and its line count. */
  private inFlight: Buffer | null = null;
  private inFlightOffset = 0;
  private inFlightLines = 0;
  private timer: NodeJS.Timeout | null = null;
  private losing = false;
  private lostSinceTrouble = 0;
  private waiters: (() => void)[] = [];
  private closed = false;

  /** `path`: a file (opened for appending, created if missing), or "stdout" / "stderr". */
  constructor(path: string, opts: LogFileOptions) {
    this.opts = opts;
    this.pending = Buffer.allocUnsafeSlow(this.bufferSize());
    if (path === 'stdout' || path === 'stderr') {
      this.fd = path === 'stdout' ? 1 : 2;
      this.ownsFd = false;
    } else {
      this.fd = openSync(path, 'a');
      this.ownsFd = true;
    }
  }

  write(lines: string, count: number): void {
    if (this.closed) {
      this.lose(count);
      return;
    }
    // The new bytes are estimated by UTF-16 length: exact for ASCII, which is nearly every line.
    const buffered =
      this.pendingBytes + this.chunk.length + (this.inFlight === null ? 0 : this.inFlight.length - this.inFlightOffset);
    if (buffered + lines.length > this.opts.maxBufferBytes) {
      this.startLosing(`buffer full (${this.opts.maxBufferBytes} bytes): the destination does not keep up`);
      this.lose(count);
      return;
    }
    // Lines gather in a short string first, encoded into the buffer a few KiB at a time: one native
    // call per line cost more than the copy itself.
    this.chunk += lines;
    this.pendingLines += count;
    if (this.chunk.length >= CHUNK_CHARS) this.encodeChunk();
    if (this.pendingBytes >= this.opts.bufferBytes) this.startWrite();
    else if (this.timer === null) this.timer = setTimeout(this.onTimer, this.opts.flushIntervalMs).unref();
  }

  flush(): Promise<void> {
    if (this.inFlight === null && this.pendingLines === 0) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.startWrite();
    return done;
  }

  /**
   * Last words at exit: what is buffered goes out synchronously. Callers await flush() first where
   * they can (drain does); a write still in flight is left to finish, and these lines may then land
   * before it: out of order at the very end rather than lost.
   */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    if (this.pendingLines > 0) {
      this.encodeChunk();
      const lines = this.pendingLines;
      const buf = this.pending.subarray(0, this.pendingBytes);
      this.pendingLines = 0;
      this.pendingBytes = 0;
      try {
        let off = 0;
        for (let tries = 0; off < buf.length && tries < 100; tries++) {
          this.stats.writes++;
          off += writeSync(this.fd, buf, off);
        }
        if (off < buf.length) this.lose(lines);
        else this.stats.linesWritten += lines;
      } catch {
        this.stats.writeErrors++;
        this.lose(lines);
      }
    }
    if (this.ownsFd && this.inFlight === null) closeSync(this.fd);
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.startWrite();
  };

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private startWrite(): void {
    if (this.inFlight !== null) return;
    this.clearTimer();
    if (this.pendingLines === 0) {
      this.wake();
      return;
    }
    this.encodeChunk();
    this.inFlightWhole = this.pending;
    this.inFlight = this.pending.subarray(0, this.pendingBytes);
    this.inFlightOffset = 0;
    this.inFlightLines = this.pendingLines;
    this.pending = this.spare ?? Buffer.allocUnsafeSlow(this.bufferSize());
    this.spare = null;
    this.pendingLines = 0;
    this.pendingBytes = 0;
    this.writeSome();
  }

  /** Moves the gathered lines into `pending`, as UTF-8. */
  private encodeChunk(): void {
    const chunk = this.chunk;
    if (chunk === '') return;
    this.chunk = '';
    // UTF-8 takes at most 3 bytes per UTF-16 unit: room for the worst case, so nothing is cut.
    if (this.pendingBytes + chunk.length * 3 > this.pending.length) this.grow(this.pendingBytes + chunk.length * 3);
    this.pendingBytes += this.pending.write(chunk, this.pendingBytes);
  }

  /** A batch's buffer: the batch size and room for the line that crosses it. */
  private bufferSize(): number {
    return this.opts.bufferBytes + 16 * 1024;
  }

  /** Lines pile up behind a slow write (bounded by maxBufferBytes): a larger buffer, the bytes kept. */
  private grow(atLeast: number): void {
    const next = Buffer.allocUnsafeSlow(Math.max(atLeast, this.pending.length * 2));
    this.pending.copy(next, 0, 0, this.pendingBytes);
    this.pending = next;
  }

  private writeSome(): void {
    const buf = this.inFlight!;
    this.stats.writes++;
    write(this.fd, buf, this.inFlightOffset, buf.length - this.inFlightOffset, null, this.onWritten);
  }

  private readonly onWritten = (err: NodeJS.ErrnoException | null, n: number): void => {
    if (err !== null) {
      if (err.code === 'EAGAIN') {
        // A non-blocking pipe (stdout into a slow reader) is full: wait, keep order.
        setTimeout(() => this.writeSome(), RETRY_MS).unref();
        return;
      }
      this.stats.writeErrors++;
      this.startLosing(err.code ?? err.message);
      this.lose(this.inFlightLines);
    } else {
      this.inFlightOffset += n;
      if (this.inFlightOffset < this.inFlight!.length) {
        this.writeSome();
        return;
      }
      this.stats.linesWritten += this.inFlightLines;
      if (this.losing) {
        this.losing = false;
        this.opts.onTrouble('recovered', { lost: this.lostSinceTrouble });
        this.lostSinceTrouble = 0;
      }
    }
    // The written buffer becomes the next spare, unless it grew (a slow destination's backlog).
    if (this.inFlightWhole!.length === this.bufferSize()) this.spare = this.inFlightWhole;
    this.inFlightWhole = null;
    this.inFlight = null;
    this.inFlightLines = 0;
    if (this.closed) {
      if (this.ownsFd) closeSync(this.fd);
      this.wake();
      return;
    }
    // Lines that arrived during the write go out now if a flush is awaited or the buffer is full.
    if (this.waiters.length > 0 || this.pendingBytes >= this.opts.bufferBytes) this.startWrite();
    else if (this.pendingLines > 0 && this.timer === null) {
      this.timer = setTimeout(this.onTimer, this.opts.flushIntervalMs).unref();
    }
  };

  private lose(count: number): void {
    this.stats.linesLost += count;
    this.lostSinceTrouble += count;
  }

  /** Lines are being lost: said once, until a write succeeds again. */
  private startLosing(error: string): void {
    if (this.losing) return;
    this.losing = true;
    this.opts.onTrouble('lost', { error, lost: this.lostSinceTrouble });
  }

  private wake(): void {
    const w = this.waiters;
    if (w.length === 0) return;
    this.waiters = [];
    for (const resolve of w) resolve();
  }
}
