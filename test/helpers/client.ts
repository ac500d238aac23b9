import net from 'node:net';

/**
 * Sends raw bytes and collects everything the peer sends until it closes the connection or goes quiet
 * for `quietMs`. For tests that need exact bytes on the wire (smuggling, framing, pipelining).
 */
export function rawExchange(
  port: number,
  data: string | Buffer | (string | Buffer)[],
  opts: { quietMs?: number; timeoutMs?: number; endAfterWrite?: boolean } = {},
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const quietMs = opts.quietMs ?? 300;
    const done = (closed: boolean) => {
      clearTimeout(quiet);
      clearTimeout(total);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const total = setTimeout(() => done(false), opts.timeoutMs ?? 5000);
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => done(false), quietMs);
    };
    s.on('connect', async () => {
      const parts = Array.isArray(data) ? data : [data];
      for (const p of parts) {
        s.write(p);
        if (parts.length > 1) await new Promise((r) => setTimeout(r, 20));
      }
      if (opts.endAfterWrite) s.end();
      arm();
    });
    s.on('data', (c) => {
      chunks.push(c);
      arm();
    });
    s.on('close', () => done(true));
    s.on('error', (e) => (chunks.length ? done(true) : reject(e)));
  });
}

/** Splits a byte stream of responses into status codes, e.g. "HTTP/1.1 200 OK" -> 200. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}
