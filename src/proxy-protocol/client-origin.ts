/**
 * ClientOrigin: the two ends of a client's connection as muxgate passes them on in a PROXY header to
 * an upstream (a cluster's `send_proxy_protocol`): the client (a PROXY header's source when the
 * listener accepted one, else the socket's peer) and the address it connected to. The header an
 * upstream connection starts with names one client connection, so such a connection may only carry
 * that client connection's requests: `originKey` is what an HTTP/1.1 pool keys its connections on.
 */
import type { Buffer } from 'node:buffer';
import { isIP, type Socket } from 'node:net';
import { unmapIPv4 } from '../core/cidr.ts';
import { encodeProxyHeaderV1, encodeProxyHeaderV1Unknown, encodeProxyHeaderV2 } from './proxy-header.ts';

export interface ClientOrigin {
  client: string;
  clientPort: number;
  /** Where the client connected to: a PROXY header's destination, else our local address. */
  destination: string;
  destinationPort: number;
  /** `originKey`'s memo. */
  key?: string;
}

/** The origin a PROXY header (or a preamble read from one) named: a copy of its four fields only. */
export function originOf(o: ClientOrigin): ClientOrigin {
  return { client: o.client, clientPort: o.clientPort, destination: o.destination, destinationPort: o.destinationPort };
}

/** The origin of a connection nobody put a PROXY header before: its socket's two ends. */
export function socketOrigin(socket: Socket): ClientOrigin {
  return {
    client: unmapIPv4(socket.remoteAddress ?? ''),
    clientPort: socket.remotePort ?? 0,
    destination: unmapIPv4(socket.localAddress ?? ''),
    destinationPort: socket.localPort ?? 0,
  };
}

/** The pool key of the connections that may carry this client connection's requests. */
export function originKey(o: ClientOrigin): string {
  if (o.key === undefined) o.key = `${o.client} ${o.clientPort} ${o.destination} ${o.destinationPort}`;
  return o.key;
}

/**
 * The header to send first on an upstream connection made for `o`. Without two IP addresses (a unix
 * socket peer) there is nothing to tell: v1 says UNKNOWN, v2 LOCAL, and the upstream uses the
 * connection's own addresses.
 */
export function proxyHeaderFor(version: 'v1' | 'v2', o: ClientOrigin): Buffer {
  const src = { address: o.client, port: o.clientPort };
  const dst = { address: o.destination, port: o.destinationPort };
  if (isIP(src.address) === 0 || isIP(dst.address) === 0) {
    return version === 'v1' ? encodeProxyHeaderV1Unknown() : encodeProxyHeaderV2({ command: 'local' });
  }
  return version === 'v1'
    ? encodeProxyHeaderV1(src, dst)
    : encodeProxyHeaderV2({ command: 'proxy', source: src, destination: dst });
}
