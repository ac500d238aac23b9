import { WriteBatch } from './write-batch.ts';

/**
 * Where downstream output waits for its one write per event. A session queues bytes in a WriteBatch
 * and schedules itself here; every scheduled session is flushed from one microtask, which Node runs
 * right after the current I/O callback and before any other I/O, so order is kept and each session
 * writes once. Batches are lent while output waits and come back after the flush: an idle
 * connection holds none.
 */
export interface Flushable {
  flush(): void;
}

/** Emptied write batches, handed to the next session that writes (at most SPARE_BATCHES kept). */
const spareBatches: WriteBatch[] = [];
const SPARE_BATCHES = 256;

export function takeBatch(): WriteBatch {
  return spareBatches.pop() ?? new WriteBatch();
}

/** `batch` must be empty (just flushed). */
export function giveBackBatch(batch: WriteBatch): void {
  if (spareBatches.length < SPARE_BATCHES) spareBatches.push(batch);
}

const toFlush: (Flushable | null)[] = [];
let toFlushCount = 0;
let flushQueued = false;

export function scheduleFlush(s: Flushable): void {
  toFlush[toFlushCount++] = s;
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushAll);
  }
}

function flushAll(): void {
  flushQueued = false;
  // Index loop: a flush may queue more (it never does today, but then they are flushed too). The
  // array keeps its capacity: truncating it would free and regrow it on every event.
  for (let i = 0; i < toFlushCount; i++) {
    toFlush[i]!.flush();
    toFlush[i] = null;
  }
  toFlushCount = 0;
}
