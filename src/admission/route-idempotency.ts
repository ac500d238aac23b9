import type { IdempotencyConfig } from '../config/admission.ts';
import { type RequestHead, requestField } from '../http1/request-head.ts';
import type { IdempotencyStore } from '../idempotency/idempotency-store.ts';
import { scopeKey } from '../idempotency/scope-key.ts';

/** Longest key accepted (Stripe's limit; the draft sets none). */
const MAX_KEY_LENGTH = 255;
/** Visible ASCII, no quotes or backslashes, once unquoted. */
const KEY_CHARS = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * A route's compiled `idempotency:`. The key comes from `Idempotency-Key`, a structured-field String
 * (draft-ietf-httpapi-idempotency-key-header): quoted, though a bare token is accepted too, since many
 * clients (Stripe's among them) send it unquoted.
 */
export class RouteIdempotency {
  readonly store: IdempotencyStore;
  readonly route: string;
  readonly failOpen: boolean;
  readonly maxRequestBytes: number;
  readonly maxBodyBytes: number;
  private readonly scopeHeader: string | undefined;

  constructor(cfg: IdempotencyConfig, route: string, store: IdempotencyStore) {
    this.store = store;
    this.route = route;
    this.failOpen = cfg.on_store_error === 'fail_open';
    this.maxRequestBytes = cfg.max_request_bytes;
    this.maxBodyBytes = cfg.max_body_bytes;
    this.scopeHeader = cfg.key_scope;
  }

  /** The key of a request: undefined without the header, null when it is malformed (400). */
  keyOf(head: RequestHead): string | null | undefined {
    const raw = requestField(head, 'idempotency-key');
    if (raw === undefined) return undefined;
    let key = raw.trim();
    if (key.length >= 2 && key.startsWith('"') && key.endsWith('"')) key = key.slice(1, -1);
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || !KEY_CHARS.test(key)) return null;
    return key;
  }

  /** The store key: route, key and (with key_scope) the client identity, hashed. */
  scopeOf(head: RequestHead, key: string): string {
    const scope = this.scopeHeader;
    return scopeKey(this.route, key, scope === undefined ? undefined : (requestField(head, scope) ?? ''));
  }
}
