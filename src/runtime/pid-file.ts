import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';

/** Writes this process's id to `path` (config `pid_file`); the returned function removes it if still ours. */
export function writePidFile(path: string | undefined): () => void {
  if (path === undefined) return () => {};
  writeFileSync(path, `${process.pid}\n`);
  return () => {
    try {
      // A newer process (an upgrade) may have written its own id since: leave that one.
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
