import type { ErrorCode } from '../core/errors.ts';
import type { H2UpstreamConnection } from './h2-upstream-connection.ts';
import type { H1UpstreamConnection } from './h1-upstream-connection.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';

/**
 * Whoever asks a pool for capacity (the UpstreamPool contract, src/pool/upstream-pool.ts). An H1Pool
 * calls `onPoolReady` (a leased connection) or `onPoolError`; an H2Pool calls `onSessionReady` (one
 * stream slot reserved on a session) or `onPoolError`. Exactly one callback per acquire, possibly synchronously from `acquire`. The link
 * fields belong to the pool's pending queue (an intrusive list, so queueing allocates nothing and
 * cancelling is O(1)).
 */
export interface PoolWaiter {
  onPoolReady(conn: H1UpstreamConnection): void;
  /** Open the stream now (`session.request`), or give the slot back (`session.releaseSlot`). */
  onSessionReady(session: H2UpstreamConnection): void;
  onPoolError(code: ErrorCode): void;
  /**
   * The client connection the request came on, asked by an HTTP/1.1 pool that sends PROXY headers
   * (its connections each carry one client connection's requests). Absent: the header says LOCAL.
   */
  clientOrigin?(): ClientOrigin;
  queuedAt: number;
  queuePrev: PoolWaiter | null;
  queueNext: PoolWaiter | null;
  queued: boolean;
  /** The queue holding the waiter (opaque to everyone else). */
  queueOwner: object | null;
}
