/**
 * The response fields of draft-ietf-httpapi-ratelimit-headers-11 (May 2026, the latest revision;
 * RateLimit and RateLimit-Policy as structured-field Lists, RFC 9651):
 *
 *   RateLimit-Policy: "api";q=100;w=10     quota q (the burst) per window w seconds
 *   RateLimit: "api";r=42;t=6              r requests left; t seconds of effective window
 *
 * and Retry-After (RFC 9110, delay-seconds) on refusals. Several rules applying to one request give
 * one item each, joined with ", " (both fields are Lists).
 *
 * Mapping a token bucket onto the draft's quota/window model:
 * - w = ceil(burst / rate): the time an empty bucket takes to refill to q, so q per w is the
 *   sustained rate (rounded down when burst / rate is not whole, which never overstates it).
 * - t on a passed request is the time until the bucket is full again. Tokens refill during it, so
 *   the client could use more than r: the advertised limit is stricter than the real one, never
 *   looser. The draft's §8.5 warns against the opposite, a small t that makes r/t look like a
 *   high rate; the time until the next token would do exactly that.
 * - t on a refused request (r=0) is the Retry-After value: the time within which the client can use
 *   no more than 0 is exactly the time until the next token. It also keeps the draft's §6 rule
 *   that Retry-After must not point earlier than the end of the effective window.
 */
import type { RateDecision, RateRule } from './rate-limit-store.ts';

/** The RateLimit-Policy value for these rules; constant per rule set, so compute it at config load. */
export function rateLimitPolicy(rules: readonly RateRule[]): string {
  return rules.map(policyItem).join(', ');
}

/** One RateLimit-Policy item: `"<name>";q=<burst>;w=<seconds>`. */
export function policyItem(rule: RateRule): string {
  return `${sfString(rule.name)};q=${sfInteger(rule.burst)};w=${sfInteger(Math.max(1, Math.ceil(rule.burst / rule.rate)))}`;
}

/** One RateLimit item for a rule's decision: `"<name>";r=<remaining>;t=<seconds>`. */
export function rateLimitItem(rule: RateRule, decision: RateDecision): string {
  const t = decision.allowed ? decision.resetSeconds : decision.retryAfterSeconds;
  return `${sfString(rule.name)};r=${sfInteger(decision.remaining)};t=${sfInteger(t)}`;
}

/** The Retry-After value of a refusal (the longest wait when several rules refused), or null. */
export function retryAfter(decisions: readonly RateDecision[]): string | null {
  let wait = -1;
  for (const d of decisions) if (!d.allowed && d.retryAfterSeconds > wait) wait = d.retryAfterSeconds;
  return wait < 0 ? null : String(Math.max(1, wait));
}

// RFC 9651 §3.3.1: a non-negative Integer has at most 15 digits.
const SF_INTEGER_MAX = 999_999_999_999_999;

function sfInteger(n: number): string {
  // Only absurd rules (a burst of 1e15 at 0.001/s) get here; a clamped value is still valid.
  return String(Math.min(SF_INTEGER_MAX, Math.max(0, Math.floor(n))));
}

// RFC 9651 §3.3.3: printable ASCII, with " and \ escaped.
const SF_STRING_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function sfString(s: string): string {
  if (SF_STRING_PLAIN.test(s)) return `"${s}"`;
  if (!/^[\x20-\x7e]*$/.test(s)) throw new TypeError(`policy name ${JSON.stringify(s)} is not printable ASCII`);
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}
