import { readFileSync } from 'node:fs';
import { adminToken } from '../admin/admin-token.ts';
import type { Config } from '../config/schema.ts';

/** Where `muxgate reload` and `muxgate status` reach a running muxgate: its admin API, from its config. */
export interface AdminTarget {
  base: string;
  token: string | null;
}

/** The admin API of the process running `config`, or why it cannot be reached that way. */
export function adminTarget(config: Config, env: NodeJS.ProcessEnv = process.env): AdminTarget | string {
  if (config.admin === false) return 'the admin API is off (admin: false)';
  const { host, port } = config.admin.address;
  if (port === 0) return 'admin.address has port 0: give it a fixed port to reach it from the command line';
  // A wildcard bind is reached on loopback.
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const token = env.MUXGATE_ADMIN_TOKEN ?? adminToken(config.admin, env);
  return { base: `http://${h.includes(':') ? `[${h}]` : h}:${port}`, token };
}

export async function adminRequest(
  t: AdminTarget,
  method: 'GET' | 'POST',
  path: string,
): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = {};
  if (t.token !== null) headers.authorization = `Bearer ${t.token}`;
  const r = await fetch(`${t.base}${path}`, { method, headers, signal: AbortSignal.timeout(60_000) });
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: r.status, body };
}

/** The pid in a pid file, or why not. */
export function readPid(path: string): number | string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return `cannot read pid_file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : `pid_file ${path} holds no process id`;
}
