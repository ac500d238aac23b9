/**
 * The contract between the proxy's request path and an Idempotency-Key store
 * (draft-ietf-httpapi-idempotency-key-header, with Stripe's semantics): the first request with a key
 * runs and its response is kept for `ttl`; a retry with the same key and the same request gets that
 * response back; a retry while the first still runs gets 409, one with another request 422.
 *
 * The protocol for one request: `begin`, and after a `run` exactly one of `complete` (store the
 * response) or `release` (store nothing, let a retry run: proxy-generated 5xx, a response too large to
 * keep, the client gone). Both only act while the token still owns the key's lock: a lock that outlived
 * `lock_ttl` may have been taken by another request, whose outcome must not be overwritten.
 */

/** A response as kept and replayed: every header field in order (repeats included), the body's bytes. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  readonly body: Buffer;
}

export type BeginResult =
  /** The caller owns the key: forward the request, then `complete` or `release` with this token. */
  | { readonly kind: 'run'; readonly token: string }
  /** The same request already completed: answer with this response (read-only; shared between replays). */
  | { readonly kind: 'replay'; readonly response: StoredResponse }
  /** The first request with this key is still running: 409. */
  | { readonly kind: 'in_flight' }
  /** The key was used for another request (method, target or body), running or done: 422. */
  | { readonly kind: 'mismatch' };

/** `down`: operations reject with `idempotency_store_unavailable`; `up`: they work (again). */
export type StoreState = 'up' | 'down';

/** Told once per change: one `down` per outage (with what caused it), one `up` when the store works again. */
export type StoreStateListener = (state: StoreState, cause: Error | undefined) => void;

export interface IdempotencyStore {
  /**
   * `scopeKey` comes from `scopeKey()` (scope-key.ts), `fingerprint` from `fingerprint()`
   * (fingerprint.ts). Rejects with an `IdempotencyStoreError` (`idempotency_store_unavailable`) when
   * the store cannot answer; the caller then applies fail_open or fail_closed.
   */
  begin(scopeKey: string, fingerprint: string): Promise<BeginResult>;
  /**
   * Keeps `response` for `ttl` in place of the lock. Resolves false, storing nothing, when `token` no
   * longer owns the lock (it expired, maybe taken by another request). A body over `max_body_bytes`
   * rejects with `idempotency_response_too_large` and leaves the lock alone: call `release`.
   */
  complete(scopeKey: string, token: string, response: StoredResponse): Promise<boolean>;
  /** Drops the lock so a retry can run. Resolves false when `token` no longer owns it. */
  release(scopeKey: string, token: string): Promise<boolean>;
  /** Subscribes to up/down changes; returns the unsubscribe function. Listeners must not throw. */
  onStateChange(listener: StoreStateListener): () => void;
  close(): Promise<void>;
}
