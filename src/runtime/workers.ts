import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { AdminServer } from '../admin/admin-server.ts';
import type { Config } from '../config/schema.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { mergeSnapshots } from '../core/stats-merge.ts';
import type { StatsSnapshot } from '../core/stats.ts';
import type { MuxgateServer } from './server.ts';

const WORKER_ENV = 'MUXGATE_WORKER_ID';
const PORTS_ENV = 'MUXGATE_WORKER_PORTS';

export function isWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined;
}

type ToWorker = { type: 'stats'; id: number };
type FromWorker = { type: 'stats'; id: number; snapshot: StatsSnapshot } | { type: 'ready' };

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

/** In a worker: tell the primary we listen, and answer its stats requests over IPC. */
export function serveWorker(server: MuxgateServer): void {
  process.on('message', (m: ToWorker) => {
    if (m?.type === 'stats')
      process.send?.({ type: 'stats', id: m.id, snapshot: server.snapshot() } satisfies FromWorker);
  });
  // If the primary dies, do not linger as an orphan holding the port.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  process.send?.({ type: 'ready' } satisfies FromWorker);
}

/** Binds port-0 listeners once in the primary (with SO_REUSEPORT) to learn the port all workers will share. */
async function reservePorts(config: Config): Promise<{ ports: Record<string, number>; release: () => void }> {
  const ports: Record<string, number> = {};
  const held: net.Server[] = [];
  for (const l of config.listeners) {
    if (l.address.port !== 0) continue;
    const s = net.createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen({ host: l.address.host, port: 0, reusePort: true }, () => resolve());
    });
    ports[l.name] = (s.address() as net.AddressInfo).port;
    held.push(s);
  }
  // Closed once every worker listens: until then the reservation keeps the port ours; after, the
  // primary must not hold a socket in the reuseport group or it would be handed connections.
  return {
    ports,
    release: () => {
      for (const s of held) s.close();
    },
  };
}

/**
 * The primary: forks `n` workers running the same command line, restarts any that crash, serves the
 * admin API with stats summed across workers, and forwards SIGTERM/SIGINT for a graceful drain.
 */
export async function runPrimary(config: Config, n: number): Promise<number> {
  const log = createLogger(config.log_level);
  const { ports, release } = await reservePorts(config);
  const workers = new Map<number, ChildProcess>();
  let stopping = false;
  let readyCount = 0;
  let nextReq = 1;
  const waiting = new Map<number, (s: StatsSnapshot | null) => void>();

  const spawn = (id: number) => {
    const child = fork(process.argv[1]!, process.argv.slice(2), {
      env: { ...process.env, [WORKER_ENV]: String(id), [PORTS_ENV]: JSON.stringify(ports) },
      stdio: 'inherit',
    });
    workers.set(id, child);
    child.on('message', (m: FromWorker) => {
      if (m?.type === 'stats') waiting.get(m.id)?.(m.snapshot);
      else if (m?.type === 'ready' && ++readyCount === n) {
        release();
        log.info({ workers: n, pids: [...workers.values()].map((w) => w.pid) }, 'all workers listening');
      }
    });
    child.on('exit', (code, signal) => {
      workers.delete(id);
      if (stopping) return;
      log.error({ worker: id, pid: child.pid, code, signal }, 'worker exited; restarting');
      setTimeout(() => spawn(id), 250).unref();
    });
  };
  for (let i = 0; i < n; i++) spawn(i);
  log.info({ workers: n }, 'primary started');

  const admin =
    config.admin === false
      ? null
      : await startAdmin(
          config,
          log,
          () => collect(),
          () => !stopping,
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
): Promise<AdminServer | null> {
  if (config.admin === false) return null;
  const admin = new AdminServer({ snapshot: collect, healthy });
  const { host, port } = config.admin.address;
  try {
    const a = await admin.listen(host, port);
    log.info({ address: `${a.address}:${a.port}` }, 'admin listening');
    return admin;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'admin failed to start');
    return null;
  }
}
