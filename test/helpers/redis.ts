/**
 * A real redis-server for one test, listening only on a unix socket in a fresh temporary directory:
 * no TCP port to pick or collide on, no persistence. The server can be stopped, killed, paused
 * (SIGSTOP, a server that stops answering while its connections stay open) and started again on
 * the same socket, to test how clients live through outages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const REDIS_SERVER = '/usr/bin/redis-server';
const WAIT_MS = 10_000;

/** Skips the test (and returns true) when redis-server is missing, saying why. */
export function skipWithoutRedis(t: TestContext): boolean {
  if (existsSync(REDIS_SERVER)) return false;
  t.skip(`redis-server not installed: ${REDIS_SERVER} is missing (Debian package redis-server)`);
  return true;
}

export interface RedisServer {
  /** unix://<dir>/redis.sock */
  readonly url: string;
  readonly socketPath: string;
  /** Starts the server again on the same socket (after stop or kill); resolves once it answers PING. */
  start(): Promise<void>;
  /** SIGTERM, then waits for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL, then waits for the process to exit. */
  kill(): Promise<void>;
  /** SIGSTOP: connections stay open but nothing is answered. */
  pause(): void;
  /** SIGCONT after pause. */
  resume(): void;
  /** Stops the server and removes the directory; call it in `t.after`. */
  close(): Promise<void>;
}

/** Starts redis-server; resolves once it answers PING on its socket. */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-redis-'));
  const socketPath = join(dir, 'redis.sock');
  let child: ChildProcess | null = null;
  let output = '';
  // A test that crashes must not leave a server behind.
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const exited = (c: ChildProcess) =>
    new Promise<void>((resolve, reject) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      const timer = setTimeout(() => reject(new Error(`redis-server did not exit within ${WAIT_MS} ms`)), WAIT_MS);
      c.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });

  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (c === null) return;
    child = null;
    // A paused process would not act on SIGTERM.
    c.kill('SIGCONT');
    c.kill(sig);
    await exited(c);
  };

  const start = async () => {
    if (child !== null) throw new Error('redis-server is already running');
    output = '';
    const c = spawn(
      REDIS_SERVER,
      [
        '--port',
        '0',
        '--unixsocket',
        socketPath,
        '--unixsocketperm',
        '700',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--logfile',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = c;
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    let failed: Error | null = null;
    c.once('error', (err) => (failed = err));
    const deadline = Date.now() + WAIT_MS;
    while (!(await ping(socketPath))) {
      if (failed !== null || c.exitCode !== null) {
        child = null;
        throw new Error(`redis-server failed to start: ${failed ?? `exit ${c.exitCode}`}\n${output}`);
      }
      if (Date.now() > deadline) {
        await signal('SIGKILL');
        throw new Error(`redis-server did not answer PING on ${socketPath} within ${WAIT_MS} ms\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  await start();
  return {
    url: `unix://${socketPath}`,
    socketPath,
    start,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    close: async () => {
      try {
        await signal('SIGTERM');
      } finally {
        process.off('exit', killOnExit);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** One PING over the socket: true on +PONG, false on any error or after a second. */
function ping(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    let got = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}
