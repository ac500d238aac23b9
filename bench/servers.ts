// Config generation and process start/stop for the backend and the proxies.
//
// Every server runs as a single process (one worker, one thread) pinned with
// taskset; `taskset` execs the server, so the pid we hold is the server's own
// pid (used for RSS and for stopping it). The exception is the `workers`
// scenario (`ProxyOptions.workers`): there the pid is the master / primary.

import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTracked, stopTracked, type Tracked } from './procs.ts';
import { RESPONSE_12B, RESPONSE_64K_BYTES, type ScenarioCheck } from './scenarios.ts';

export const PROXY_NAMES = ['muxgate', 'nginx', 'haproxy', 'http-proxy'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

export const BACKEND_PORT = 18100;
/** the backend's second listen port: the same server block over h2c (prior knowledge), for the h2-upstream figure */
export const BACKEND_H2C_PORT = 18150;
export const PROXY_PORTS: Record<ProxyName, number> = {
  muxgate: 18101,
  nginx: 18102,
  haproxy: 18103,
  'http-proxy': 18104,
};

/** taskset CPU lists: proxies alone on core 0, wrk and the backend share core 1. */
export const PROXY_CPU = '0';
export const LOAD_CPU = '1';
/** every core: a process started with this is not pinned */
export const ALL_CPUS = `0-${os.availableParallelism() - 1}`;

/** Variations on a proxy's standard setup, for the scenarios that need another one. */
export interface ProxyOptions {
  /** names this instance's config and log files (`<proxy>-<tag>`), so they do not overwrite the standard ones */
  tag?: string;
  /** listen port (default PROXY_PORTS[name]) */
  port?: number;
  /** taskset CPU list (default PROXY_CPU) */
  cpu?: string;
  /** muxgate `workers`; nginx `worker_processes` with a master process and `listen … reuseport` */
  workers?: number;
  /** muxgate admin API port (default: admin off) */
  adminPort?: number;
  /** downstream connections it must hold at once: raises nginx `worker_connections` and HAProxy `maxconn` */
  maxConnections?: number;
  /**
   * The listener speaks HTTP/2 with prior knowledge in cleartext (h2c) instead of HTTP/1.1: muxgate
   * `protocol: http2`, nginx `listen … http2`, HAProxy `bind … proto h2`; at most H2_MAX_STREAMS streams per connection.
   */
  h2cListener?: boolean;
  /** nginx `upstream { keepalive N; }` (default 64) */
  upstreamKeepalive?: number;
  /** muxgate: the cluster's `protocol` (default http1); HAProxy: `http2` adds `proto h2` to its server line */
  upstreamProtocol?: 'http1' | 'http2';
  /** the backend port proxied to (default BACKEND_PORT) */
  backendPort?: number;
  /**
   * Pass WebSockets through (the `ws` figure): muxgate's route gets `upgrades: [websocket]`, HAProxy
   * `timeout tunnel 1h` (`mode http` handles the Upgrade natively). muxgate and haproxy only.
   */
  websocket?: boolean;
  /**
   * Write an access log to this file (the `access-log` figure): muxgate its default format and batching,
   * nginx `access_log <file> combined buffer=64k`. muxgate and nginx only; default: no access log.
   */
  accessLog?: string;
  /**
   * muxgate only (the `resilience` figure): the route retries (attempts 3 on connect failures, refused
   * streams, resets and gateway errors, a per-try timeout), the cluster has an HTTP health check every
   * second and circuit breakers (with limits the load never reaches).
   */
  resilience?: boolean;
}

/** SETTINGS_MAX_CONCURRENT_STREAMS of the h2c listeners: muxgate's and HAProxy's default, set on nginx (default 128) */
export const H2_MAX_STREAMS = 100;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export interface ServerSpec {
  name: string;
  port: number;
  cpu: string;
  command: string;
  args: string[];
  /** extra log files worth showing when the server fails (e.g. nginx error_log) */
  logFiles: string[];
}

export interface RunningServer {
  spec: ServerSpec;
  tracked: Tracked;
  stdoutPath: string;
  stderrPath: string;
}

/** Error raised when a server cannot be started; `details` holds the tail of its output. */
export class StartError extends Error {
  details: string;
  constructor(message: string, details: string) {
    super(message);
    this.details = details;
  }
}

// ---------------------------------------------------------------------------
// config generation (pure functions returning file contents)

interface NginxProcessOptions {
  workers?: number | undefined;
  maxConnections?: number | undefined;
}

export function nginxCommon(dir: string, name: string, opts: NginxProcessOptions = {}): string {
  const workers = opts.workers ?? 1;
  // worker_connections counts upstream connections too; it is preallocated, so only raise it when needed
  const connections = Math.max(8192, (opts.maxConnections ?? 0) + 1024);
  const rlimit = Math.max(16384, connections);
  // One process unless asked for workers: several need the master process. As root, the master would
  // run its workers as `nobody`; keep them root like the single-process setup.
  const processes =
    workers > 1
      ? `master_process on;
worker_processes ${workers};
${process.getuid?.() === 0 ? 'user root;\n' : ''}`
      : `master_process off;
worker_processes 1;
`;
  return `daemon off;
${processes}pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}.error.log`)} warn;
worker_rlimit_nofile ${rlimit};
events {
  worker_connections ${connections};
}
`;
}

export function nginxHttpCommon(dir: string, name: string): string {
  const tmp = join(dir, `${name}-tmp`);
  return `  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  # wrk and the proxies keep their connections for the whole run
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
`;
}

/**
 * Backend: GET / -> "hello world\n", GET /64k -> 64 KiB static file,
 * POST /post (body read and discarded) -> "hello world\n". With `h2cPort`, the same server block
 * also listens there for HTTP/2 with prior knowledge (keepalive_requests/keepalive_timeout apply to
 * HTTP/2 connections too since nginx 1.19.7).
 */
export function backendNginxConfig(
  dir: string,
  port: number,
  h2cPort?: number,
  tls?: { port: number; cert: string; key: string },
): string {
  const body = JSON.stringify(RESPONSE_12B).slice(1, -1); // "hello world\n" with the \n escape nginx understands
  return `${nginxCommon(dir, 'backend')}http {
${nginxHttpCommon(dir, 'backend')}  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port} backlog=4096;
${
  tls === undefined
    ? ''
    : `    # TLS for the passthrough figure (the proxies in front do not decrypt)
    listen 127.0.0.1:${tls.port} backlog=4096 ssl;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
`
}${h2cPort === undefined ? '' : `    # h2c with prior knowledge only (nginx < 1.25.1 does not tell HTTP/1.1 from h2c on one port)\n    listen 127.0.0.1:${h2cPort} backlog=4096 http2;\n`}    root ${join(dir, 'www')};
    default_type application/octet-stream;
    location = / {
      default_type text/plain;
      return 200 "${body}";
    }
    location = /64k {
    }
    location = /post {
      client_body_buffer_size 64k;
      client_max_body_size 1m;
      default_type text/plain;
      return 200 "${body}";
    }
    # The cache figure's objects: the same answers, cacheable for a day (bench/cache.ts)
    location = /cached/12b {
      default_type text/plain;
      add_header Cache-Control "max-age=86400";
      return 200 "${body}";
    }
    location = /cached/64k {
      alias ${join(dir, 'www', '64k')};
      add_header Cache-Control "max-age=86400";
    }
  }
}
`;
}

/**
 * muxgate adds X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded and Via to every request
 * it forwards (a client's own values are replaced, so they cannot be turned off), and the backend
 * parses them. nginx and HAProxy are configured to add the same five (node-http-proxy its `xfwd` three),
 * so that every proxy asks the same work of the backend and of the load core it shares with wrk.
 */
export const FORWARDING_FIELDS =
  'every proxy adds X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded and Via, as muxgate always does ' +
  '(nginx `proxy_set_header`, HAProxy `option forwardfor` and `http-request set-header`; node-http-proxy `xfwd`: the X-Forwarded three)';

export function nginxProxyConfig(
  dir: string,
  port: number,
  backendPort: number,
  opts: NginxProcessOptions & {
    name?: string;
    h2c?: boolean | undefined;
    upstreamKeepalive?: number | undefined;
    accessLog?: string | undefined;
  } = {},
): string {
  const name = opts.name ?? 'nginx';
  // reuseport: one listen socket per worker, the kernel spreads connections like muxgate's workers
  const reuseport = (opts.workers ?? 1) > 1 ? ' reuseport' : '';
  // `listen … http2` without ssl: h2c with prior knowledge (nginx 1.22; from 1.25.1 `http2 on;` is the new spelling)
  const h2 = opts.h2c ? ' http2' : '';
  const h2Streams = opts.h2c ? `    http2_max_concurrent_streams ${H2_MAX_STREAMS};\n` : '';
  return `${nginxCommon(dir, name, opts)}http {
${nginxHttpCommon(dir, name)}  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive ${opts.upstreamKeepalive ?? 64};
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096${reuseport}${h2};
${h2Streams}${opts.accessLog === undefined ? '' : `    access_log ${opts.accessLog} combined buffer=64k;\n`}    # keep 16 KiB request bodies in memory
    client_body_buffer_size 64k;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # the forwarding fields muxgate adds to every request (FORWARDING_FIELDS): the backend reads as many behind each proxy
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header Forwarded "for=$remote_addr;host=\\"$http_host\\";proto=$scheme";
      proxy_set_header Via "1.1 nginx";
      # never spill responses to a temp file on disk (stream them instead)
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

export function haproxyConfig(
  port: number,
  backendPort: number,
  maxConnections = 0,
  h2c = false,
  websocket = false,
  h2Upstream = false,
): string {
  // HAProxy wants about 2 fds per maxconn (client + server side) and refuses to start when the fd
  // limit (20000 here) is lower: a small margin keeps 9,000 idle connections under it.
  return `global
  nbthread 1
  maxconn ${Math.max(4096, maxConnections + 256)}
${h2c ? `  tune.h2.max-concurrent-streams ${H2_MAX_STREAMS}\n` : ''}
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
${websocket ? '  # upgraded connections (WebSockets): idle timeout of the tunnel once the 101 went through\n  timeout tunnel 1h\n' : ''}
frontend fe
  bind 127.0.0.1:${port}${h2c ? ' proto h2' : ''}
  default_backend be

backend be
  # the forwarding fields muxgate adds to every request (FORWARDING_FIELDS): the backend reads as many behind each proxy
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded "for=%[src];host=\\"%[req.hdr(host)]\\";proto=http"
  http-request set-header Via "1.1 haproxy"
  server s1 127.0.0.1:${backendPort}${h2Upstream ? ' proto h2' : ''}
`;
}

export function muxgateConfig(
  port: number,
  backendPort: number,
  opts: {
    workers?: number | undefined;
    adminPort?: number | undefined;
    h2cListener?: boolean | undefined;
    upstreamProtocol?: 'http1' | 'http2' | undefined;
    websocket?: boolean | undefined;
    accessLog?: string | undefined;
    resilience?: boolean | undefined;
  } = {},
): string {
  const listenerProtocol = opts.h2cListener
    ? `    protocol: http2\n    http2: { max_concurrent_streams: ${H2_MAX_STREAMS} }\n`
    : '';
  const clusterProtocol = opts.upstreamProtocol === undefined ? '' : `    protocol: ${opts.upstreamProtocol}\n`;
  // WebSockets: an HTTP/1.1 Upgrade on a connection of its own per socket (cluster `websocket: http1`, the default)
  const upgrades = opts.websocket ? '\n        upgrades: [websocket]' : '';
  // idle_timeout as long as the other proxies' keep-alive timeouts (300 s); a short drain so stopping is quick
  const accessLog =
    opts.accessLog === undefined ? '{ enabled: false }' : `{ enabled: true, path: ${JSON.stringify(opts.accessLog)} }`;
  const retry = opts.resilience
    ? '\n        retry: { attempts: 3, on: [connect-failure, refused-stream, reset, gateway-error], per_try_timeout: 5s }'
    : '';
  const resilience = opts.resilience
    ? '    health_check: { path: /, interval: 1s }\n    circuit_breakers: { max_requests: 100000, max_pending: 100000, max_retries: 1000 }\n'
    : '';
  return `log_level: warn
access_log: ${accessLog}
workers: ${opts.workers ?? 1}
drain_timeout: 2s
admin: ${opts.adminPort === undefined ? 'false' : `{ address: "127.0.0.1:${opts.adminPort}" }`}
listeners:
  - name: bench
    address: 127.0.0.1:${port}
${listenerProtocol}    idle_timeout: 300s
    routes:
      - cluster: backend${upgrades}${retry}
clusters:
  backend:
${clusterProtocol}    endpoints: ["127.0.0.1:${backendPort}"]
    pool: { max_connections: 100 }
${resilience}`;
}

// ---------------------------------------------------------------------------
// specs: write the config files into `dir` and describe the command line

function writeConfig(dir: string, file: string, content: string): string {
  const path = join(dir, file);
  writeFileSync(path, content);
  return path;
}

export function nginxArgs(dir: string, name: string, conf: string): string[] {
  mkdirSync(join(dir, `${name}-tmp`), { recursive: true });
  // -e: error log used before the config is read (the compiled-in default is stderr)
  return ['-p', dir, '-e', join(dir, `${name}.error.log`), '-c', conf];
}

/** `h2cPort`: also serve everything over h2c with prior knowledge on that port (the h2-upstream figure). */
export function backendSpec(
  dir: string,
  h2cPort?: number,
  tls?: { port: number; cert: string; key: string },
): ServerSpec {
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, '64k'), Buffer.alloc(RESPONSE_64K_BYTES, 'x'));
  const conf = writeConfig(dir, 'backend.nginx.conf', backendNginxConfig(dir, BACKEND_PORT, h2cPort, tls));
  return {
    name: 'backend',
    port: BACKEND_PORT,
    cpu: LOAD_CPU,
    command: 'nginx',
    args: nginxArgs(dir, 'backend', conf),
    logFiles: [join(dir, 'backend.error.log')],
  };
}

