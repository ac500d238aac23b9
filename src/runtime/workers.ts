import { type ChildProcess, fork } from 'node:child_process';
import { AdminServer } from '../admin/admin-server.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../core/log.ts';
import { mergeSnapshots } from '../core/stats-merge.ts';
import type { StatsSnapshot } from '../core/stats.ts';
import type { MuxgateServer } from './server.ts';

const WORKER_ENV = 'MUXGATE_WORKER_ID';

export function isWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined;
}

interface StatsRequest {
  type: 'stats';
  id: number;
}
interface StatsReply {
  type: 'stats';
  id: number;
  snapshot: StatsSnapshot;
}

/** In a worker: answer the primary's stats requests over IPC. */
export function serveWorker(server: MuxgateServer): void {
  process.on('message', (m: StatsRequest) => {
    if (m?.type === 'stats') process.send?.({ type: 'stats', id: m.id, snapshot: server.snapshot() } satisfies StatsReply);
  });
  // If the primary dies, do not linger as an orphan holding the port.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

/**
 * The primary: forks `n` workers running the same command line, restarts any that crash, serves the
 * admin API with stats summed across workers, and forwards SIGTERM/SIGINT for a graceful drain.
 */
export function runPrimary(config: Config, n: number): Promise<number> {
  const log = createLogger(config.log_level);
  const workers = new Map<number, ChildProcess>();
  let stopping = false;
  let nextReq = 1;
  const waiting = new Map<number, (s: StatsSnapshot | null) => void>();

  const spawn = (id: number) => {
    const child = fork(process.argv[1]!, process.argv.slice(2), {
      env: { ...process.env, [WORKER_ENV]: String(id) },
      stdio: 'inherit',
    });
    workers.set(id, child);
    child.on('message', (m: StatsReply) => {
      if (m?.type === 'stats') waiting.get(m.id)?.(m.snapshot);
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

  const collect = async (): Promise<StatsSnapshot> => {
    const parts = await Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<StatsSnapshot | null>((resolve) => {
            const id = nextReq++;
            const t = setTimeout(() => (waiting.delete(id), resolve(null)), 1000);
            waiting.set(id, (s) => (clearTimeout(t), waiting.delete(id), resolve(s)));
            w.send({ type: 'stats', id } satisfies StatsRequest);
          }),
      ),
    );
    return mergeSnapshots(parts.filter((p): p is StatsSnapshot => p !== null));
  };

  let admin: AdminServer | null = null;
  let latest: StatsSnapshot = mergeSnapshots([]);
  if (config.admin !== false) {
    // The admin handler is synchronous, so it serves the last snapshot refreshed every 500 ms.
    const refresh = setInterval(() => void collect().then((s) => (latest = s)), 500);
    refresh.unref();
    admin = new AdminServer({ snapshot: () => latest, healthy: () => !stopping });
    const { host, port } = config.admin.address;
    admin.listen(host, port).then(
      (a) => log.info({ address: `${a.address}:${a.port}` }, 'admin listening'),
      (err: Error) => log.error({ err: err.message }, 'admin failed to start'),
    );
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
        admin?.close();
        resolve(0);
      }, 50);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
