// The WebSocket echo backend of the `ws` figure (bench/ws.ts), in a process of its own that
// bench/servers.ts startServer pins to the load core. Two implementations:
//
// - `frames` (the default): node:http answers the Upgrade (101 with Sec-WebSocket-Accept), then
//   the socket is read as raw WebSocket frames: every complete frame the client sent is sent back
//   unmasked with the same FIN bit and opcode (a message in fragments comes back in the same
//   fragments), a ping comes back as a pong, a close as a close that ends the connection. All the
//   frames of one read go back in one write. Cheaper than `ws` on the load core, which it shares
//   with the clients: no message objects, no event per message, one write per read instead of one
//   per message, payloads unmasked 32 bits at a time.
// - `ws`: a `ws` WebSocketServer that sends every message back (one write per message).
//
// Neither compresses (no permessage-deflate). It runs until it is stopped (SIGTERM).
//
//   node bench/ws-backend.ts PORT [frames|ws]

import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const impl = process.argv[3] ?? 'frames';
if (!Number.isInteger(port) || port < 1 || port > 65535 || (impl !== 'frames' && impl !== 'ws')) {
  process.stderr.write(
    `usage: node bench/ws-backend.ts PORT [frames|ws], got ${JSON.stringify(process.argv.slice(2))}\n`,
  );
  process.exit(2);
}

const MAX_FRAME = 1024 * 1024;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Where one complete client frame lies in the read buffer. */
interface FrameAt {
  b0: number;
  len: number;
  /** offset of the masking key, or -1 when unmasked */
  maskAt: number;
  dataAt: number;
}

const headerBytes = (len: number): number => (len < 126 ? 2 : len < 65536 ? 4 : 10);

/**
 * Echoes the frames of one upgraded connection. Per read: find the complete frames, then build every
 * answer into one buffer, payloads copied and unmasked 32 bits at a time where they sit on a 4-byte
 * boundary (always for 1 KiB frames in an aligned buffer), and write it once.
 */
function echoFrames(socket: Duplex, head: Buffer): void {
  let buf: Buffer = Buffer.alloc(0);
  let closed = false;
  const frames: FrameAt[] = [];
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    frames.length = 0;
    let off = 0;
    let total = 0;
    while (!closed) {
      const avail = buf.length - off;
      if (avail < 2) break;
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (avail < 4) break;
        len = buf.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        if (avail < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        hdr = 10;
      }
      if (len > MAX_FRAME) {
        socket.destroy();
        return;
      }
      const masked = (b1 & 0x80) !== 0;
      const dataAt = off + hdr + (masked ? 4 : 0);
      if (buf.length < dataAt + len) break;
      off = dataAt + len;
      const opcode = b0 & 0x0f;
      if (opcode === 0xa) continue; // an unsolicited pong needs no answer
      frames.push({ b0, len, maskAt: masked ? off - len - 4 : -1, dataAt });
      total += headerBytes(len) + len;
      if (opcode === 0x8) closed = true;
    }
    const input = buf;
    buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
    if (frames.length === 0) {
      if (closed) socket.end();
      return;
    }
    // (small ones come from Node's buffer pool, whose slices start 8-byte aligned)
    const out = Buffer.allocUnsafe(total);
    const base = out.byteOffset;
    const words = (base & 3) === 0 ? new Uint32Array(out.buffer, base, total >> 2) : null;
    let w = 0;
    for (const f of frames) {
      const opcode = f.b0 & 0x0f;
      // the answer: same FIN bit and opcode (a ping answered by a pong), no mask
      out[w] = opcode === 0x9 ? (f.b0 & 0xf0) | 0xa : f.b0;
      const hdr = headerBytes(f.len);
      if (hdr === 2) out[w + 1] = f.len;
      else if (hdr === 4) {
        out[w + 1] = 126;
        out.writeUInt16BE(f.len, w + 2);
      } else {
        out[w + 1] = 127;
        out.writeBigUInt64BE(BigInt(f.len), w + 2);
      }
      const at = w + hdr;
      input.copy(out, at, f.dataAt, f.dataAt + f.len);
      if (f.maskAt >= 0) {
        let i = 0;
        if (words !== null && (at & 3) === 0) {
          // the key as a little-endian word XORs the 4 bytes of a word in order (x86 and arm are little-endian)
          const key = input.readUInt32LE(f.maskAt);
          const first = at >> 2;
          const n = f.len >> 2;
          for (let j = 0; j < n; j++) words[first + j] = (words[first + j]! ^ key) >>> 0;
          i = n << 2;
        }
        for (; i < f.len; i++) out[at + i] = out[at + i]! ^ input[f.maskAt + (i & 3)]!;
      }
      w = at + f.len;
    }
    socket.write(out);
    if (closed) socket.end();
  };
  socket.on('data', onData);
  // node:http sockets are half-open capable: without this, a client that leaves without a close frame
  // (FIN) would leave the connection, and the proxy's tunnel, open in the other direction
  socket.on('end', () => socket.end());
  socket.on('error', () => {});
  if (head.length > 0) onData(head);
}

function serveFrames(): void {
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'upgrade' });
    res.end('WebSocket only\n');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const key = req.headers['sec-websocket-key'];
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
    );
    (socket as import('node:net').Socket).setNoDelay(true);
    echoFrames(socket, head);
  });
  server.on('error', (err) => {
    process.stderr.write(`ws-backend: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ host: '127.0.0.1', port, backlog: 4096 });
}

function serveWs(): void {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port,
    backlog: 4096,
    perMessageDeflate: false,
    clientTracking: false,
    maxPayload: MAX_FRAME,
  });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      ws.send(data as Buffer, { binary: isBinary });
    });
    // a client that goes away abruptly (end of a run) is not an error worth a crash
    ws.on('error', () => {});
  });
  wss.on('error', (err) => {
    process.stderr.write(`ws-backend: ${err.message}\n`);
    process.exit(1);
  });
}

if (impl === 'frames') serveFrames();
else serveWs();

const stop = (): void => {
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