/**
 * `opts.workers` is only for muxgate and nginx; `opts.adminPort` only for muxgate; `opts.upstreamProtocol` for
 * muxgate and HAProxy;
 * `opts.h2cListener` for all but http-proxy.
 */
export function proxySpec(name: ProxyName, dir: string, opts: ProxyOptions = {}): ServerSpec {
  const port = opts.port ?? PROXY_PORTS[name];
  const backendPort = opts.backendPort ?? BACKEND_PORT;
  const cpu = opts.cpu ?? PROXY_CPU;
  const id = opts.tag ? `${name}-${opts.tag}` : name;
  if (opts.workers !== undefined && opts.workers > 1 && name !== 'muxgate' && name !== 'nginx') {
    throw new Error(`${name}: the bench runs it as one process only`);
  }
  if (opts.h2cListener && name === 'http-proxy') throw new Error(`${name}: the bench has no HTTP/2 setup for it`);
  if (opts.upstreamProtocol !== undefined && name !== 'muxgate' && name !== 'haproxy') {
    throw new Error(`${name}: upstreamProtocol is a muxgate and HAProxy option`);
  }
  if (opts.resilience && name !== 'muxgate') throw new Error(`${name}: resilience is a muxgate option`);
  if (opts.accessLog !== undefined && name !== 'muxgate' && name !== 'nginx') {
    throw new Error(`${name}: the bench has no access-log setup for it`);
  }
  if (opts.websocket && name !== 'muxgate' && name !== 'haproxy') {
    throw new Error(`${name}: the bench has no WebSocket setup for it`);
  }
  switch (name) {
    case 'nginx': {
      const conf = writeConfig(
        dir,
        `${id}.conf`,
        nginxProxyConfig(dir, port, backendPort, { ...opts, name: id, h2c: opts.h2cListener }),
      );
      const args = nginxArgs(dir, id, conf);
      return { name: id, port, cpu, command: 'nginx', args, logFiles: [join(dir, `${id}.error.log`)] };
    }
    case 'haproxy': {
      const conf = writeConfig(
        dir,
        `${id}.cfg`,
        haproxyConfig(
          port,
          backendPort,
          opts.maxConnections,
          opts.h2cListener,
          opts.websocket,
          opts.upstreamProtocol === 'http2',
        ),
      );
      // -db: stay in the foreground, no daemon / master-worker
      return { name: id, port, cpu, command: 'haproxy', args: ['-db', '-f', conf], logFiles: [] };
    }
    case 'http-proxy': {
      const script = join(repoRoot, 'bench', 'http-proxy-server.ts');
      const args = [script, String(port), String(backendPort)];
      return { name: id, port, cpu, command: process.execPath, args, logFiles: [] };
    }
    case 'muxgate': {
      const conf = writeConfig(dir, `${id}.yaml`, muxgateConfig(port, backendPort, opts));
      // Same as `npx node bin/muxgate.js start -c <conf>`, minus the npx wrapper
      // process (so the pid we measure is muxgate's own): process.execPath is
      // the npm-installed node 26 that runs this harness.
      const args = [...MUXGATE_NODE_FLAGS, join(repoRoot, 'bin', 'muxgate.js'), 'start', '-c', conf];
      // MUXGATE_NODE_ARGS="…": Node options for muxgate only (e.g. --trace-gc, which NODE_OPTIONS refuses)
      const extra = process.env.MUXGATE_NODE_ARGS;
      // after muxgate's own flags, so that one given here wins (V8 takes the last)
      if (extra !== undefined && extra !== '')
        args.splice(MUXGATE_NODE_FLAGS.length, 0, ...extra.split(' ').filter((a) => a !== ''));
      return { name: id, port, cpu, command: process.execPath, args, logFiles: [] };
    }
  }
}

