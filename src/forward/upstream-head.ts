import { renderHead } from '../http1/field-scan.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { Route } from '../router/route.ts';

/**
 * The request head as sent upstream, always HTTP/1.1: route rewrites applied, the client's fields
 * copied as bytes except those the parser flagged (hop-by-hop, framing, Host, forwarding headers),
 * framing restated from what was validated (never copied), then `forwarding` (see forwarded-headers.ts).
 */
export function buildUpstreamHead(head: RequestHead, route: Route, forwarding: string): Buffer {
  const target = upstreamTarget(head, route);
  const first = `${head.method} ${target} HTTP/1.1\r\nhost: ${route.hostRewrite ?? head.host}\r\n`;
  let tail = head.chunked
    ? 'transfer-encoding: chunked\r\n'
    : head.contentLength >= 0
      ? `content-length: ${head.contentLength}\r\n`
      : '';
  tail += forwarding;
  return renderHead(first, head.buf, head.fields, tail);
}

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
