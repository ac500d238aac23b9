import { createHash, randomBytes } from 'node:crypto';

/** RFC 6455 §1.3: the GUID every server appends to the client's key. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A fresh Sec-WebSocket-Key, for an HTTP/1.1 upstream handshake on behalf of an RFC 8441 client (which sends none). */
export function newWebSocketKey(): string {
  return randomBytes(16).toString('base64');
}

/** The Sec-WebSocket-Accept a server must answer `key` with. */
export function webSocketAccept(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** RFC 6455 §4.1: the key is 16 random bytes, base64-encoded (24 characters). */
export function isWebSocketKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{22}==$/.test(key);
}
