// node-http-proxy (npm `http-proxy`) reverse proxy used as a comparison point
// by bench/run.ts. Upstream keep-alive is enabled through a keep-alive Agent.
//
// usage: node bench/http-proxy-server.ts <listen port> <backend port>

import http from 'node:http';
import { createRequire } from 'node:module';

interface HttpProxy {
  web(req: http.IncomingMessage, res: http.ServerResponse): void;
  on(event: 'error', listener: (err: Error, req: http.IncomingMessage, res: unknown) => void): void;
}

interface HttpProxyModule {
  createProxyServer(options: { target: string; agent: http.Agent; xfwd?: boolean }): HttpProxy;
}

const require = createRequire(import.meta.url);
const httpProxy = require('http-proxy') as HttpProxyModule;

const port = Number(process.argv[2]);
const backendPort = Number(process.argv[3]);
if (!Number.isInteger(port) || !Number.isInteger(backendPort)) {
  console.error('usage: node bench/http-proxy-server.ts <listen port> <backend port>');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 100 });
// xfwd: X-Forwarded-For/-Port/-Proto, as the other proxies add forwarding fields (servers.ts FORWARDING_FIELDS)
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${backendPort}`, agent, xfwd: true });

proxy.on('error', (err, _req, res) => {
  console.error(`proxy error: ${err.message}`);
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway\n');
  } else if (res instanceof http.ServerResponse) {
    res.destroy();
  }
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1');

const shutdown = (): void => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
