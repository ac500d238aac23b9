// A second reference point for bench/analysis.md: like raw-forwarder.ts, but bytes move between the
// sockets' libuv handles directly (handle.onread, handle.writeBuffer), skipping net.Socket's stream layer,
// and every read lands in one shared buffer. RAW_OWN_BUFFERS=1: reads into Node's per-read buffers instead;
// RAW_SOCKET_WRITES=1: writes with socket.write instead. Internal Node API; a measuring tool, not a proxy.
//
//   node bench/raw-handle-forwarder.ts <listen port> <upstream port>
import net from 'node:net';

interface Handle {
  onread: (this: Handle, ab: ArrayBuffer | undefined) => void;
  readStart(): number;
  writeBuffer(req: null, b: Uint8Array): number | object;
  useUserBuffer(b: Uint8Array): void;
  close(): void;
}
const sw = (process as unknown as { binding(n: string): Record<string, unknown> }).binding('stream_wrap');
const state = sw.streamBaseState as Int32Array;
const kRead = sw.kReadBytesOrError as number;

const port = Number(process.argv[2]);
const upstream = Number(process.argv[3]);
const scratch = Buffer.allocUnsafe(65536);

const kOffset = sw.kArrayBufferOffset as number;
const ownBuffers = process.env.RAW_OWN_BUFFERS === '1';

function pipeTo(from: Handle, to: Handle, fromSock: net.Socket, toSock: net.Socket): void {
  if (!ownBuffers) from.useUserBuffer(scratch);
  from.onread = function onread(ab) {
    const n = state[kRead] ?? 0;
    if (n > 0) {
      const chunk = ab === undefined ? Buffer.from(scratch.subarray(0, n)) : Buffer.from(ab, state[kOffset], n);
      if (process.env.RAW_SOCKET_WRITES === '1') {
        toSock.write(chunk);
        return;
      }
      const r = to.writeBuffer(null, chunk);
      if (typeof r === 'object') (r as { oncomplete: () => void }).oncomplete = () => {};
      return;
    }
    if (n < 0) {
      fromSock.destroy();
      toSock.destroy();
    }
  };
  from.readStart();
}

net
  .createServer({ noDelay: true, pauseOnConnect: true }, (down) => {
    const up = net.connect({ port: upstream, host: '127.0.0.1', noDelay: true });
    down.on('error', () => {});
    up.on('error', () => {});
    up.on('connect', () => {
      const dh = (down as unknown as { _handle: Handle })._handle;
      const uh = (up as unknown as { _handle: Handle })._handle;
      up.pause();
      pipeTo(dh, uh, down, up);
      pipeTo(uh, dh, up, down);
    });
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
