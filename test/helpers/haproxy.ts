import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

export const HAPROXY = '/usr/sbin/haproxy';
/** Why a test needing HAProxy skips (false: it runs). */
export const skipWithoutHaproxy = existsSync(HAPROXY)
  ? false
  : 'haproxy not installed (Debian package haproxy; .ci/run installs it)';

export interface RunningHaproxy {
  /** The port its one frontend listens on (a socket this process bound on port 0 and handed over). */
  port: number;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts HAProxy in the foreground with `config`, whose frontend binds `fd@3`: the listening socket is
 * bound here on 127.0.0.1 port 0 (its port read back) and passed to HAProxy as file descriptor 3, so no
 * port is guessed. Resolves once a connection to it is accepted.
 */
export async function startHaproxy(dir: string, config: string): Promise<RunningHaproxy> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;
  const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd;
  const file = join(dir, `haproxy-${port}.cfg`);
  writeFileSync(file, config);
  const child: ChildProcess = spawn(HAPROXY, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe', fd] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  // HAProxy holds its own copy now; ours would accept half of the connections.
  listener.close();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(killer);
  };
  // The socket listens already (connections wait in its backlog until HAProxy accepts them), so
  // there is nothing to wait for but a config HAProxy refuses: it exits at once then.
  await Promise.race([exited, new Promise((r) => setTimeout(r, 300))]);
  if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}):\n${out}`);
  return { port, output: () => out, stop };
}
