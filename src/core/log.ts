import pino, { type Logger } from 'pino';

/**
 * The event log (startup, errors, budget warnings): pino, synchronous on stderr. The access log, one
 * line per request, is core/access-log.ts.
 */
export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'muxgate' } }, pino.destination({ dest: 2, sync: true }));
}
