import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/muxgate.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `muxgate ARGS` to completion on the same Node (26) that runs the tests. */
export function muxgate(args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 10_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface RunningMuxgate {
  child: ChildProcess;
  /** Every JSON log line seen so far (stdout and stderr). */
  lines: Record<string, unknown>[];
  /** Resolves with the first log line matching `pred` (rejects after `timeoutMs`). */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running muxgate (start/proxy) and follows its JSON logs. */
export function startMuxgate(args: string[], env: NodeJS.ProcessEnv = {}): RunningMuxgate {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: Record<string, unknown>[] = [];
  const watchers: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] =
    [];
  const onText = (buf: { rest: string }) => (c: Buffer) => {
    buf.rest += c.toString('utf8');
    let i = buf.rest.indexOf('\n');
    while (i !== -1) {
      const line = buf.rest.slice(0, i);
      buf.rest = buf.rest.slice(i + 1);
      i = buf.rest.indexOf('\n');
      if (!line.startsWith('{')) continue;
      const l = JSON.parse(line) as Record<string, unknown>;
      lines.push(l);
      for (const w of [...watchers]) {
        if (w.pred(l)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  };
  child.stdout!.on('data', onText({ rest: '' }));
  child.stderr!.on('data', onText({ rest: '' }));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitFor(pred, timeoutMs = 10_000) {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no matching log line within ${timeoutMs} ms; saw ${JSON.stringify(lines)}`)),
          timeoutMs,
        );
        watchers.push({
          pred,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** "127.0.0.1:1234" from a "listening" log line -> 1234. */
export function portOf(line: Record<string, unknown>): number {
  return Number(String(line.address).split(':').pop());
}