// ---------------------------------------------------------------------------
// process handling

/** Throws a clear error when something already listens on 127.0.0.1:port. */
export async function assertPortFree(port: number, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `port ${port} (${what}) is already in use; stop whatever listens there (ss -ltnp 'sport = :${port}')`
            : `cannot check port ${port} (${what}): ${err.message}`,
        ),
      );
    });
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

function tail(path: string, max = 3000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > max ? `…${text.slice(-max)}` : text;
  } catch {
    return '';
  }
}

/** Collected output of a server: stderr, stdout and its extra log files. */
export function serverOutput(s: RunningServer): string {
  const parts: string[] = [];
  for (const [label, path] of [
    ['stderr', s.stderrPath],
    ['stdout', s.stdoutPath],
    ...s.spec.logFiles.map((f) => [f.split('/').pop() ?? f, f] as const),
  ] as const) {
    const text = existsSync(path) ? tail(path).trim() : '';
    if (text) parts.push(`--- ${label} ---\n${text}`);
  }
  return parts.join('\n') || '(no output)';
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The Node flags muxgate runs with: the ones on the shebang of bin/muxgate.js and in `npm start`
 * (test/cli/node-flags.test.ts keeps the three equal). Given here because the bench runs
 * `node bin/muxgate.js` (no shebang) so that the pid it measures is muxgate's own.
 */
export const MUXGATE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** Starts a server pinned to its CPU and waits until it accepts TCP connections. */
export async function startServer(spec: ServerSpec, logDir: string, timeoutMs = 15_000): Promise<RunningServer> {
  const stdoutPath = join(logDir, `${spec.name}.stdout.log`);
  const stderrPath = join(logDir, `${spec.name}.stderr.log`);
  const out = openSync(stdoutPath, 'w');
  const err = openSync(stderrPath, 'w');
  let tracked: Tracked;
  try {
    tracked = spawnTracked(spec.name, 'taskset', ['-c', spec.cpu, spec.command, ...spec.args], {
      stdio: ['ignore', out, err],
      cwd: repoRoot,
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const server: RunningServer = { spec, tracked, stdoutPath, stderrPath };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (tracked.exit) {
      const how = tracked.exit.signal ?? `code ${tracked.exit.code}`;
      throw new StartError(`${spec.name} exited during startup (${how})`, serverOutput(server));
    }
    if (await tryConnect(spec.port)) {
      if (tracked.exit) continue; // raced with its exit: report that instead
      return server;
    }
    if (Date.now() > deadline) {
      await stopTracked(tracked);
      throw new StartError(
        `${spec.name} did not accept connections on port ${spec.port} within ${timeoutMs} ms`,
        serverOutput(server),
      );
    }
    await sleep(50);
  }
}

export async function stopServer(s: RunningServer): Promise<void> {
  await stopTracked(s.tracked);
}

/** One request on a fresh connection; returns an error message, or undefined when the response is as expected. */
export function checkEndpoint(port: number, path: string, check: ScenarioCheck): Promise<string | undefined> {
  return new Promise((resolve) => {
    const body = check.requestBytes ? Buffer.alloc(check.requestBytes, 'a') : undefined;
    const headers: http.OutgoingHttpHeaders = body
      ? { 'content-type': 'application/octet-stream', 'content-length': body.length }
      : {};
    const req = http.request(
      { host: '127.0.0.1', port, path, method: check.method, headers, agent: false, timeout: 5000 },
      (res) => {
        let n = 0;
        res.on('data', (chunk: Buffer) => {
          n += chunk.length;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) resolve(`${check.method} ${path}: status ${res.statusCode}`);
          else if (n !== check.responseBytes)
            resolve(`${check.method} ${path}: ${n} body bytes, expected ${check.responseBytes}`);
          else resolve(undefined);
        });
        res.on('error', (e) => resolve(`${check.method} ${path}: ${e.message}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout after 5 s')));
    req.on('error', (e) => resolve(`${check.method} ${path}: ${e.message}`));
    req.end(body);
  });
}
