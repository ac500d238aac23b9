import { availableParallelism } from 'node:os';
import { AdminServer } from '../admin/admin-server.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../core/log.ts';
import { adminToken } from '../admin/admin-token.ts';
import { applyAdminCommand } from '../runtime/admin-command.ts';
import { reloadFromFile } from '../runtime/config-reloader.ts';
import { writePidFile } from '../runtime/pid-file.ts';
import { MuxgateServer } from '../runtime/server.ts';
import {
  applyWorkerPorts,
  isWorker,
  runPrimary,
  serveWorker,
  workerIndex,
  workerUsesReusePort,
} from '../runtime/workers.ts';

/**
 * Runs muxgate until SIGTERM/SIGINT, then drains and resolves to the exit code. With several workers
 * the primary process only supervises and serves admin; each worker binds the listeners itself
 * (SO_REUSEPORT) so the kernel spreads connections across them.
 */
export async function run(config: Config, configPath?: string): Promise<number> {
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  if (workers > 1 && !isWorker()) return runPrimary(config, workers, configPath);

  const log = createLogger(config.log_level);
  const server = new MuxgateServer(applyWorkerPorts(config), {
    log,
    reusePort: workers > 1 ? workerUsesReusePort() : undefined,
    portSlice: isWorker() ? { index: workerIndex(), count: workers } : undefined,
  });
  try {
    await server.start();
  } catch (err) {
    log.error({ err: (err as Error).message }, 'failed to start');
    server.close();
    return 1;
  }
  const reload = () =>
    reloadFromFile(configPath, log, (next) => server.reload(isWorker() ? applyWorkerPorts(next) : next));
  if (isWorker()) {
    serveWorker(server, reload, (cmd) => applyAdminCommand(server, cmd));
  }
  let admin: AdminServer | null = null;
  let draining = false;
  if (!isWorker() && config.admin !== false) {
    try {
      admin = new AdminServer(
        {
          snapshot: () => server.snapshot(),
          healthy: () => !draining,
          config: () => server.config,
          reload,
          command: async (cmd) => applyAdminCommand(server, cmd),
        },
        { token: adminToken(config.admin) },
      );
      const a = await admin.listen(config.admin.address.host, config.admin.address.port, config.reuse_port);
      log.info({ address: `${a.address}:${a.port}` }, 'admin listening');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'admin failed to start');
      server.close();
      return 1;
    }
  }
  const removePid = isWorker() ? () => {} : writePidFile(config.pid_file);
  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (draining) {
        log.warn({ signal }, 'second signal: exiting now');
        server.close();
        removePid();
        resolve(0);
        return;
      }
      draining = true;
      log.info({ signal, drain_timeout_ms: config.drain_timeout }, 'draining');
      void server.drain().then(() => {
        admin?.close();
        removePid();
        log.info('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // A worker reloads when its primary asks (over IPC), not on its own SIGHUP.
    if (!isWorker()) process.on('SIGHUP', () => void reload());
  });
}
