// Config generation and process start/stop for the backend and the proxies.
//
// Every server runs as a single process (one worker, one thread) pinned with
// taskset; `taskset` execs the server, so the pid we hold is the server's own
// pid (used for RSS and for stopping it).

import http from 'node:http';
import net from 'node:net';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTracked, stopTracked, type Tracked } from './procs.ts';
import { RESPONSE_12B, RESPONSE_64K_BYTES, type ScenarioCheck } from './scenarios.ts';

export const PROXY_NAMES = ['muxgate', 'nginx', 'haproxy', 'http-proxy'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

export const BACKEND_PORT = 18100;
export const PROXY_PORTS: Record<ProxyName, number> = {
  muxgate: 18101,
  nginx: 18102,
  haproxy: 18103,
  'http-proxy': 18104,
};

/** taskset CPU lists: proxies alone on core 0, wrk and the backend share core 1. */
export const PROXY_CPU = '0';
export const LOAD_CPU = '1';

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

function nginxCommon(dir: string, name: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, `${name}.pid`)};
error_log ${join(dir, `${name}.error.log`)} warn;
worker_rlimit_nofile 16384;
events {
  worker_connections 8192;
}
`;
}

function nginxHttpCommon(dir: string, name: string): string {
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
 * POST /post (body read and discarded) -> "hello world\n".
 */
export function backendNginxConfig(dir: string, port: number): string {
  const body = JSON.stringify(RESPONSE_12B).slice(1, -1); // "hello world\n" with the \n escape nginx understands
  return `${nginxCommon(dir, 'backend')}http {
${nginxHttpCommon(dir, 'backend')}  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    root ${join(dir, 'www')};
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
  }
}
`;
}

export function nginxProxyConfig(dir: string, port: number, backendPort: number): string {
  return `${nginxCommon(dir, 'nginx')}http {
${nginxHttpCommon(dir, 'nginx')}  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    # keep 16 KiB request bodies in memory
    client_body_buffer_size 64k;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # never spill responses to a temp file on disk (stream them instead)
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

export function haproxyConfig(port: number, backendPort: number): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s

frontend fe
  bind 127.0.0.1:${port}
  default_backend be

backend be
  server s1 127.0.0.1:${backendPort}
`;
}

export function muxgateConfig(port: number, backendPort: number): string {
  return `log_level: warn
access_log: { enabled: false }
admin: false
listeners:
  - name: bench
    address: 127.0.0.1:${port}
    routes:
      - cluster: backend
clusters:
  backend:
    endpoints: ["127.0.0.1:${backendPort}"]
    pool: { max_connections: 100 }
`;
}

// ---------------------------------------------------------------------------
// specs: write the config files into `dir` and describe the command line

function writeConfig(dir: string, file: string, content: string): string {
  const path = join(dir, file);
  writeFileSync(path, content);
  return path;
}

function nginxArgs(dir: string, name: string, conf: string): string[] {
  mkdirSync(join(dir, `${name}-tmp`), { recursive: true });
  // -e: error log used before the config is read (the compiled-in default is stderr)
  return ['-p', dir, '-e', join(dir, `${name}.error.log`), '-c', conf];
}

export function backendSpec(dir: string): ServerSpec {
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, '64k'), Buffer.alloc(RESPONSE_64K_BYTES, 'x'));
  const conf = writeConfig(dir, 'backend.nginx.conf', backendNginxConfig(dir, BACKEND_PORT));
  return {
    name: 'backend',
    port: BACKEND_PORT,
    cpu: LOAD_CPU,
    command: 'nginx',
    args: nginxArgs(dir, 'backend', conf),
    logFiles: [join(dir, 'backend.error.log')],
  };
}

export function proxySpec(name: ProxyName, dir: string): ServerSpec {
  const port = PROXY_PORTS[name];
  switch (name) {
    case 'nginx': {
      const conf = writeConfig(dir, 'nginx.conf', nginxProxyConfig(dir, port, BACKEND_PORT));
      const args = nginxArgs(dir, 'nginx', conf);
      return { name, port, cpu: PROXY_CPU, command: 'nginx', args, logFiles: [join(dir, 'nginx.error.log')] };
    }
    case 'haproxy': {
      const conf = writeConfig(dir, 'haproxy.cfg', haproxyConfig(port, BACKEND_PORT));
      // -db: stay in the foreground, no daemon / master-worker
      return { name, port, cpu: PROXY_CPU, command: 'haproxy', args: ['-db', '-f', conf], logFiles: [] };
    }
    case 'http-proxy': {
      const script = join(repoRoot, 'bench', 'http-proxy-server.ts');
      const args = [script, String(port), String(BACKEND_PORT)];
      return { name, port, cpu: PROXY_CPU, command: process.execPath, args, logFiles: [] };
    }
    case 'muxgate': {
      const conf = writeConfig(dir, 'muxgate.yaml', muxgateConfig(port, BACKEND_PORT));
      // Same as `npx node bin/muxgate.ts start -c <conf>`, minus the npx wrapper
      // process (so the pid we measure is muxgate's own): process.execPath is
      // the npm-installed node 26 that runs this harness.
      const args = [join(repoRoot, 'bin', 'muxgate.ts'), 'start', '-c', conf];
      return { name, port, cpu: PROXY_CPU, command: process.execPath, args, logFiles: [] };
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
