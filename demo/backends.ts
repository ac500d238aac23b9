import http from 'node:http';

/** A demo upstream that answers every request with a small JSON description of what it received. */
export function startDemoBackend(name: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = `${JSON.stringify(
        {
          backend: name,
          method: req.method,
          url: req.url,
          body_bytes: bytes,
          forwarded: {
            'x-forwarded-for': req.headers['x-forwarded-for'],
            'x-forwarded-proto': req.headers['x-forwarded-proto'],
            'x-forwarded-host': req.headers['x-forwarded-host'],
            forwarded: req.headers.forwarded,
            via: req.headers.via,
          },
        },
        null,
        2,
      )}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
