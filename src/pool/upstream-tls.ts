import type net from 'node:net';
import tls from 'node:tls';

/**
 * TLS origination settings of a cluster, resolved at start (files read once). `servername` is both
 * the SNI sent and the name the certificate is verified against; undefined means the endpoint's host
 * when it is a name (never an IP: RFC 6066 forbids IP literals in SNI).
 */
export interface UpstreamTls {
  servername: string | undefined;
  /** CA certificates to trust; undefined = the system store (Node's bundled roots + NODE_EXTRA_CA_CERTS). */
  ca: Buffer | undefined;
  /** Client certificate and key for mutual TLS. */
  cert: Buffer | undefined;
  key: Buffer | undefined;
  /** False only with `insecure_skip_verify: true` (warned loudly at start). */
  rejectUnauthorized: boolean;
  minVersion: tls.SecureVersion;
}

/** What the handshake settled: the TLS socket and the ALPN protocol chosen ("h2", "http/1.1" or false). */
export type SecureDone = (err: Error | null, socket: tls.TLSSocket, alpn: string | false) => void;

/**
 * Runs a client TLS handshake over an already connected (and port-accounted) TCP socket. `alpn` is
 * offered in order of preference. `host` is the endpoint's configured name, used for SNI and
 * verification when `servername` is not set. The caller owns the returned socket: destroying it
 * aborts the handshake (done is then called with an error).
 */
export function secureUpstream(
  socket: net.Socket,
  t: UpstreamTls,
  host: string,
  alpn: readonly string[],
  done: SecureDone,
): tls.TLSSocket {
  const name = t.servername ?? host;
  const sni = isIpLiteral(name) ? undefined : name;
  const s = tls.connect({
    socket,
    servername: sni,
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    rejectUnauthorized: t.rejectUnauthorized,
    minVersion: t.minVersion,
    ALPNProtocols: [...alpn],
    // Verify against the configured name even when connecting by IP (SNI is then omitted).
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
  });
  let settled = false;
  const onError = (err: Error): void => {
    if (settled) return;
    settled = true;
    done(err, s, false);
  };
  s.once('error', onError);
  s.once('close', () => onError(new Error('connection closed during the TLS handshake')));
  s.once('secureConnect', () => {
    if (settled) return;
    settled = true;
    s.removeListener('error', onError);
    done(null, s, s.alpnProtocol ?? false);
  });
  return s;
}

function isIpLiteral(name: string): boolean {
  return /^[\d.]+$/.test(name) || name.includes(':');
}
