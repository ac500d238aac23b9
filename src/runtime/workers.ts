import { fork } from 'node:child_process';
import cluster from 'node:cluster';
import net from 'node:net';
import { AdminServer } from '../admin/admin-server.ts';
import type { Config } from '../config/schema.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { mergeSnapshots } from '../admin/stats-merge.ts';
import type { StatsSnapshot } from '../admin/stats-snapshot.ts';
import { adminToken } from '../admin/admin-token.ts';
import { type AdminCommand, type AdminResult, combineResults } from './admin-command.ts';
import type { ReloadOutcome } from './config-reloader.ts';
import { reloadFromFile } from './config-reloader.ts';
import { writePidFile } from './pid-file.ts';
import type { ReloadSummary } from './reload.ts';
import type { MuxgateServer } from './server.ts';

const WORKER_ENV = 'MUXGATE_WORKER_ID';
const PORTS_ENV = 'MUXGATE_WORKER_PORTS';
const MODE_ENV = 'MUXGATE_WORKER_MODE';
/** Set to 1 to use the node:cluster fallback even where SO_REUSEPORT works (tests use it). */
const FORCE_CLUSTER_ENV = 'MUXGATE_FORCE_CLUSTER';

/** How workers share a listening address. */
export type WorkerMode = 'reuseport' | 'cluster';

/** In a worker: whether to bind with SO_REUSEPORT (false under the node:cluster fallback). */
export function workerUsesReusePort(): boolean {
  return process.env[MODE_ENV] !== 'cluster';
}

/** A worker process, whichever way it was started. */
interface WorkerHandle {
  pid: number | undefined;
  send(m: ToWorker): void;
  kill(signal: NodeJS.Signals): void;
  onMessage(f: (m: FromWorker) => void): void;
  onExit(f: (code: number | null, signal: string | null) => void): void;
}

/** In a worker: its index (0-based, kept across restarts), which picks its slice of every source port range. */
export function workerIndex(): number {
  return Number(process.env[WORKER_ENV] ?? 0);
}

export function isWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined;
}

type ToWorker =
  | { type: 'stats'; id: number }
  | { type: 'reload'; id: number }
  | { type: 'command'; id: number; cmd: AdminCommand };
type FromWorker =
  | { type: 'stats'; id: number; snapshot: StatsSnapshot }
  | { type: 'reloaded'; id: number; outcome: ReloadOutcome }
  | { type: 'commanded'; id: number; result: AdminResult }
  | { type: 'ready' };

/**
 * In a worker: listeners configured with port 0 take the port the primary reserved for them, so all
 * workers share one port (SO_REUSEPORT) instead of each binding a random one.
 */
export function applyWorkerPorts(config: Config): Config {
  const raw = process.env[PORTS_ENV];
  if (raw === undefined) return config;
  const ports = JSON.parse(raw) as Record<string, number>;
  return {
    ...config,
    listeners: config.listeners.map((l) => {
      const p = ports[l.name];
      return p === undefined ? l : { ...l, address: { ...l.address, port: p } };
    }),
  };
}

/** In a worker: tell the primary we listen, and answer its stats and reload requests over IPC. */
export function serveWorker(
  server: MuxgateServer,
  reload: () => Promise<ReloadOutcome>,
  command: (cmd: AdminCommand) => AdminResult,
): void {
  process.on('message', (m: ToWorker) => {
    if (m?.type === 'stats')
      process.send?.({ type: 'stats', id: m.id, snapshot: server.snapshot() } satisfies FromWorker);
    else if (m?.type === 'command')
      process.send?.({ type: 'commanded', id: m.id, result: command(m.cmd) } satisfies FromWorker);
    else if (m?.type === 'reload')
      void reload().then((outcome) => process.send?.({ type: 'reloaded', id: m.id, outcome } satisfies FromWorker));
  });
  // If the primary dies, do not linger as an orphan holding the port.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  process.send?.({ type: 'ready' } satisfies FromWorker);
}

