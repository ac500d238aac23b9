/**
 * The identity of an Idempotency-Key in a store: the route it was sent to, the key itself and,
 * optionally, who sent it (so two clients that pick the same key do not see each other's responses).
 *
 * Hashed, because the key is client-controlled: the result is 64 hex characters whatever the key's
 * length, and no choice of key (or client identity) can forge another scope by embedding a delimiter.
 */
import { createHash } from 'node:crypto';
import { hashField } from './hash-field.ts';

export function scopeKey(route: string, idempotencyKey: string, client?: string): string {
  const hash = createHash('sha256');
  hash.update('muxgate-idempotency-scope-1\n');
  hashField(hash, route);
  hashField(hash, idempotencyKey);
  // Marked, so "no client identity" differs from an empty one.
  if (client === undefined) hash.update('-');
  else {
    hash.update('+');
    hashField(hash, client);
  }
  return hash.digest('hex');
}
