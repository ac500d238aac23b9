// The RFC 8441 backend of the `ws-h2-idle` figure (bench/ws-h2.ts), in a process of its own that
// bench/servers.ts startServer pins to the load core: an HTTP/2 server in cleartext (h2c, prior
// knowledge; node:http2 is fine in a bench peer) that advertises SETTINGS_ENABLE_CONNECT_PROTOCOL.
//
// - extended CONNECT with `:protocol websocket`: answered 200; then every complete WebSocket frame the
//   client side sent comes back unmasked with the same first byte (a close comes back and ends the
//   stream); in the figure each stream carries one small message, then idles
// - GET /stats: {"sessions", "sessionsTotal", "streamsOpen", "streamsTotal", "peakStreamsPerSession"} as JSON
//   (what the harness checks: how many upstream connections and streams muxgate holds here)
// - anything else: 200 "ok\n"
//
// SETTINGS_MAX_CONCURRENT_STREAMS is left at Node's default (no practical limit), so the number of
// streams per connection is muxgate's own cap (the cluster's `http2.max_concurrent_streams`).
// It runs until it is stopped (SIGTERM).
//
//   node bench/ws-h2-backend.ts PORT

import { Buffer } from 'node:buffer';
import http2 from 'node:http2';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`usage: node bench/ws-h2-backend.ts PORT, got ${JSON.stringify(process.argv.slice(2))}\n`);
  process.exit(2);
}

const MAX_FRAME = 64 * 1024;

const counts = { sessions: 0, sessionsTotal: 0, streamsOpen: 0, streamsTotal: 0, peakStreamsPerSession: 0 };

/** Echoes the WebSocket frames of one extended CONNECT stream, unmasked. */
function echoFrames(stream: http2.ServerHttp2Stream): void {
  let buf: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const out: Buffer[] = [];
    let off = 0;
    let close = false;
    while (!close) {
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
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      const masked = (b1 & 0x80) !== 0;
      const dataAt = off + hdr + (masked ? 4 : 0);
      if (buf.length < dataAt + len) break;
      const reply = Buffer.allocUnsafe((len < 126 ? 2 : len < 65536 ? 4 : 10) + len);
      reply[0] = b0;
      let at = 2;
      if (len < 126) reply[1] = len;
      else if (len < 65536) {
        reply[1] = 126;
        reply.writeUInt16BE(len, 2);
        at = 4;
      } else {
        reply[1] = 127;
        reply.writeBigUInt64BE(BigInt(len), 2);
        at = 10;
      }
      for (let i = 0; i < len; i++) {
        const byte = buf[dataAt + i]!;
        reply[at + i] = masked ? byte ^ buf[off + hdr + (i & 3)]! : byte;
      }
      out.push(reply);
      off = dataAt + len;
      // a close frame: answered, then the stream ends
      if ((b0 & 0x0f) === 0x8) close = true;
    }
    buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
    if (out.length > 0) stream.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (close) stream.end();
  });
  // the client side ended (muxgate passes a client's FIN on as END_STREAM): end ours too, as a
  // WebSocket server closes a connection whose client went away without a close frame
  stream.on('end', () => stream.end());
}

const server = http2.createServer({ settings: { enableConnectProtocol: true } });
server.on('session', (session: http2.ServerHttp2Session) => {
  counts.sessions++;
  counts.sessionsTotal++;
  let open = 0;
  session.on('close', () => counts.sessions--);
  session.on('error', () => {});
  session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on('error', () => {});
    if (headers[':method'] === 'CONNECT' && headers[':protocol'] === 'websocket') {
      counts.streamsOpen++;
      counts.streamsTotal++;
      open++;
      counts.peakStreamsPerSession = Math.max(counts.peakStreamsPerSession, open);
      stream.on('close', () => {
        counts.streamsOpen--;
        open--;
      });
      stream.respond({ ':status': 200 });
      echoFrames(stream);
      return;
    }
    if (headers[':path'] === '/stats') {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify(counts));
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end('ok\n');
  });
});
server.listen(port, '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