/**
 * Binds port-0 listeners once in the primary (with SO_REUSEPORT) to learn the port all workers will
 * share. Returns null when the platform refuses SO_REUSEPORT: the caller falls back to node:cluster.
 */
async function reservePorts(config: Config): Promise<{ ports: Record<string, number>; release: () => void } | null> {
  const ports: Record<string, number> = {};
  const held: net.Server[] = [];
  const release = () => {
    for (const s of held) s.close();
  };
  // Probe every listener address (port 0, so nothing is taken), keeping the port-0 ones.
  for (const l of config.listeners) {
    const s = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen({ host: l.address.host, port: 0, reusePort: true }, () => resolve());
      });
    } catch {
      release();
      return null;
    }
    if (l.address.port === 0) {
      ports[l.name] = (s.address() as net.AddressInfo).port;
      held.push(s);
    } else {
      s.close();
    }
  }
  // Closed once every worker listens: until then the reservation keeps the port ours; after, the
  // primary must not hold a socket in the reuseport group or it would be handed connections.
  return { ports, release };
}

function forkWorker(mode: WorkerMode, env: NodeJS.ProcessEnv): WorkerHandle {
  if (mode === 'cluster') {
    cluster.setupPrimary({ exec: process.argv[1]!, args: process.argv.slice(2), silent: false });
    const w = cluster.fork(env);
    return {
      pid: w.process.pid,
      send: (m) => w.send(m),
      kill: (signal) => w.process.kill(signal),
      onMessage: (f) => w.on('message', f),
      onExit: (f) => w.on('exit', f),
    };
  }
  const child = fork(process.argv[1]!, process.argv.slice(2), { env, stdio: 'inherit' });
  return {
    pid: child.pid,
    send: (m) => child.send(m),
    kill: (signal) => child.kill(signal),
    onMessage: (f) => child.on('message', f),
    onExit: (f) => child.on('exit', f),
  };
}

/**
 * The primary: forks `n` workers running the same command line, restarts any that crash, serves the
 * admin API with stats summed across workers, and forwards SIGTERM/SIGINT for a graceful drain.
 */
