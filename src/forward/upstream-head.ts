import { Buffer } from 'node:buffer';
import { copyKeptFields, keptFieldBytes } from '../http1/field-scan.ts';
import { LineMemo, putLatin1 } from '../http1/latin1.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { Route } from '../router/route.ts';

/**
 * The request head as sent upstream, always HTTP/1.1: route rewrites applied, the client's fields
 * copied as bytes except those the parser flagged (hop-by-hop, framing, Host, forwarding headers),
 * framing restated from what was validated (never copied), then `forwarding` (see forwarded-headers.ts).
 * An HTTP/1.1 request line whose target is not rewritten is copied as it came, too.
 */
export function buildUpstreamHead(head: RequestHead, route: Route, forwarding: string): Buffer {
  const target = upstreamTarget(head, route);
  const asIs = head.lineBytes > 0 && target === head.target;
  const line = asIs ? '' : `${head.method} ${target} HTTP/1.1\r\n`;
  const host = hostLines.get(route.hostRewrite ?? head.host);
  const framing = head.chunked
    ? 'transfer-encoding: chunked\r\n'
    : head.contentLength >= 0
      ? lengthLines.get(head.contentLength)
      : '';
  const out = Buffer.allocUnsafe(
    (asIs ? head.lineBytes : line.length) +
      host.length +
      keptFieldBytes(head.fields) +
      framing.length +
      forwarding.length +
      2,
  );
  let off = asIs ? head.buf.copy(out, 0, head.start, head.start + head.lineBytes) : putLatin1(out, 0, line);
  off = putLatin1(out, off, host);
  off = copyKeptFields(head.buf, head.fields, out, off);
  if (framing.length > 0) off = putLatin1(out, off, framing);
  off = putLatin1(out, off, forwarding);
  out[off] = 0x0d;
  out[off + 1] = 0x0a;
  return out;
}

const hostLines = new LineMemo((host: string) => `host: ${host}\r\n`);
const lengthLines = new LineMemo((n: number) => `content-length: ${n}\r\n`);

/** The request target sent upstream: the route's prefix_rewrite applied. */
export function upstreamTarget(head: RequestHead, route: Route): string {
  let target = head.target;
  const path = route.path;
  if (route.prefixRewrite !== undefined && path !== null && path.kind === 'prefix') {
    target = route.prefixRewrite + target.slice(path.value.length);
    if (target.charCodeAt(0) !== 0x2f) target = `/${target}`;
  }
  return target;
}
