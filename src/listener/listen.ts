import type net from 'node:net';
import type { AddressInfo } from 'node:net';

/** The backlog every listener asks for; the kernel silently caps it at net.core.somaxconn. */
export const LISTEN_BACKLOG = 4096;

/**
 * Binds a listener's server: backlog 4096 (the kernel caps it at somaxconn; `muxgate doctor` warns),
 * SO_REUSEPORT when workers share the address. Rejects with the bind error (e.g. EADDRINUSE).
 */
export function listenOn(server: net.Server, host: string, port: number, reusePort: boolean): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: LISTEN_BACKLOG, reusePort }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
