import type { RequestHead } from '../http1/request-head.ts';
import type { Route } from '../router/route.ts';
import { type ForwardedFacts, forwardedHeaders } from './forwarded-headers.ts';
import { copyFields, REQUEST_SKIP } from './hop-by-hop.ts';

/**
 * The request head as sent upstream, always HTTP/1.1: route rewrites applied, hop-by-hop fields
 * removed, framing restated from what was validated (never copied), forwarding headers added.
 */
export function buildUpstreamHead(head: RequestHead, route: Route, facts: ForwardedFacts): string {
  let target = head.target;
  const path = route.path;
  if (route.prefixRewrite !== undefined && path !== null && path.kind === 'prefix') {
    target = route.prefixRewrite + target.slice(path.value.length);
    if (target.charCodeAt(0) !== 0x2f) target = `/${target}`;
  }
  let s = `${head.method} ${target} HTTP/1.1\r\nhost: ${route.hostRewrite ?? head.host}\r\n`;
  s += copyFields(head.names, head.lower, head.values, REQUEST_SKIP, head.connection);
  if (head.chunked) s += 'transfer-encoding: chunked\r\n';
  else if (head.contentLength >= 0) s += `content-length: ${head.contentLength}\r\n`;
  s += forwardedHeaders(head.lower, head.values, facts);
  return `${s}\r\n`;
}
