import { availableParallelism } from 'node:os';
import { AdminServer } from '../admin/admin-server.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../core/log.ts';
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
export async function run(config: Config): Promise<number> {
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  if (workers > 1 && !isWorker()) return runPrimary(config, workers);

  const log = createLogger(config.log_level);
  const server = new MuxgateServer(applyWorkerPorts(config), {
    log,
    reusePort: workers > 1 && workerUsesReusePort(),
    portSlice: isWorker() ? { index: workerIndex(), count: workers } : undefined,
  });
  try {
    await server.start();
  } catch (err) {
    log.error({ err: (err as Error).message }, 'failed to start');
    server.close();
    return 1;
  }
  if (isWorker()) {
    serveWorker(server);
  }
  let admin: AdminServer | null = null;
  let draining = false;
  if (!isWorker() && config.admin !== false) {
    admin = new AdminServer({ snapshot: () => server.snapshot(), healthy: () => !draining });
    try {
      const a = await admin.listen(config.admin.address.host, config.admin.address.port);
      log.info({ address: `${a.address}:${a.port}` }, 'admin listening');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'admin failed to start');
      server.close();
      return 1;
    }
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (draining) {
        log.warn({ signal }, 'second signal: exiting now');
        server.close();
        resolve(0);
        return;
      }
      draining = true;
      log.info({ signal, drain_timeout_ms: config.drain_timeout }, 'draining');
      void server.drain().then(() => {
        admin?.close();
        log.info('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
