// Starts bench/idle-clients.ts as a separate process pinned to a CPU, waits
// until its connections have each served a request and sit idle, and closes
// them on demand. See bench/idle-clients.ts for the line protocol.

import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { spawnTracked, stopTracked, type Tracked } from './procs.ts';

const script = fileURLToPath(new URL('./idle-clients.ts', import.meta.url));

export interface IdleReady {
  /** connections open when the last response arrived */
  opened: number;
  served: number;
  failed: number;
  /** responses that announced `Connection: close` */
  notKeptAlive: number;
  /** up to five distinct error messages */
  errors: string[];
  elapsedMs: number;
}

export interface IdleClosed {
  /** connections still open when asked to close */
  open: number;
  /** served connections the server closed while they idled */
  closedByPeer: number;
  unexpectedBytes: number;
}

export interface IdleClients {
  ready: IdleReady;
  /** Closes every connection and waits for the process to exit. */
  close(): Promise<IdleClosed>;
}

export interface IdleClientsOptions {
  port: number;
  count: number;
  cpu: string;
  path?: string;
  /** give up waiting for "ready" after this long */
  timeoutMs?: number;
}

/** Opens `count` keep-alive connections that each served one GET; resolves once all are idle. */
export async function openIdleClients(opts: IdleClientsOptions): Promise<IdleClients> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const child: Tracked = spawnTracked(
    'idle-clients',
    'taskset',
    [
      '-c',
      opts.cpu,
      process.execPath,
      script,
      `--port=${opts.port}`,
      `--count=${opts.count}`,
      `--path=${opts.path ?? '/'}`,
      `--max-seconds=${Math.ceil(timeoutMs / 1000) + 120}`,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.process.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  const lines = createInterface({ input: child.process.stdout! });
  lines.on('line', (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      stderr += `${line}\n`;
    }
    for (const w of waiters.splice(0)) w();
  });
  // its last lines may still be in the pipe when it has exited: the output ends after that
  let outputEnded = false;
  lines.on('close', () => {
    outputEnded = true;
    for (const w of waiters.splice(0)) w();
  });

  const waitFor = async (event: string, ms: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = events.find((e) => e.event === event);
      if (found) return found;
      if (child.exit && outputEnded) {
        throw new Error(
          `idle-clients exited (${child.exit.signal ?? child.exit.code}) before "${event}": ${stderr.trim().slice(-500)}`,
        );
      }
      if (Date.now() > deadline) {
        await stopTracked(child, 1000);
        throw new Error(`idle-clients: no "${event}" within ${ms} ms`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };

  const ready = (await waitFor('ready', timeoutMs)) as unknown as IdleReady;
  return {
    ready,
    async close(): Promise<IdleClosed> {
      child.process.stdin?.end('close\n');
      try {
        return (await waitFor('closed', 10_000)) as unknown as IdleClosed;
      } finally {
        await stopTracked(child, 5000);
      }
    },
  };
}
