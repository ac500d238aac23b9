/**
 * A stored response as one binary Redis value, so a replay is one GET-sized reply and the body's bytes
 * travel as they are (JSON would need base64: a third more bytes and an encode/decode per request).
 *
 *   'R'                      1 byte, tells a response from a lock ('L')
 *   fingerprint             64 bytes, compared by the begin script
 *   status                   u16
 *   header count             u16
 *   per header: name length u16, name (UTF-8), value length u32, value (UTF-8)
 *   body                     the rest
 *
 * UTF-8 because it round-trips every well-formed JS string (latin1 would mangle code points over 0xff);
 * header fields from the wire are latin1 strings, never lone surrogates.
 */
import { FINGERPRINT_LENGTH } from './fingerprint.ts';
import type { StoredResponse } from './idempotency-store.ts';

export const RESPONSE_TAG = 0x52; // 'R'
export const LOCK_TAG = 0x4c; // 'L'

const HEAD_BYTES = 1 + FINGERPRINT_LENGTH + 2 + 2;

export function encodeResponse(fingerprint: string, response: StoredResponse): Buffer {
  const { status, headers, body } = response;
  if (!Number.isInteger(status) || status < 0 || status > 0xffff) throw new TypeError(`Bad status ${status}`);
  if (headers.length > 0xffff) throw new RangeError('Too many header fields to store');
  let size = HEAD_BYTES + body.length;
  for (const [name, value] of headers) {
    const n = Buffer.byteLength(name, 'utf8');
    if (n > 0xffff) throw new RangeError('Header name too long to store');
    size += 2 + n + 4 + Buffer.byteLength(value, 'utf8');
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = RESPONSE_TAG;
  out.write(fingerprint, 1, FINGERPRINT_LENGTH, 'latin1');
  let at = 1 + FINGERPRINT_LENGTH;
  at = out.writeUInt16BE(status, at);
  at = out.writeUInt16BE(headers.length, at);
  for (const [name, value] of headers) {
    const n = out.write(name, at + 2, 'utf8');
    out.writeUInt16BE(n, at);
    at += 2 + n;
    const v = out.write(value, at + 4, 'utf8');
    out.writeUInt32BE(v, at);
    at += 4 + v;
  }
  body.copy(out, at);
  return out;
}

/** The inverse of `encodeResponse`; the body is a view into `value`. Throws on anything malformed. */
export function decodeResponse(value: Buffer): StoredResponse {
  if (value.length < HEAD_BYTES || value[0] !== RESPONSE_TAG) throw malformed();
  let at = 1 + FINGERPRINT_LENGTH;
  const status = value.readUInt16BE(at);
  const count = value.readUInt16BE(at + 2);
  at += 4;
  const headers: [string, string][] = [];
  for (let i = 0; i < count; i++) {
    if (at + 2 > value.length) throw malformed();
    const n = value.readUInt16BE(at);
    at += 2;
    if (at + n + 4 > value.length) throw malformed();
    const name = value.toString('utf8', at, at + n);
    at += n;
    const v = value.readUInt32BE(at);
    at += 4;
    if (at + v > value.length) throw malformed();
    headers.push([name, value.toString('utf8', at, at + v)]);
    at += v;
  }
  return { status, headers, body: value.subarray(at) };
}

function malformed(): Error {
  return new Error('Malformed stored response');
}
