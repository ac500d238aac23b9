import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EndpointCommand } from '../cluster/endpoint-command.ts';
import type { AdminCommand, AdminResult } from '../runtime/admin-command.ts';
import { parsePurge } from '../cache/cache-purge.ts';
import type { Config } from '../config/schema.ts';
import type { ReloadOutcome } from '../runtime/config-reloader.ts';
import { bearerMatches, isLoopback } from './admin-token.ts';
import { DASHBOARD_HTML } from './dashboard-page.ts';
import { MetricsExporter } from './metrics.ts';
import { redactConfig } from './redact.ts';
import type { StatsSnapshot } from './stats-snapshot.ts';

/** What the admin API may see and do: a snapshot, the config, and the few operations below. Nothing live. */
export interface AdminSource {
  snapshot(): StatsSnapshot | Promise<StatsSnapshot>;
  /** False while draining, so a load balancer in front stops sending traffic. */
  healthy(): boolean;
  /** The running config (GET /config shows it with secrets redacted). */
  config?(): Config;
  reload?(): Promise<ReloadOutcome>;
  command?(cmd: AdminCommand): Promise<AdminResult>;
}

export interface AdminOptions {
  /** Bearer token every request must carry; null: none (then POSTs are refused off loopback). */
  token: string | null;
  /** How often GET /events sends a snapshot (the dashboard's refresh). */
  eventIntervalMs?: number;
}

/** Largest request body the admin API reads (a weight is a few bytes). */
const MAX_BODY = 4096;
const ENDPOINT_PATH = /^\/clusters\/([^/]+)\/endpoints\/([^/]+)\/(weight|drain|undrain)$/;

/**
 * The admin listener (node:http: it is not on the data path).
 * GET: / (the live dashboard), /events (the snapshot as server-sent events), /stats (JSON snapshot),
 * /metrics (Prometheus), /healthz, /config (secrets redacted), /listeners, /clusters, /ports.
 * POST: /reload, /clusters/C/endpoints/E/weight ({"weight": N}), .../drain, .../undrain,
 * /cache/purge ({"url"|"prefix"|"tag": ..., "zone"?: ...}), /memory/trim.
 * Errors are JSON `{ "error": code, "message": ... }` with stable codes.
 */
export class AdminServer {
  private readonly server: http.Server;
  private readonly metrics = new MetricsExporter();
  private readonly source: AdminSource;
  private readonly token: string | null;
  private loopback = true;
  private readonly eventIntervalMs: number;

