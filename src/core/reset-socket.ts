import type { Socket } from 'node:net';

/**
 * Ends a socket abruptly: a TCP RST where the handle allows one, so the peer sees ECONNRESET as it
 * would without a proxy. `resetAndDestroy` needs a plain TCP handle (a TLS socket's handle is the TLS
 * layer: it throws ERR_INVALID_HANDLE_TYPE) and fails with EINVAL once our FIN is queued, after which
 * Node drops the handle without closing it (the fd leaks and the process cannot exit). In those cases
 * the socket is destroyed instead: the peer sees the connection end without the rest of the stream.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting || socket.writableEnded || (socket as { encrypted?: boolean }).encrypted === true) {
    socket.destroy();
    return;
  }
  socket.resetAndDestroy();
}
