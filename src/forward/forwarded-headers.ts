import { isToken } from '../http1/chars.ts';

/**
 * X-Forwarded-For / -Proto / -Host, RFC 7239 Forwarded and Via for the upstream request.
 *
 * Forwarding headers are only as trustworthy as whoever wrote them: when the peer is one of the
 * configured trusted proxies its values are kept and ours appended; from anyone else they are
 * discarded and replaced, so a client cannot forge its address. Via is a trace, not a claim, and is
 * always appended (RFC 9110 §7.6.3).
 */
/** The forwarding headers a request arrived with (joined when repeated). */
export interface IncomingForwarding {
  xForwardedFor: string | null;
  xForwardedProto: string | null;
  xForwardedHost: string | null;
  forwarded: string | null;
  via: string | null;
}

export interface ForwardedFacts {
  peer: string;
  proto: 'http' | 'https';
  /** The Host the client asked for, before any rewrite. */
  host: string;
  trusted: boolean;
  /** "1.1 muxgate", or null when Via is disabled. */
  via: string | null;
}

export function forwardedHeaders(head: IncomingForwarding, f: ForwardedFacts): string {
  const xff = head.xForwardedFor;
  const xfp = head.xForwardedProto;
  const xfh = head.xForwardedHost;
  const fwd = head.forwarded;
  const via = head.via;
  const peer = f.peer;
  const fwdFor = peer.indexOf(':') === -1 ? peer : `"[${peer}]"`;
  const element = `for=${fwdFor};host=${quoteIfNeeded(f.host)};proto=${f.proto}`;
  let out: string;
  if (f.trusted) {
    out =
      `x-forwarded-for: ${xff === null ? peer : `${xff}, ${peer}`}\r\n` +
      `x-forwarded-proto: ${xfp ?? f.proto}\r\n` +
      `x-forwarded-host: ${xfh ?? f.host}\r\n` +
      `forwarded: ${fwd === null ? element : `${fwd}, ${element}`}\r\n`;
  } else {
    out = `x-forwarded-for: ${peer}\r\nx-forwarded-proto: ${f.proto}\r\nx-forwarded-host: ${f.host}\r\nforwarded: ${element}\r\n`;
  }
  if (f.via !== null) out += `via: ${via === null ? f.via : `${via}, ${f.via}`}\r\n`;
  else if (via !== null) out += `via: ${via}\r\n`;
  return out;
}

const quoted = new Map<string, string>();

/**
 * RFC 7239 values are tokens or quoted strings; a host with a port (":") must be quoted. Memoised:
 * a proxy sees few distinct hosts, and this runs for every request.
 */
function quoteIfNeeded(v: string): string {
  let q = quoted.get(v);
  if (q === undefined) {
    q = isToken(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
    if (quoted.size >= 1024) quoted.clear();
    quoted.set(v, q);
  }
  return q;
}

/**
 * Forwarding-field blocks by listener, keyed by client (HTTP version and address) and Host, so that
 * connections from one client address to one host share one string. Cleared when it reaches
 * SHARED_BLOCKS entries: it saves memory and work and is never needed for correctness.
 */
const sharedBlocks = new WeakMap<object, Map<string, string>>();
const SHARED_BLOCKS = 4096;
/** Longer Host values are not shared (they would make the table large). */
const SHARED_HOST_MAX = 255;

/** The block for (`client`, `host`) on `listener`: shared when known, else made by `build`. */
export function sharedBlock(listener: object, client: string, host: string, build: () => string): string {
  if (host.length > SHARED_HOST_MAX) return build();
  let shared = sharedBlocks.get(listener);
  if (shared === undefined) sharedBlocks.set(listener, (shared = new Map()));
  const key = `${client} ${host}`;
  let block = shared.get(key);
  if (block === undefined) {
    if (shared.size >= SHARED_BLOCKS) shared.clear();
    shared.set(key, (block = build()));
  }
  return block;
}
