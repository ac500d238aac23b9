import type { ErrorCode } from '../core/errors.ts';
import type { UpstreamConnection } from './upstream-connection.ts';

/**
 * Whoever asks a pool for a connection. The pool calls exactly one of the two callbacks, possibly
 * synchronously from `acquire`. The link fields belong to the pool's pending queue (an intrusive
 * list, so queueing allocates nothing and cancelling is O(1)).
 */
export interface PoolWaiter {
  onPoolReady(conn: UpstreamConnection): void;
  onPoolError(code: ErrorCode): void;
  queuedAt: number;
  queuePrev: PoolWaiter | null;
  queueNext: PoolWaiter | null;
  queued: boolean;
}
