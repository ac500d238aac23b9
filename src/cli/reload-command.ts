import type { Config } from '../config/schema.ts';
import type { ReloadSummary } from '../runtime/reload.ts';
import { adminRequest, adminTarget, readPid } from './admin-client.ts';

/**
 * `muxgate reload -c FILE`: the file was checked by the caller (a bad one never reaches the running
 * process). Asks the running process through its admin API (POST /reload) and prints what changed;
 * with the admin API off, signals the pid in `pid_file` (SIGHUP; the outcome is in its log).
 * Exit codes: 0 reloaded, 2 refused (invalid config), 1 anything else.
 */
export async function reloadCommand(
  config: Config,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const target = adminTarget(config);
  if (typeof target === 'string') {
    if (config.pid_file === undefined) {
      err.write(`muxgate reload: ${target}, and there is no pid_file to signal\n`);
      return 1;
    }
    const pid = readPid(config.pid_file);
    if (typeof pid === 'string') {
      err.write(`muxgate reload: ${pid}\n`);
      return 1;
    }
    try {
      process.kill(pid, 'SIGHUP');
    } catch (e) {
      err.write(`muxgate reload: cannot signal pid ${pid}: ${(e as NodeJS.ErrnoException).code}\n`);
      return 1;
    }
    out.write(`sent SIGHUP to pid ${pid} (${target}); its log says whether the reload was applied\n`);
    return 0;
  }
  let r: { status: number; body: unknown };
  try {
    r = await adminRequest(target, 'POST', '/reload');
  } catch (e) {
    err.write(`muxgate reload: cannot reach the admin API at ${target.base}: ${(e as Error).message}\n`);
    return 1;
  }
  const body = r.body as Record<string, unknown>;
  if (r.status === 200) {
    out.write(formatSummary(body as unknown as ReloadSummary));
    return 0;
  }
  const message = typeof body?.message === 'string' ? body.message : JSON.stringify(r.body);
  err.write(
    `muxgate reload: refused (${String(body?.error ?? r.status)}); the running config is unchanged:\n${message}\n`,
  );
  return r.status === 400 ? 2 : 1;
}

function formatSummary(s: ReloadSummary): string {
  const list = (names: string[]) => (names.length === 0 ? '-' : names.join(', '));
  const l = s.listeners;
  const c = s.clusters;
  const lines = [
    'reloaded',
    `  listeners  added: ${list(l.added)}  removed: ${list(l.removed)}  replaced: ${list(l.replaced)}  kept: ${list(l.kept)}`,
    `  clusters   added: ${list(c.added)}  removed: ${list(c.removed)}  replaced: ${list(c.replaced)}  endpoints updated: ${list(c.endpoints_updated)}  kept: ${list(c.kept)}`,
  ];
  if (s.not_applied.length > 0) lines.push(`  not applied until a restart: ${s.not_applied.join(', ')}`);
  return `${lines.join('\n')}\n`;
}
