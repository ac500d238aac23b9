/**
 * The route part of the configuration schema: what a route matches (method, host pattern, path,
 * headers) and what it does with a match (cluster, rewrites, timeout, upgrades). See schema.ts.
 */
import { z } from 'zod';
import { isHost, parseHostPort, TOKEN, unbracket } from './addresses.ts';
import { describeValue } from './config-error.ts';
import { exactlyOne, expected, isRecord, list, map, text, whenMap } from './schema-builders.ts';
import { routeUpgradeKeys } from './tunnels.ts';
import { durationMs } from './units.ts';
import { retry } from './retry.ts';
import { idempotency, rateLimit } from './admission.ts';
import { routeCache } from './cache.ts';

// ---------------------------------------------------------------------------------------------
// Routes

const HOST_PATTERN_HINT = 'a host name, "*.example.com" or "*"';
const hostPattern = z
  .string({ error: expected(HOST_PATTERN_HINT) })
  .refine((h) => h === '*' || isHost(h.startsWith('*.') ? h.slice(2) : unbracket(h)), {
    error: expected(HOST_PATTERN_HINT),
  })
  // Host headers are case-insensitive; the router compares against lower case.
  .transform((h) => h.toLowerCase());

const urlPath = text('a path starting with "/"', /^\//);

const regexSource = z.string({ error: expected('a regular expression') }).superRefine((source, ctx) => {
  try {
    new RegExp(source);
  } catch (err) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a valid regular expression, got ${describeValue(source)} (${(err as Error).message})`,
      input: source,
    });
  }
});

export type PathMatchConfig = { prefix: string } | { exact: string } | { regex: string };

const pathMatch = map('a path match map with one of prefix, exact or regex', {
  prefix: urlPath.optional().describe('Matches paths starting with this string.'),
  exact: urlPath.optional().describe('Matches exactly this path (query string excluded).'),
  regex: regexSource.optional().describe('Matches paths this JavaScript regular expression matches.'),
})
  .superRefine(exactlyOne(['prefix', 'exact', 'regex']))
  .transform(
    (m): PathMatchConfig =>
      m.prefix !== undefined
        ? { prefix: m.prefix }
        : m.exact !== undefined
          ? { exact: m.exact }
          : { regex: m.regex ?? '' },
  );

export type HeaderMatchConfig = { name: string } & ({ exact: string } | { regex: string } | { present: true });

const headerMatch = map('a header match map', {
  name: text('a header name', TOKEN).transform((n) => n.toLowerCase()),
  exact: z
    .string({ error: expected('a string') })
    .optional()
    .describe('The header value must equal this.'),
  regex: regexSource.optional().describe('The header value must match this regular expression.'),
  present: z
    .literal(true, { error: expected('true') })
    .optional()
    .describe('The header must be present, any value.'),
})
  .superRefine(exactlyOne(['exact', 'regex', 'present']))
  .transform(
    (h): HeaderMatchConfig =>
      h.exact !== undefined
        ? { name: h.name, exact: h.exact }
        : h.regex !== undefined
          ? { name: h.name, regex: h.regex }
          : { name: h.name, present: true },
  );

const routeMatch = map('a route match map', {
  host: z
    .union([hostPattern, list(hostPattern, `a list of host patterns (${HOST_PATTERN_HINT})`, 1)], {
      error: expected(`${HOST_PATTERN_HINT}, or a list of them`),
    })
    .transform((h) => (typeof h === 'string' ? [h] : h))
    .optional()
    .describe('Host header to match: exact, "*.example.com" (any subdomain) or "*"; one or a list.'),
  path: pathMatch.optional().describe('Exactly one of prefix, exact or regex.'),
  methods: list(
    text('an HTTP method', TOKEN).transform((m) => m.toUpperCase()),
    'a list of HTTP methods',
    1,
  )
    .optional()
    .describe('Request methods to match, e.g. [GET, POST].'),
  headers: list(headerMatch, 'a list of header matches')
    .optional()
    .describe('All must match. Each: name plus exactly one of exact, regex or present: true.'),
});

export const route = map('a route map', {
  name: text('a route name').optional().describe('Shown in logs and metrics.'),
  match: routeMatch.optional().describe('Absent = match every request.'),
  cluster: text('a cluster name').describe('The cluster (a key of `clusters`) that serves matching requests.'),
  host_rewrite: z
    .string({ error: expected('a host or host:port') })
    .refine((h) => isHost(unbracket(h)) || isHostPortText(h), {
      error: expected('a host or host:port'),
    })
    .optional()
    .describe('Replaces the Host header sent upstream.'),
  prefix_rewrite: text('an empty string or a path starting with "/"', /^(\/.*)?$/)
    .optional()
    .describe('Replaces the matched path prefix; only with match.path.prefix.'),
  response_timeout: durationMs({ min: 1 }).optional().describe("Overrides the cluster's response_timeout."),
  ...routeUpgradeKeys,
  retry: retry
    .optional()
    .describe(
      'Send failed attempts again, on another endpoint: only idempotent methods (or requests with an ' +
        'Idempotency-Key where the route has idempotency), never after a response byte reached the client.',
    ),
  rate_limit: rateLimit
    .optional()
    .describe(
      'A token bucket per client, header value or route: beyond it, 429 with Retry-After and RateLimit fields.',
    ),
  cache: routeCache
    .optional()
    .describe(
      'A shared HTTP cache (RFC 9111) for GET and HEAD: hits answered from a zone, concurrent misses coalesced ' +
        'into one upstream request, Cache-Status on every answer.',
    ),
  idempotency: idempotency
    .optional()
    .describe(
      'Idempotency-Key: the first request with a key runs, a repeat gets its stored response ' +
        '(idempotent-replayed: true), a repeat in flight 409, the key on another request 422.',
    ),
}).superRefine((r, ctx) => {
  const path: unknown = isRecord(r.match) ? r.match.path : undefined;
  if (r.prefix_rewrite === undefined || (isRecord(path) && typeof path.prefix === 'string')) return;
  const got = isRecord(path) ? `match.path.${Object.keys(path)[0] ?? 'prefix'}` : 'no path match';
  ctx.addIssue({
    code: 'custom',
    path: ['prefix_rewrite'],
    message: `prefix_rewrite needs a match.path.prefix to replace, got ${got}`,
    input: r.prefix_rewrite,
  });
}, whenMap);

function isHostPortText(input: string): boolean {
  try {
    parseHostPort(input, { allowPortZero: false });
    return true;
  } catch {
    return false;
  }
}
