import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

export interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  trailers: IncomingHttpHeaders | null;
}

/** Connects a node:http2 client session (h2c, or TLS with `ca`). */
export function h2connect(url: string, opts: http2.SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(url, opts);
    s.once('error', reject);
    s.once('remoteSettings', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/** One request on `session`; `body` (if any) is written and the stream ended. */
export function h2request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer | string | Buffer[],
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const noBody = body === undefined;
    const req = session.request({ ':path': '/', ...headers }, { endStream: noBody });
    const chunks: Buffer[] = [];
    let status = 0;
    let resHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | null = null;
    req.on('response', (h) => {
      status = Number(h[':status']);
      resHeaders = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: resHeaders, body: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
    req.on('close', () => {
      if (req.rstCode !== 0 && status === 0) reject(new Error(`stream reset with code ${req.rstCode}`));
    });
    if (Array.isArray(body)) {
      for (const b of body) req.write(b);
      req.end();
    } else if (!noBody) {
      req.end(body);
    }
  });
}
