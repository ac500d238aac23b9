/**
 * What makes two requests "the same request" for an Idempotency-Key: method, request-target (path and
 * query) and the body's bytes, as one SHA-256. A fixed-size digest rather than the fields themselves, so
 * a store keeps 64 bytes per key whatever the path, and compares in one step.
 *
 * Headers are left out (as Stripe does): a retry may differ in Date, tracing or auth-refresh headers and
 * still be the same operation.
 */
import { createHash } from 'node:crypto';
import { hashField } from './hash-field.ts';

/** Length of a fingerprint: SHA-256 in lowercase hex. The stores rely on it being fixed. */
export const FINGERPRINT_LENGTH = 64;

const FINGERPRINT_PATTERN = /^[0-9a-f]{64}$/;

/** The body may come in any chunking: only the bytes count. */
export function fingerprint(method: string, target: string, bodyChunks: Iterable<Uint8Array>): string {
  const hash = createHash('sha256');
  // A domain tag, so a fingerprint can never equal a scope key made of the same strings.
  hash.update('muxgate-idempotency-fingerprint-1\n');
  hashField(hash, method);
  hashField(hash, target);
  // The body is the last field: it needs no length, nothing follows it.
  for (const chunk of bodyChunks) hash.update(chunk);
  return hash.digest('hex');
}

/** A store's guard: anything else is a programming error in the caller, not a client's doing. */
export function assertFingerprint(value: string): void {
  if (!FINGERPRINT_PATTERN.test(value)) throw new TypeError('Not a fingerprint from fingerprint()');
}