export async function runPrimary(config: Config, n: number, configPath?: string): Promise<number> {
  const log = createLogger(config.log_level);
  const reserved = process.env[FORCE_CLUSTER_ENV] === '1' ? null : await reservePorts(config);
  const mode: WorkerMode = reserved === null ? 'cluster' : 'reuseport';
  const ports = reserved?.ports ?? {};
  const release = reserved?.release ?? (() => {});
  if (mode === 'cluster') {
    log.warn(
      'SO_REUSEPORT is not available: falling back to node:cluster (the primary accepts and hands out connections)',
    );
  }
  const workers = new Map<number, WorkerHandle>();
  let stopping = false;
  let readyCount = 0;
  let nextReq = 1;
  const waiting = new Map<number, (s: StatsSnapshot | null) => void>();
  const reloads = new Map<number, (o: ReloadOutcome) => void>();
  const commands = new Map<number, (r: AdminResult) => void>();
  let current = config;

  const spawn = (id: number) => {
    const child = forkWorker(mode, {
      ...process.env,
      [WORKER_ENV]: String(id),
      [PORTS_ENV]: JSON.stringify(ports),
      [MODE_ENV]: mode,
    });
    workers.set(id, child);
    child.onMessage((m: FromWorker) => {
      if (m?.type === 'stats') waiting.get(m.id)?.(m.snapshot);
      else if (m?.type === 'reloaded') reloads.get(m.id)?.(m.outcome);
      else if (m?.type === 'commanded') commands.get(m.id)?.(m.result);
      else if (m?.type === 'ready' && ++readyCount === n) {
        release();
        log.info({ workers: n, mode, pids: [...workers.values()].map((w) => w.pid) }, 'all workers listening');
      }
    });
    child.onExit((code, signal) => {
      workers.delete(id);
      if (stopping) return;
      log.error({ worker: id, pid: child.pid, code, signal }, 'worker exited; restarting');
      setTimeout(() => spawn(id), 250).unref();
    });
  };
  for (let i = 0; i < n; i++) spawn(i);
  log.info({ workers: n }, 'primary started');

  /** Every worker re-reads the (already checked) file and applies it; the first failure is reported. */
  /** An admin command applied by every worker (each has its own clusters and cache zones). */
  async function commandWorkers(cmd: AdminCommand): Promise<AdminResult> {
    const results = await Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<AdminResult | null>((resolve) => {
            const id = nextReq++;
            const t = setTimeout(() => {
              commands.delete(id);
              resolve(null);
            }, 5000);
            commands.set(id, (r) => {
              clearTimeout(t);
              commands.delete(id);
              resolve(r);
            });
            w.send({ type: 'command', id, cmd } satisfies ToWorker);
          }),
      ),
    );
    return combineResults(
      cmd,
      results.filter((r): r is AdminResult => r !== null),
    );
  }

  async function reloadWorkers(next: Config): Promise<ReloadSummary> {
    const outcomes = await Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<ReloadOutcome>((resolve) => {
            const id = nextReq++;
            const t = setTimeout(() => {
              reloads.delete(id);
              resolve({ ok: false, error: 'reload_failed', problems: [`worker ${w.pid} did not answer in 30 s`] });
            }, 30_000);
            reloads.set(id, (o) => {
              clearTimeout(t);
              reloads.delete(id);
              resolve(o);
            });
            w.send({ type: 'reload', id } satisfies ToWorker);
          }),
      ),
    );
    const failed = outcomes.find((o) => !o.ok);
    if (failed !== undefined && !failed.ok) throw new Error(failed.problems.join('; '));
    const first = outcomes[0];
    if (first === undefined || !first.ok) throw new Error('no worker is running');
    current = next;
    return first.summary;
  }
  // Workers share ports the primary reserved at start: a listener added later needs a port of its own.
  const checkWorkerPorts = (next: Config): string[] =>
    next.listeners
      .filter((l) => l.address.port === 0 && !(l.name in ports) && !config.listeners.some((o) => o.name === l.name))
      .map((l) => `listener ${l.name}: with workers, a listener added by a reload needs a fixed port, not 0`);
  const reload = () => reloadFromFile(configPath, log, reloadWorkers, checkWorkerPorts);
  process.on('SIGHUP', () => void reload());
  const removePid = writePidFile(config.pid_file);

  const admin =
    config.admin === false
      ? null
      : await startAdmin(
          config,
          log,
          () => collect(),
          () => !stopping,
          reload,
          () => current,
          commandWorkers,
        );

  function collect(): Promise<StatsSnapshot> {
    return Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<StatsSnapshot | null>((resolve) => {
            const id = nextReq++;
            const settle = (s: StatsSnapshot | null) => {
              clearTimeout(t);
              waiting.delete(id);
              resolve(s);
            };
            const t = setTimeout(() => settle(null), 1000);
            waiting.set(id, settle);
            w.send({ type: 'stats', id } satisfies ToWorker);
          }),
      ),
    ).then((parts) => mergeSnapshots(parts.filter((p): p is StatsSnapshot => p !== null)));
  }

  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping workers');
      for (const w of workers.values()) w.kill(signal);
      const check = setInterval(() => {
        if (workers.size > 0) return;
        clearInterval(check);
        release();
        removePid();
        admin?.close();
        resolve(0);
      }, 50);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

async function startAdmin(
  config: Config,
  log: Logger,
  collect: () => Promise<StatsSnapshot>,
  healthy: () => boolean,
  reload: () => Promise<ReloadOutcome>,
  current: () => Config,
  command: (cmd: AdminCommand) => Promise<AdminResult>,
): Promise<AdminServer | null> {
  if (config.admin === false) return null;
  const { host, port } = config.admin.address;
  try {
    const admin = new AdminServer(
      { snapshot: collect, healthy, reload, config: current, command },
      { token: adminToken(config.admin) },
    );
    const a = await admin.listen(host, port, config.reuse_port);
    log.info({ address: `${a.address}:${a.port}` }, 'admin listening');
    return admin;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'admin failed to start');
    return null;
  }
}
