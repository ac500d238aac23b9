import type net from 'node:net';
import { type ConnectionFailure, type ConnectionHandler, Http2Connection } from '../http2/connection.ts';
import { PROTOCOL_ERROR } from '../http2/frame.ts';
import type { Http2Stream, StreamSink } from '../http2/stream.ts';
import { UPSTREAM_FLOODS } from '../pool/h2-upstream-connection.ts';

/**
 * One HTTP/2 health check on a connected socket (h2c with prior knowledge, or TLS after ALPN said h2):
 * muxgate's own engine in the client role, one GET, and the `:status` of the response head. The body
 * is not read: the connection is destroyed once the answer (or the failure) is known.
 */

/** Small and fixed: a check needs one stream and a response head. */
const PROBE_OPTIONS = {
  maxConcurrentStreams: 1,
  initialWindowSize: 65_535,
  connectionWindowSize: 65_535,
  maxHeaderListSize: 16 * 1024,
  maxHeaderBlockBytes: 32 * 1024,
  headerTableSize: 4096,
  enableConnectProtocol: false,
  settingsTimeoutMs: 10_000,
  stallTimeoutMs: 10_000,
  floods: UPSTREAM_FLOODS,
};

export function probeH2(
  socket: net.Socket,
  scheme: 'http' | 'https',
  authority: string,
  path: string,
  done: (status: number | null, error: string | null) => void,
): void {
  let answered = false;
  let conn: Http2Connection | null = null;
  const answer = (status: number | null, error: string | null) => {
    if (answered) return;
    answered = true;
    done(status, error);
    // Out of the engine's own callback: the connection (and its socket) go at once.
    const c = conn;
    if (c !== null) queueMicrotask(() => c.destroy());
  };
  const sink: StreamSink = {
    onHeaders(fields: readonly string[]) {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (fields[i] !== ':status') continue;
        const status = Number(fields[i + 1]);
        // Interim (1xx) heads come first; the final one decides.
        if (status >= 200) answer(status, null);
        return;
      }
      answer(null, 'a response head without :status');
    },
    onData() {},
    onEnd() {
      answer(null, 'stream ended before a response head');
    },
    onReset(code: number) {
      answer(null, `stream reset (HTTP/2 error ${code})`);
    },
    onWritable() {},
  };
  const handler: ConnectionHandler = {
    onStream(s: Http2Stream) {
      s.reset(PROTOCOL_ERROR); // a server does not open streams towards a client
    },
    onGoaway(_last: number, code: number) {
      answer(null, `GOAWAY (HTTP/2 error ${code})`);
    },
    onClose(failure: ConnectionFailure | null) {
      answer(null, failure === null ? 'connection closed' : `${failure.code}: ${failure.detail}`);
    },
  };
  conn = new Http2Connection(socket, 'client', handler, PROBE_OPTIONS);
  conn.start(null);
  const stream = conn.request(
    [':method', 'GET', ':scheme', scheme, ':authority', authority, ':path', path, 'user-agent', 'muxgate-health-check'],
    true,
    sink,
  );
  if (stream === null) answer(null, 'the connection refused a stream');
}