  constructor(source: AdminSource, opts: AdminOptions = { token: null }) {
    this.source = source;
    this.token = opts.token;
    this.eventIntervalMs = opts.eventIntervalMs ?? 1000;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => fail(res, 500, 'admin_error', err.message));
    });
    this.server.keepAliveTimeout = 5000;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // The dashboard page itself holds no data (it fetches /events with the token), and a browser
    // cannot add a header to a navigation: it is the one path served without the token.
    const page = path === '/' && (req.method === 'GET' || req.method === 'HEAD');
    if (!page && this.token !== null && !bearerMatches(req.headers.authorization, this.token)) {
      res.setHeader('www-authenticate', 'Bearer realm="muxgate admin"');
      fail(res, 401, 'admin_unauthorized', 'this admin API needs Authorization: Bearer <admin token>');
      return;
    }
    if (req.method === 'POST') {
      if (this.token === null && !this.loopback) {
        fail(
          res,
          403,
          'admin_token_required',
          'the admin API listens beyond loopback: set admin.token to allow changes',
        );
        return;
      }
      await this.post(path, req, res);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD, POST');
      fail(res, 405, 'method_not_allowed', `${req.method} is not supported`);
      return;
    }
    await this.get(path, res);
  }

  private async get(path: string, res: http.ServerResponse): Promise<void> {
    switch (path) {
      case '/':
        send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML, {
          'cache-control': 'no-store',
          'content-security-policy':
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        });
        return;
      case '/events':
        this.events(res);
        return;
      case '/healthz': {
        const ok = this.source.healthy();
        send(res, ok ? 200 : 503, 'text/plain; charset=utf-8', ok ? 'ok\n' : 'draining\n');
        return;
      }
      case '/metrics':
        send(res, 200, this.metrics.contentType, await this.metrics.render(await this.source.snapshot()));
        return;
      case '/stats':
        json(res, 200, await this.source.snapshot());
        return;
      case '/listeners':
        json(res, 200, (await this.source.snapshot()).listeners);
        return;
      case '/clusters':
        json(res, 200, (await this.source.snapshot()).clusters);
        return;
      case '/ports':
        json(res, 200, (await this.source.snapshot()).ports);
        return;
      case '/config': {
        const config = this.source.config?.();
        if (config === undefined) fail(res, 404, 'not_found', 'no config to show');
        else json(res, 200, redactConfig(config));
        return;
      }
      default:
        fail(res, 404, 'not_found', 'try /, /stats, /metrics, /healthz, /config, /listeners, /clusters or /ports');
    }
  }

  private async post(path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    if (body === null) {
      fail(res, 413, 'body_too_large', `admin request bodies are at most ${MAX_BODY} bytes`);
      return;
    }
    if (path === '/reload') {
      if (this.source.reload === undefined) {
        fail(res, 404, 'not_found', 'reload is not available here');
        return;
      }
      const outcome = await this.source.reload();
      if (outcome.ok) json(res, 200, { ok: true, ...outcome.summary });
      else {
        const status = outcome.error === 'config_invalid' ? 400 : outcome.error === 'reload_unavailable' ? 409 : 500;
        json(res, status, { error: outcome.error, message: outcome.problems.join('\n'), problems: outcome.problems });
      }
      return;
    }
    if (path === '/memory/trim' && this.source.command !== undefined) {
      const r = await this.source.command({ op: 'trim' });
      if (r.ok) json(res, 200, { ok: true, trimmed: 'trimmed' in r ? r.trimmed : 0 });
      else fail(res, 501, r.error, 'this Node cannot run a footprint-reducing GC');
      return;
    }
    if (path === '/cache/purge' && this.source.command !== undefined) {
      const cmd = parsePurge(body);
      if (cmd === null) {
        fail(
          res,
          400,
          'bad_request',
          'expected a JSON body with one of "url", "prefix" or "tag" (a string), and optionally "zone"',
        );
        return;
      }
      const r = await this.source.command(cmd);
      if (r.ok) json(res, 200, { ok: true, purged: 'purged' in r ? r.purged : 0 });
      else fail(res, 404, r.error, `no cache zone ${cmd.zone ?? ''}`);
      return;
    }
    const m = ENDPOINT_PATH.exec(path);
    if (m === null || this.source.command === undefined) {
      fail(
        res,
        404,
        'not_found',
        'POST /reload, /cache/purge, /memory/trim, /clusters/C/endpoints/E/weight, /drain or /undrain',
      );
      return;
    }
    const cluster = decodeURIComponent(m[1]!);
    const endpoint = decodeURIComponent(m[2]!);
    let cmd: EndpointCommand;
    if (m[3] === 'weight') {
      const weight = parseWeight(body);
      if (weight === null) {
        fail(res, 400, 'bad_request', 'expected a JSON body {"weight": N} with N an integer from 1 to 1000');
        return;
      }
      cmd = { op: 'weight', cluster, endpoint, weight };
    } else {
      cmd = { op: 'drain', cluster, endpoint, drained: m[3] === 'drain' };
    }
    const r = await this.source.command(cmd);
    if (r.ok) json(res, 200, { ok: true, ...cmd });
    else
      fail(
        res,
        404,
        r.error,
        `${r.error === 'unknown_cluster' ? `no cluster ${cluster}` : `no endpoint ${endpoint} in cluster ${cluster}`}`,
      );
  }

  /** Server-sent events: the stats snapshot now and every eventIntervalMs, until the client goes. */
  private events(res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    let busy = false;
    const tick = () => {
      if (busy) return;
      busy = true;
      Promise.resolve(this.source.snapshot()).then(
        (snap) => {
          busy = false;
          res.write(`data: ${JSON.stringify(snap)}\n\n`);
        },
        (err: Error) => {
          busy = false;
          res.write(`event: error\ndata: ${JSON.stringify(err.message)}\n\n`);
        },
      );
    };
    tick();
    const timer = setInterval(tick, this.eventIntervalMs);
    res.on('close', () => clearInterval(timer));
  }

  /** `reusePort`: during an upgrade the old and the new process both hold the admin address. */
  listen(host: string, port: number, reusePort = false): Promise<AddressInfo> {
    this.loopback = isLoopback(host);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, reusePort }, () => {
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

function parseWeight(body: string): number | null {
  try {
    const v = (JSON.parse(body) as { weight?: unknown }).weight;
    return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1000 ? v : null;
  } catch {
    return null;
  }
}

/** The body as text, or null past MAX_BODY. */
function readBody(req: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        resolve(null);
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(size > MAX_BODY ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value, null, 2)}\n`);
}

function fail(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.setHeader('muxgate-error', code);
  json(res, status, { error: code, message });
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
