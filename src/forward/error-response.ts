import { Buffer } from 'node:buffer';
import { ERRORS, type ErrorCode, reasonPhrase } from '../core/errors.ts';

const cache = new Map<string, Buffer>();

/**
 * The bytes of a proxy-generated error response: short text body, `muxgate-error: <code>` so clients
 * and operators can tell a proxy error from an upstream one, and `connection: close` when the
 * connection cannot be trusted for another request. `extra`: more `name: value\r\n` lines (e.g.
 * Proxy-Authenticate). Cached when `extra` is a fixed set of lines (`cacheable`): the set of variants is
 * then small; a 429's RateLimit fields change with every answer, so those are built each time.
 */
export function errorResponse(
  code: ErrorCode,
  close: boolean,
  headOnly: boolean,
  extra = '',
  cacheable = true,
): Buffer {
  const key = `${code}|${close ? 1 : 0}|${headOnly ? 1 : 0}|${extra}`;
  let b = cacheable ? cache.get(key) : undefined;
  if (b === undefined) {
    const info = ERRORS[code];
    const body = `${info.text} (${code})\n`;
    b = Buffer.from(
      `HTTP/1.1 ${info.status} ${reasonPhrase(info.status)}\r\n` +
        'content-type: text/plain; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        `muxgate-error: ${code}\r\n` +
        (close ? 'connection: close\r\n' : '') +
        extra +
        '\r\n' +
        (headOnly ? '' : body),
      'latin1',
    );
    if (cacheable) cache.set(key, b);
  }
  return b;
}

/** Flat [name, value, ...] fields as header lines. */
export function fieldLines(fields: readonly string[]): string {
  let s = '';
  for (let i = 0; i + 1 < fields.length; i += 2) s += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return s;
}
