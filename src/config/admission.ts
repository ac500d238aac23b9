/**
 * A route's admission keys: `rate_limit:` (token buckets per client, header or route) and
 * `idempotency:` (Idempotency-Key, draft-ietf-httpapi-idempotency-key-header). Both keep their state
 * in memory (this process) or in Redis (shared by every muxgate that points at it).
 */
import { z } from 'zod';
import { TOKEN } from './addresses.ts';
import { expected, int, map, oneOf, text } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

const STORE_HINT = 'memory, or a redis://, rediss:// or unix:// URL';
const store = z
  .string({ error: expected(STORE_HINT) })
  .refine((s) => s === 'memory' || /^(rediss?|unix):\/\/./.test(s), { error: expected(STORE_HINT) });

const onStoreError = oneOf(['fail_open', 'fail_closed']);

const RATE = /^(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)$/;
const PER_SECOND = { s: 1, m: 60, h: 3600 } as const;
const RATE_HINT = 'a rate such as 100/s, 600/m or 1000/h, or a number of requests per second';

/** "600/m" or 10 -> requests per second. */
const rate = z.union([z.number(), z.string()], { error: expected(RATE_HINT) }).transform((v, ctx) => {
  let perSecond: number;
  if (typeof v === 'number') perSecond = v;
  else {
    const m = RATE.exec(v.trim());
    perSecond = m === null ? Number.NaN : Number(m[1]) / PER_SECOND[m[2] as keyof typeof PER_SECOND];
  }
  if (!(Number.isFinite(perSecond) && perSecond > 0)) {
    ctx.addIssue({ code: 'custom', message: expected(RATE_HINT)({ input: v }), input: v });
    return z.NEVER;
  }
  return perSecond;
});

const KEY_HINT = 'client, route, or header:<name>';
const limitKey = z
  .string({ error: expected(KEY_HINT) })
  .refine((k) => k === 'client' || k === 'route' || (k.startsWith('header:') && TOKEN.test(k.slice(7))), {
    error: expected(KEY_HINT),
  })
  .transform((k) => k.toLowerCase());

export const rateLimit = map('a rate_limit map', {
  rate: rate.describe('Requests let through per second at length: a number, or 100/s, 600/m, 1000/h.'),
  burst: int(1)
    .optional()
    .describe(
      'Requests that may pass at once after a quiet spell (the bucket size; default: one second of rate, at least 1).',
    ),
  key: limitKey
    .default('client')
    .describe(
      'Whose bucket a request takes from: client (its address), route (one bucket for all), or header:<name> ' +
        '(e.g. header:x-api-key; requests without the header fall back to the client address).',
    ),
  name: text('a policy name made of a-z, 0-9, _ and -', /^[a-z0-9_-]+$/)
    .optional()
    .describe('The policy name in RateLimit-Policy and the bucket keys (default: the route name).'),
  store: store.default('memory').describe(`Where buckets live: ${STORE_HINT} (shared by every muxgate using it).`),
  on_store_error: onStoreError
    .default('fail_open')
    .describe('When the store cannot answer: let the request through (fail_open) or answer 503 (fail_closed).'),
});

export const idempotency = map('an idempotency map', {
  store: store.default('memory').describe(`Where keys and responses live: ${STORE_HINT}.`),
  ttl: durationMs({ min: 1000 }).prefault('24h').describe("How long a key's first response is replayed."),
  lock_ttl: durationMs({ min: 1000 })
    .prefault('60s')
    .describe(
      'How long a key stays locked by a request that never finishes (a crashed muxgate); keep it above response_timeout.',
    ),
  max_body_bytes: sizeBytes({ min: 1 })
    .prefault('1MiB')
    .describe('Larger responses are passed on but not stored; the key is released (logged).'),
  max_request_bytes: sizeBytes({ min: 0 })
    .prefault('1MiB')
    .describe(
      'A keyed request body is read whole before it is forwarded (its digest is part of the fingerprint); larger: 413.',
    ),
  key_scope: text('a header name', TOKEN)
    .transform((h) => h.toLowerCase())
    .optional()
    .describe("A request header (e.g. authorization) whose value scopes keys, so two clients cannot see each other's."),
  max_keys: int(1).default(100_000).describe('memory store: keys held at most (oldest first out).'),
  on_store_error: onStoreError
    .default('fail_closed')
    .describe('When the store cannot answer: forward without idempotency (fail_open) or answer 503 (fail_closed).'),
});

export type RateLimitConfig = z.output<typeof rateLimit>;
export type IdempotencyConfig = z.output<typeof idempotency>;
