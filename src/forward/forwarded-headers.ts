/**
 * X-Forwarded-For / -Proto / -Host, RFC 7239 Forwarded and Via for the upstream request.
 *
 * Forwarding headers are only as trustworthy as whoever wrote them: when the peer is one of the
 * configured trusted proxies its values are kept and ours appended; from anyone else they are
 * discarded and replaced, so a client cannot forge its address. Via is a trace, not a claim, and is
 * always appended (RFC 9110 §7.6.3).
 */
export interface ForwardedFacts {
  peer: string;
  proto: 'http' | 'https';
  /** The Host the client asked for, before any rewrite. */
  host: string;
  trusted: boolean;
  /** "1.1 muxgate", or null when Via is disabled. */
  via: string | null;
}

export function forwardedHeaders(lower: readonly string[], values: readonly string[], f: ForwardedFacts): string {
  let xff: string | null = null;
  let xfp: string | null = null;
  let xfh: string | null = null;
  let fwd: string | null = null;
  let via: string | null = null;
  for (let i = 0; i < lower.length; i++) {
    const n = lower[i]!;
    if (n.charCodeAt(0) === 0x78 /* x */) {
      if (n === 'x-forwarded-for') xff = xff === null ? values[i]! : `${xff}, ${values[i]}`;
      else if (n === 'x-forwarded-proto') xfp ??= values[i]!;
      else if (n === 'x-forwarded-host') xfh ??= values[i]!;
    } else if (n === 'forwarded') {
      fwd = fwd === null ? values[i]! : `${fwd}, ${values[i]}`;
    } else if (n === 'via') {
      via = via === null ? values[i]! : `${via}, ${values[i]}`;
    }
  }
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

/** RFC 7239 values are tokens or quoted strings; a host with a port (":") must be quoted. */
function quoteIfNeeded(v: string): string {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}
