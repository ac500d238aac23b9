/**
 * The files a config names (listener certificates and keys, cluster CA bundles and client
 * certificates): paths relative to the config file, and a check that they load, run by `start`,
 * `proxy` and `check` so a bad file is a config error naming it (exit 2), not a crash at runtime.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import pino from 'pino';
import { CertStore } from '../tls/cert-store.ts';
import { ConfigError } from './config-error.ts';
import type { Config } from './schema.ts';

/** Makes every TLS file path of `config` absolute, relative to the config file's directory. */
export function resolveTlsPaths(config: Config, configFile: string): void {
  const base = dirname(resolve(configFile));
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  for (const l of config.listeners) {
    if (l.protocol === 'tcp' || l.tls === undefined) continue;
    for (const c of l.tls.certificates) {
      c.cert = abs(c.cert);
      c.key = abs(c.key);
    }
  }
  for (const c of Object.values(config.clusters)) {
    const t = c.tls;
    if (t === undefined) continue;
    if (t.ca !== undefined) t.ca = abs(t.ca);
    if (t.cert !== undefined) t.cert = abs(t.cert);
    if (t.key !== undefined) t.key = abs(t.key);
  }
}

/** Loads every TLS file once; throws a ConfigError listing each one that cannot be used. */
export function checkTlsFiles(config: Config): void {
  const problems: string[] = [];
  const silent = pino({ level: 'silent' });
  config.listeners.forEach((l, i) => {
    if (l.protocol === 'tcp' || l.tls === undefined) return;
    try {
      const store = CertStore.load(
        l.tls.certificates.map((c) => ({ cert: c.cert, key: c.key, serverNames: c.server_names, default: c.default })),
        { minVersion: l.tls.min_version, alpn: [], reloadIntervalMs: 0 },
        silent,
      );
      store.close();
    } catch (err) {
      problems.push(`listeners[${i}].tls: ${(err as Error).message}`);
    }
  });
  for (const [name, c] of Object.entries(config.clusters)) {
    const t = c.tls;
    if (t === undefined) continue;
    for (const [what, file] of [
      ['ca', t.ca],
      ['cert', t.cert],
      ['key', t.key],
    ] as const) {
      if (file === undefined) continue;
      try {
        readFileSync(file);
      } catch (err) {
        problems.push(`clusters.${name}.tls.${what}: cannot read "${file}": ${(err as NodeJS.ErrnoException).code}`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
