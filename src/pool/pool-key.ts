/**
 * PoolKey: what makes two upstream connections interchangeable. Today an HTTP/1.1 connection is
 * defined by the resolved endpoint address and port only, so the key is "address:port" (IPv6 in
 * brackets). Later dimensions (TLS SNI, client certificate, ALPN protocol, source address) are
 * appended here, and only here, so that a connection is never reused for a peer it was not made for.
 * One pool exists per key; an endpoint owns exactly one pool.
 */
export type PoolKey = string;

export function poolKey(address: string, port: number): PoolKey {
  return address.indexOf(':') === -1 ? `${address}:${port}` : `[${address}]:${port}`;
}
