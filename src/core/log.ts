import pino, { type Logger } from 'pino';

/**
 * Two loggers: `log` for events (startup, errors, budget warnings) and an access logger writing one JSON
 * line per request. The access logger writes asynchronously so a slow terminal never stalls the data path.
 */
export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'muxgate' } }, pino.destination({ dest: 2, sync: true }));
}

export function createAccessLogger(path: string): Logger {
  const dest = path === 'stdout' ? 1 : path === 'stderr' ? 2 : path;
  return pino(
    { level: 'info', base: null, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest, sync: false }),
  );
}
