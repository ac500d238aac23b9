import type { Hash } from 'node:crypto';

/**
 * Feeds one string into a hash as a netstring (`<length>:<UTF-16 code units>`), so consecutive fields
 * cannot run into each other: ('a:b', 'c') and ('a', 'b:c') hash differently whatever the strings hold.
 * Client-controlled values (Idempotency-Key, request-target) go through here, so no delimiter is safe.
 * UTF-16 rather than UTF-8 because it encodes every JS string one-to-one: UTF-8 turns each lone
 * surrogate into U+FFFD, which would let two different keys hash alike.
 */
export function hashField(hash: Hash, value: string): void {
  hash.update(`${value.length}:`, 'latin1');
  hash.update(value, 'utf16le');
}
