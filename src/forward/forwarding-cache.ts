import { sequential } from '../http1/latin1.ts';
import type { RequestHead } from '../http1/request-head.ts';
import { forwardedHeaders, sharedBlock } from './forwarded-headers.ts';

/**
 * A downstream connection (HTTP/1.1 or HTTP/2) as the forwarding fields see it: who the peer is,
 * its listener, and the last block built (fields on the connection itself rather than an object of
 * their own: an idle connection should cost as few bytes as possible).
 */
export interface ForwardingCache {
  readonly peer: string;
  readonly trusted: boolean;
  readonly ctx: { readonly via: string | null; readonly proto: 'http' | 'https' };
  fwdHost: string | null;
  fwdVersion: string;
  fwdFields: string;
}

/**
 * The X-Forwarded-*, Forwarded and Via lines for a request on connection `c`; `version` is how Via
 * names the protocol ("1.1", "1.0", "2"). From an untrusted peer, incoming values are discarded, so
 * without an incoming Via the block depends only on Host and the version: it is built once and reused
 * for the connection's next requests, and shared with the listener's other connections from the same
 * client address (one string, not one each).
 */
export function forwardingFields(c: ForwardingCache, head: RequestHead, version: string): string {
  const cacheable = !c.trusted && head.via === null;
  if (cacheable && head.host === c.fwdHost && version === c.fwdVersion) return c.fwdFields;
  const block = cacheable
    ? sharedBlock(c.ctx, `${version} ${c.peer}`, head.host, () => sequential(build(c, head, version)))
    : build(c, head, version);
  if (cacheable) {
    c.fwdHost = head.host;
    c.fwdVersion = version;
    c.fwdFields = block;
  }
  return block;
}

function build(c: ForwardingCache, head: RequestHead, version: string): string {
  const via = c.ctx.via;
  return forwardedHeaders(head, {
    peer: c.peer,
    proto: c.ctx.proto,
    host: head.host,
    trusted: c.trusted,
    via: via === null ? null : `${version} ${via}`,
  });
}
