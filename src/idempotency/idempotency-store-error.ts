/**
 * What a store rejects with. The caller branches on `code`, never on the text:
 * - `idempotency_store_unavailable`: the store could not answer (Redis down, slow, full, or an answer
 *   that cannot be read); apply fail_open (forward without idempotency) or fail_closed (503).
 * - `idempotency_response_too_large`: `complete` with a response over `max_body_bytes` (or one the
 *   memory store could never hold); nothing was stored and the lock is untouched.
 */
export type IdempotencyErrorCode = 'idempotency_store_unavailable' | 'idempotency_response_too_large';

export class IdempotencyStoreError extends Error {
  readonly code: IdempotencyErrorCode;

  constructor(code: IdempotencyErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'IdempotencyStoreError';
    this.code = code;
  }
}

export function storeUnavailable(cause: unknown): IdempotencyStoreError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new IdempotencyStoreError('idempotency_store_unavailable', `Idempotency store unavailable: ${why}`, cause);
}

export function responseTooLarge(bytes: number, limit: number): IdempotencyStoreError {
  return new IdempotencyStoreError(
    'idempotency_response_too_large',
    `Response of ${bytes} bytes is over the idempotency store's limit of ${limit}`,
  );
}
