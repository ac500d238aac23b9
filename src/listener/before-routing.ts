import type { Socket } from 'node:net';
import { unmapIPv4 } from '../core/cidr.ts';
import type { AccessLog } from '../core/access-log.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { ListenerStats } from '../core/listener-stats.ts';
import type { Logger } from '../core/log.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { TcpOpening } from '../tunnel/tcp-tunnel.ts';
import { type Preamble, type PreambleOptions, PreambleReader } from './l4-preamble.ts';

/** What a listener reports a connection it closed before routing to. */
export interface RefusalContext {
  name: string;
  stats: ListenerStats;
  accessLog: AccessLog | null;
  log: Logger;
}

/** Closes a connection that never got routed (the limits, its preamble, no sni route): counted, logged. */
export function refuseConnection(ctx: RefusalContext, socket: Socket, code: ErrorCode, detail: string): void {
  const client = unmapIPv4(socket.remoteAddress ?? '');
  socket.destroy();
  ctx.stats.connectionsTotal++;
  ctx.stats.recordError(code);
  ctx.accessLog?.event({ listener: ctx.name, client, error: code, detail: detail || undefined });
  ctx.log.debug({ listener: ctx.name, client, code, detail }, 'connection closed before routing');
}

/**
 * Reads a connection's preamble for a listener: the socket counts in `pending` meanwhile (so drain and
 * shutdown see it), and `ready` runs only if the listener is not draining and the socket is still open.
 */
export function readPreamble(
  socket: Socket,
  opts: PreambleOptions,
  pending: Set<Socket>,
  ctx: RefusalContext & { draining: boolean },
  ready: (p: Preamble) => void,
): void {
  pending.add(socket);
  // A reset while the preamble is read: the reader hears no 'end', its deadline would keep the entry.
  const onClose = (): void => {
    pending.delete(socket);
  };
  socket.on('close', onClose);
  socket.on('error', destroyOnError);
  new PreambleReader(
    socket,
    opts,
    (p) => {
      pending.delete(socket);
      socket.off('close', onClose);
      socket.off('error', destroyOnError);
      if (ctx.draining || socket.destroyed) {
        socket.destroy();
        return;
      }
      ready(p);
    },
    (code, detail) => {
      pending.delete(socket);
      socket.off('close', onClose);
      refuseConnection(ctx, socket, code, detail);
    },
  );
}

/** A tunnel's opening from a read preamble: the client it names, the bytes to send first, the server name. */
export function openingOf(p: Preamble, cluster: Cluster): TcpOpening {
  return {
    cluster,
    client: p.client,
    clientPort: p.clientPort,
    destination: p.destination,
    destinationPort: p.destinationPort,
    first: p.rest.length > 0 ? p.rest : null,
    sni: p.hello?.serverName ?? null,
  };
}

function destroyOnError(this: Socket): void {
  this.destroy();
}
