import { appendTokens, type FieldLines, parseFieldLines } from './field-lines.ts';
import { parseContentLength } from './request-head.ts';

/** A parsed upstream response head; `null` from the parser means the upstream broke the protocol. */
export interface ResponseHead extends FieldLines {
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
  headBytes: number;
}

const MAX_RESPONSE_FIELDS = 1000;

export function parseResponseHead(buf: Buffer, start: number, end: number): ResponseHead | null {
  const text = buf.toString('latin1', start, end - 2);
  const lineEnd = text.indexOf('\r\n');
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]; a missing SP before an empty
  // reason is tolerated because common servers send it.
  if (lineEnd < 12 || !text.startsWith('HTTP/1.') || text.charCodeAt(8) !== 0x20) return null;
  const m = text.charCodeAt(7) - 0x30;
  if (m !== 0 && m !== 1) return null;
  const d0 = text.charCodeAt(9) - 0x30;
  const d1 = text.charCodeAt(10) - 0x30;
  const d2 = text.charCodeAt(11) - 0x30;
  if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  if (lineEnd > 12 && text.charCodeAt(12) !== 0x20) return null;
  const reason = lineEnd > 13 ? text.slice(13, lineEnd) : '';
  for (let i = 0; i < reason.length; i++) {
    const c = reason.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return null;
  }
  const fields = parseFieldLines(text, lineEnd + 2, MAX_RESPONSE_FIELDS);
  if (typeof fields === 'string') return null;

  let contentLength = -1;
  let chunked = false;
  let teSeen = false;
  let connection: string[] | null = null;
  const { lower, values } = fields;
  for (let i = 0; i < lower.length; i++) {
    const name = lower[i]!;
    if (name === 'content-length') {
      const n = parseContentLength(values[i]!);
      if (n < 0 || (contentLength !== -1 && contentLength !== n)) return null;
      contentLength = n;
    } else if (name === 'transfer-encoding') {
      // A response framed by anything but a lone chunked cannot be relayed safely on a reused connection.
      if (teSeen || values[i]!.toLowerCase() !== 'chunked') return null;
      teSeen = true;
      chunked = true;
    } else if (name === 'connection') {
      connection = appendTokens(connection, values[i]!);
    }
  }
  // RFC 9112 §6.3: both present is a smuggling signal; refuse rather than guess.
  if (chunked && contentLength !== -1) return null;
  let reusable = m === 1;
  if (connection !== null) {
    if (connection.includes('close')) reusable = false;
    else if (m === 0 && connection.includes('keep-alive')) reusable = true;
  }
  return {
    status: d0 * 100 + d1 * 10 + d2,
    minor: m,
    reason,
    names: fields.names,
    lower,
    values,
    contentLength,
    chunked,
    connection,
    reusable,
    headBytes: end - start,
  };
}
