/**
 * A route's `retry:` map: when a failed attempt is sent again, how often, how fast and within which
 * budget. What may be retried at all (the method, the Idempotency-Key, a body that was kept) is decided
 * by the exchange; this only says what the operator allows. See router/retry-policy.ts.
 */
import { z } from 'zod';
import { expected, int, list, map, oneOf } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

/** Failures a route may retry (Envoy's `retry_on` names where they exist). */
export const RETRY_ON = ['connect-failure', 'refused-stream', 'reset', 'gateway-error'] as const;
export type RetryOn = (typeof RETRY_ON)[number];

const backoff = map('a backoff map', {
  base: durationMs().prefault('25ms').describe('Delay before the first retry; doubles with each retry (full jitter).'),
  max: durationMs().prefault('250ms').describe('The longest delay between two attempts.'),
});

const budget = map('a budget map', {
  ratio: z
    .number({ error: expected('a number from 0 to 1') })
    .min(0, { error: expected('a number from 0 to 1') })
    .max(1, { error: expected('a number from 0 to 1') })
    .default(0.2)
    .describe("Retries in flight may be at most this share of the route's requests in flight..."),
  min_retries: int(0).default(3).describe('...but this many are always allowed (the floor for quiet routes).'),
});

export const retry = map('a retry map', {
  attempts: int(1, 10).default(3).describe('Tries in all, the first included (1: never retry).'),
  on: list(oneOf(RETRY_ON), `a list of ${RETRY_ON.join(', ')}`)
    .default(['connect-failure', 'refused-stream', 'reset'])
    .describe(
      'What is retried: connect-failure (nothing was sent), refused-stream (an HTTP/2 upstream refused it ' +
        'unprocessed), reset (the upstream closed, reset or timed out before any response byte), gateway-error ' +
        '(the upstream answered 502, 503 or 504).',
    ),
  statuses: list(int(100, 599), 'a list of HTTP statuses')
    .default([])
    .describe('Upstream answers with these statuses are retried too (e.g. [429]).'),
  per_try_timeout: durationMs({ min: 1 })
    .optional()
    .describe("Each attempt waits this long for the response head (default: the route's response_timeout)."),
  backoff: backoff.prefault({}).describe('Exponential backoff with full jitter between attempts.'),
  budget: budget
    .prefault({})
    .describe('Caps retries so that a failing upstream does not get its load multiplied (a retry storm).'),
  retry_buffer_bytes: sizeBytes()
    .prefault('64KiB')
    .describe(
      'A request body is kept for a replay up to this size; a request with a larger body is not retried ' +
        '(the access log says retry_skipped=body_too_large).',
    ),
}).refine((r) => r.backoff.max >= r.backoff.base, {
  error: 'expected backoff.max to be at least backoff.base',
  path: ['backoff', 'max'],
});

export type RetryConfig = z.output<typeof retry>;
