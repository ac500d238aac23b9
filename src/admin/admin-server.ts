import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StatsSnapshot } from './stats-snapshot.ts';
import { MetricsExporter } from './metrics.ts';

/** What the admin API may see: a snapshot function, nothing live. */
export interface AdminSource {
  snapshot(): StatsSnapshot | Promise<StatsSnapshot>;
  /** False while draining, so a load balancer in front stops sending traffic. */
  healthy(): boolean;
}

/**
 * The admin listener: `GET /stats` (the stats snapshot as JSON), `GET /metrics` (the same snapshot in
 * the Prometheus text format) and `GET /healthz`. It uses node:http
 * because it is not on the data path. Bind it to loopback: it has no authentication.
 */
export class AdminServer {
  private readonly server: http.Server;

  private readonly metrics = new MetricsExporter();

  constructor(source: AdminSource) {
    this.server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      if (path === '/stats') {
        Promise.resolve(source.snapshot()).then(
          (snap) => send(res, 200, 'application/json', `${JSON.stringify(snap, null, 2)}\n`),
          (err: Error) => send(res, 500, 'text/plain; charset=utf-8', `stats unavailable: ${err.message}\n`),
        );
      } else if (path === '/metrics') {
        Promise.resolve(source.snapshot())
          .then((snap) => this.metrics.render(snap))
          .then(
            (text) => send(res, 200, this.metrics.contentType, text),
            (err: Error) => send(res, 500, 'text/plain; charset=utf-8', `metrics unavailable: ${err.message}\n`),
          );
      } else if (path === '/healthz') {
        const ok = source.healthy();
        send(res, ok ? 200 : 503, 'text/plain; charset=utf-8', ok ? 'ok\n' : 'draining\n');
      } else {
        send(res, 404, 'text/plain; charset=utf-8', 'not found: try /stats, /metrics or /healthz\n');
      }
    });
    this.server.keepAliveTimeout = 5000;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }
}

function send(
  res: http.ServerResponse,
  status: number,
  type: string,
  body: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}
