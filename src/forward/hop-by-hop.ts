/**
 * Fields that describe one connection, not the message (RFC 9110 §7.6.1), plus the framing and
 * forwarding fields the proxy rewrites itself. None of these is copied from one side to the other.
 */
export const REQUEST_SKIP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'via',
]);

export const RESPONSE_SKIP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'via',
]);

/** Copies `name: value` lines except skipped names and names listed in the Connection header. */
export function copyFields(
  names: readonly string[],
  lower: readonly string[],
  values: readonly string[],
  skip: ReadonlySet<string>,
  connection: readonly string[] | null,
): string {
  let out = '';
  for (let i = 0; i < lower.length; i++) {
    const n = lower[i]!;
    if (skip.has(n)) continue;
    if (connection?.includes(n)) continue;
    out += `${names[i]}: ${values[i]}\r\n`;
  }
  return out;
}
