import {
  DROP,
  dropConnectionListed,
  F_COLON,
  F_FLAG,
  F_START,
  F_VEND,
  F_VSTART,
  FIELD_STRIDE,
  connectionTokens,
  fieldKind,
  fieldStrings,
  fieldValueAt as value,
  K_CONNECTION,
  K_CONTENT_LENGTH,
  K_KEEP_ALIVE,
  K_PROXY_CONNECTION,
  K_TE,
  K_TRANSFER_ENCODING,
  K_UPGRADE,
  K_VIA,
  scanFields,
} from './field-scan.ts';
import { CL_CONFLICT, parseContentLengthAt } from './request-head.ts';

/**
 * A parsed upstream response head; `null` from the parser means the upstream broke the protocol.
 * Fields stay in `buf` as offsets (see field-scan.ts); those the proxy must not relay (hop-by-hop,
 * framing, Via, names listed in Connection) carry DROP in their flag slot.
 */
export interface ResponseHead {
  status: number;
  minor: number;
  reason: string;
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** Lower-cased tokens of the Connection header, null when absent. */
  connection: string[] | null;
  /** Whether the upstream lets this connection carry another request. */
  reusable: boolean;
  /** Via values from the upstream, joined, or null. */
  via: string | null;
  headBytes: number;
  buf: Buffer;
  fields: number[];
}

const MAX_RESPONSE_FIELDS = 1000;

/**
 * Parses buf[start, end) (end just past the CRLFCRLF). `reuse`: an array the field offsets are written
 * into instead of a new one, for a caller that has used `fields` before it parses the next head.
 */
export function parseResponseHead(
  buf: Buffer,
  start: number,
  end: number,
  reuse: number[] | null = null,
): ResponseHead | null {
  // The status line is short: a byte loop costs less than a call into C++ (indexOf).
  let lineEnd = start;
  while (lineEnd < end && buf[lineEnd] !== 0x0d) lineEnd++;
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing SP before an empty
  // reason is tolerated because common servers send it.
  if (lineEnd - start < 12) return null;
  for (let i = 0; i < 7; i++) if (buf[start + i] !== HTTP_1_DOT[i]) return null;
  const m = buf[start + 7]! - 0x30;
  if ((m !== 0 && m !== 1) || buf[start + 8] !== 0x20) return null;
  const d0 = buf[start + 9]! - 0x30;
  const d1 = buf[start + 10]! - 0x30;
  const d2 = buf[start + 11]! - 0x30;
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  if (lineEnd - start > 12 && buf[start + 12] !== 0x20) return null;
  for (let i = start + 13; i < lineEnd; i++) {
    const c = buf[i]!;
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return null;
  }
  if (buf[lineEnd + 1] !== 0x0a) return null;
  // "OK" is most reason phrases: recognised on the bytes, without decoding a string.
  const reasonLength = lineEnd - start - 13;
  const reason =
    reasonLength === 2 && buf[start + 13] === 0x4f && buf[start + 14] === 0x4b
      ? 'OK'
      : reasonLength > 0
        ? buf.toString('latin1', start + 13, lineEnd)
        : '';

  const fields = scanFields(buf, lineEnd + 2, end - 2, MAX_RESPONSE_FIELDS, reuse);
  if (typeof fields === 'string') return null;

  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let connection: string[] | null = null;
  let via: string | null = null;
  for (let f = 0; f < fields.length; f += FIELD_STRIDE) {
    switch (fieldKind(buf, fields[f + F_START]!, fields[f + F_COLON]!)) {
      case K_TE:
      case K_UPGRADE:
      case K_KEEP_ALIVE:
      case K_PROXY_CONNECTION:
        break; // hop-by-hop
      case K_CONNECTION:
        connection = connectionTokens(connection, buf, fields, f);
        break;
      case K_CONTENT_LENGTH: {
        const n = parseContentLengthAt(buf, fields[f + F_VSTART]!, fields[f + F_VEND]!);
        if (n < 0 || n === CL_CONFLICT || (contentLength !== -1 && contentLength !== n)) return null;
        contentLength = n;
        break;
      }
      case K_TRANSFER_ENCODING:
        // A response framed by anything but a lone chunked cannot be relayed safely on a reused connection.
        if (teSeen || value(buf, fields, f).toLowerCase() !== 'chunked') return null;
        teSeen = true;
        chunked = true;
        break;
      case K_VIA: {
        const v = value(buf, fields, f);
        via = via === null ? v : `${via}, ${v}`;
        break;
      }
      default:
        continue; // relayed as is (a response's Host or X-Forwarded-* are just fields)
    }
    // Hop-by-hop, or restated by the proxy: not relayed.
    fields[f + F_FLAG] = DROP;
  }
  // RFC 9112 §6.3: both present is a smuggling signal; refuse rather than guess.
  if (chunked && contentLength !== -1) return null;
  let reusable = m === 1;
  if (connection !== null) {
    if (connection.includes('close')) reusable = false;
    else if (m === 0 && connection.includes('keep-alive')) reusable = true;
    dropConnectionListed(buf, fields, connection);
  }
  return {
    status: d0 * 100 + d1 * 10 + d2,
    minor: m,
    reason,
    contentLength,
    chunked,
    connection,
    reusable,
    via,
    headBytes: end - start,
    buf,
    fields,
  };
}

const HTTP_1_DOT = [0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e];

/** Every field as strings, in wire order (for tests and diagnostics). */
export function responseFields(res: ResponseHead): { names: string[]; lower: string[]; values: string[] } {
  return fieldStrings(res.buf, res.fields);
}
