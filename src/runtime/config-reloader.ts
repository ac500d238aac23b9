import { ConfigError } from '../config/config-error.ts';
import { loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { checkTlsFiles } from '../config/tls-files.ts';
import type { Logger } from '../core/log.ts';
import type { ReloadSummary } from './reload.ts';

/** The answer to a reload request (SIGHUP, POST /reload, `muxgate reload`). */
export type ReloadOutcome =
  | { ok: true; summary: ReloadSummary }
  /** `config_invalid`: the same problems `muxgate check` prints; `reload_failed`: valid, but a part could not be built or bound. */
  | { ok: false; error: 'config_invalid' | 'reload_failed' | 'reload_unavailable'; problems: string[] };

/** Reads and checks a config file the way `muxgate start` and `check` do (TLS files loaded). */
export function loadRunnableConfig(path: string): Config {
  const config = loadConfigFile(path);
  checkTlsFiles(config);
  return config;
}

/**
 * Re-reads the config file and applies it through `apply`; a bad file or a failed apply changes
 * nothing and is logged and returned with its reasons.
 */
export async function reloadFromFile(
  path: string | undefined,
  log: Logger,
  apply: (config: Config) => Promise<ReloadSummary>,
  check: (config: Config) => string[] = () => [],
): Promise<ReloadOutcome> {
  if (path === undefined) {
    const problems = ['muxgate was started without a config file (muxgate proxy): there is nothing to re-read'];
    log.warn({ problems }, 'reload refused');
    return { ok: false, error: 'reload_unavailable', problems };
  }
  let config: Config;
  try {
    config = loadRunnableConfig(path);
  } catch (err) {
    const problems = err instanceof ConfigError ? [...err.problems] : [(err as Error).message ?? String(err)];
    log.error({ file: path, problems }, 'reload refused: the config is invalid; the running config is unchanged');
    return { ok: false, error: 'config_invalid', problems };
  }
  const refused = check(config);
  if (refused.length > 0) {
    log.error({ file: path, problems: refused }, 'reload refused; the running config is unchanged');
    return { ok: false, error: 'config_invalid', problems: refused };
  }
  try {
    const summary = await apply(config);
    log.info({ file: path, ...summary }, 'reloaded');
    if (summary.not_applied.length > 0) {
      log.warn({ settings: summary.not_applied }, 'reload: these settings take effect only after a restart');
    }
    return { ok: true, summary };
  } catch (err) {
    const problems = [(err as Error).message];
    log.error({ file: path, problems }, 'reload failed; the running config is unchanged');
    return { ok: false, error: 'reload_failed', problems };
  }
}
