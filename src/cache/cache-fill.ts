import { Buffer } from 'node:buffer';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import type { ResponseTap } from '../forward/response-tap.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import { LocalAnswer, type LocalAnswerTarget } from '../forward/local-answer.ts';
import { variantKey, varyFields } from './cache-key.ts';
import { type CachedObject, CachePolicy, headerObject, tagsOf } from './cached-object.ts';
import type { CacheZone } from './cache-zone.ts';
import { answerStored } from './stored-answer.ts';

/** A request waiting on another's upstream answer for the same key. */
export interface CacheWaiter extends LocalAnswerTarget {
  /** The fill will not serve it (an answer that may not be shared, the wait was too long): go upstream. */
  goUpstream(): void;
  /** The one upstream request failed before its answer began: the same error, without another try. */
  fail(code: ErrorCode): void;
}

/** How a fill turns a response into what it stores (the route's cache settings). */
export interface FillRules {
  /** `ttl_override`, in seconds (0: the response's own freshness). */
  ttlOverrideS: number;
  /** The name in Cache-Status and Via. */
  name: string;
  via: string | null;
}

const WAITING = 0; // no response head yet
const STORING = 1; // a head that may be stored and shared: its body is kept and streamed to the waiters
const PASSING = 2; // an answer that may not be shared: the waiters went upstream
const DONE = 3;

/** Trailer bytes the capture's own chunked decoder accepts. */
const MAX_TRAILER_BYTES = 64 * 1024;
/** Fields never stored: the hop's framing, and Age (restated when served). */
const NOT_STORED = new Set(['content-length', 'transfer-encoding', 'age']);

interface Waiting {
  w: CacheWaiter;
  /** Its request's fields: which variant it wants, once the answer says what it Varies on. */
  headers: CachePolicy.Headers;
  answer: LocalAnswer | null;
  timer: NodeJS.Timeout | null;
}

/**
 * One cache miss on its way: the request sent upstream taps its response (ResponseTap), the other
 * requests for the same key wait here (coalescing), bounded by `coalesce_timeout` each. A response
 * that may be stored streams to every waiter as it arrives and is stored once complete (never when cut
 * short, or larger than max_object_bytes); one that may not be shared sends the waiters upstream
 * themselves; a failure before the response began reaches each waiter as that error, once.
 */
export class CacheFill implements ResponseTap {
  /** The key it was looked up by; once the answer's Vary is known, the variant it is stored as. */
  key: string;
  private readonly lookupKey: string;
  readonly primary: string;
  private readonly zone: CacheZone;
  private readonly rules: FillRules;
  private readonly req: CachePolicy.Request;
  /** The exchange that went upstream: its error, when it fails. */
  private readonly filler: { readonly error: ErrorCode | null };
  private readonly waiters: Waiting[] = [];
  private state = WAITING;
  private status = 0;
  private fields: [string, string][] = [];
  private vary: string[] = [];
  private policy: CachePolicy | null = null;
  private length = -1;
  private body: Buffer[] = [];
  private bytes = 0;
  private tooLarge = false;
  private dechunk: ChunkedScanner | null = null;

  constructor(
    zone: CacheZone,
    key: string,
    primary: string,
    req: CachePolicy.Request,
    rules: FillRules,
    filler: { readonly error: ErrorCode | null },
  ) {
    this.zone = zone;
    this.key = key;
    this.lookupKey = key;
    this.primary = primary;
    this.req = req;
    this.rules = rules;
    this.filler = filler;
    zone.inflight.set(key, this);
  }

  /** Requests waiting on (or streaming) this answer, while it is still coming. */
  get waiting(): number {
    return this.state === WAITING || this.state === STORING ? this.waiters.length : 0;
  }

  /** The answer is being stored (and shared). */
  get storing(): boolean {
    return this.state === STORING;
  }

  /** `w` waits for this answer (at most `timeoutMs`); false when it cannot be served from it. */
  join(w: CacheWaiter, timeoutMs: number, headers: CachePolicy.Headers): boolean {
    if (this.state === WAITING) {
      const entry: Waiting = { w, headers, answer: null, timer: null };
      entry.timer = setTimeout(() => this.timedOut(entry), timeoutMs);
      entry.timer.unref();
      this.waiters.push(entry);
      return true;
    }
    if (this.state !== STORING || this.tooLarge) return false;
    if (variantKey(this.primary, headers, this.vary) !== this.key) return false;
    // The answer is streaming: this one starts with what came so far.
    const entry: Waiting = { w, headers, answer: this.answerFor(w), timer: null };
    for (const b of this.body) entry.answer!.chunk(b);
    this.waiters.push(entry);
    this.zone.counters.coalesced++;
    return true;
  }

  /** A waiter's client went away. */
  leave(w: CacheWaiter): void {
    const i = this.waiters.findIndex((e) => e.w === w);
    if (i === -1) return;
    const [e] = this.waiters.splice(i, 1);
    if (e!.timer !== null) clearTimeout(e!.timer);
  }

  head(flat: readonly string[], chunked: boolean, length: number): void {
    if (this.state !== WAITING) return;
    const status = Number(flat[1]);
    const all: [string, string][] = [];
    for (let i = 2; i + 1 < flat.length; i += 2) all.push([flat[i]!, flat[i + 1]!]);
    const vary = varyFields(all);
    const headers = headerObject(all);
    if (this.rules.ttlOverrideS > 0) overrideFreshness(headers, this.rules.ttlOverrideS);
    const policy = new CachePolicy(this.req, { status, headers }, { shared: true });
    const shareable =
      vary !== null &&
      policy.storable() &&
      headers['set-cookie'] === undefined &&
      status !== 206 &&
      (length < 0 || length <= this.zone.maxObjectBytes);
    if (!shareable) {
      this.state = PASSING;
      this.release();
      for (const e of this.waiters.splice(0)) e.w.goUpstream();
      return;
    }
    this.state = STORING;
    this.status = status;
    this.fields = all.filter(([n]) => !NOT_STORED.has(n));
    this.vary = vary;
    // Stored as the variant the request sent upstream selects; waiters that want another go upstream.
    this.key = variantKey(this.primary, this.req.headers, vary);
    for (const e of this.waiters.filter((x) => variantKey(this.primary, x.headers, vary) !== this.key)) {
      this.waiters.splice(this.waiters.indexOf(e), 1);
      if (e.timer !== null) clearTimeout(e.timer);
      e.w.goUpstream();
    }
    this.policy = policy;
    this.length = length;
    if (chunked) this.dechunk = new ChunkedScanner(MAX_TRAILER_BYTES, true);
    for (const e of this.waiters) {
      if (e.timer !== null) clearTimeout(e.timer);
      e.timer = null;
      e.answer = this.answerFor(e.w);
      this.zone.counters.coalesced++;
    }
  }

  data(buf: Buffer, start = 0, end = buf.length): void {
    if (this.state !== STORING) return;
    const d = this.dechunk;
    if (d === null) {
      this.keep(buf, start, end);
      return;
    }
    if (d.feed(buf, start, end) < 0) return; // malformed: the exchange aborts, finish(false) follows
    const r = d.ranges!;
    for (let i = 0; i < r.length; i += 2) this.keep(buf, r[i]!, r[i + 1]!);
  }

  finish(answered: boolean): void {
    const state = this.state;
    this.state = DONE;
    this.release();
    if (state === STORING) {
      const complete = answered && (this.length < 0 || this.bytes === this.length);
      if (complete && !this.tooLarge) this.store();
      for (const e of this.waiters.splice(0)) {
        if (complete) e.answer?.end();
        else e.answer?.abort();
      }
      return;
    }
    if (state !== WAITING) return;
    // No answer began. The client of the request sent upstream left, or its request was refused: the
    // others go upstream themselves. An upstream failure reaches them as it is, once each.
    const code = this.filler.error;
    const upstream = code !== null && ERRORS[code].source === 'upstream';
    for (const e of this.waiters.splice(0)) {
      if (e.timer !== null) clearTimeout(e.timer);
      if (upstream) e.w.fail(code);
      else e.w.goUpstream();
    }
  }

  /**
   * The request sent upstream was answered from a stored object instead (its revalidation got 304, or
   * stale-if-error): the waiters get that object too.
   */
  answeredFromStore(o: CachedObject, body: Buffer | null, cacheStatus: string): void {
    this.state = DONE;
    this.release();
    for (const e of this.waiters.splice(0)) {
      if (e.timer !== null) clearTimeout(e.timer);
      if (body === null) {
        e.w.goUpstream();
        continue;
      }
      this.zone.counters.coalesced++;
      answerStored(e.w, o, body, `${cacheStatus}; collapsed`, this.rules.via);
    }
  }

  /** The zone is closing: the waiters go upstream. */
  abandon(): void {
    this.state = DONE;
    for (const e of this.waiters.splice(0)) {
      if (e.timer !== null) clearTimeout(e.timer);
      if (e.answer === null) e.w.goUpstream();
      else e.answer.abort();
    }
  }

  private answerFor(w: CacheWaiter): LocalAnswer {
    const extra: [string, string][] = [
      ['age', String(Math.floor(this.policy!.age()))],
      ['cache-status', `${this.rules.name}; fwd=miss; collapsed`],
    ];
    if (this.rules.via !== null) extra.push(['via', `1.1 ${this.rules.via}`]);
    return new LocalAnswer(w, this.status, [...this.fields, ...extra], this.length);
  }

  private keep(buf: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.bytes += end - start;
    if (this.bytes > this.zone.maxObjectBytes && !this.tooLarge) {
      this.tooLarge = true;
      this.body = [];
    }
    if (this.tooLarge && this.waiters.length === 0) return;
    // A copy: `buf` may be the shared read buffer. Kept for the zone, and written to every waiter as is.
    const copy = Buffer.from(buf.subarray(start, end));
    if (!this.tooLarge) this.body.push(copy);
    for (const e of this.waiters) e.answer?.chunk(copy);
  }

  private store(): void {
    const o: CachedObject = {
      key: this.key,
      primary: this.primary,
      status: this.status,
      fields: this.fields,
      body: Buffer.concat(this.body),
      bodyLength: this.bytes,
      file: null,
      policy: this.policy!,
      tags: tagsOf(this.fields),
      storedAt: Date.now(),
    };
    this.body = [];
    this.zone.set(o, this.vary);
  }

  private timedOut(e: Waiting): void {
    e.timer = null;
    const i = this.waiters.indexOf(e);
    if (i === -1 || e.answer !== null) return;
    this.waiters.splice(i, 1);
    e.w.goUpstream();
  }

  private release(): void {
    if (this.zone.inflight.get(this.lookupKey) === this) this.zone.inflight.delete(this.lookupKey);
  }
}

/**
 * `ttl_override`: the response is fresh for `seconds` from now, whatever its Cache-Control max-age,
 * s-maxage and Expires said; the directives that forbid storing or reusing without revalidation stay.
 */
export function overrideFreshness(headers: Record<string, string>, seconds: number): void {
  const kept = (headers['cache-control'] ?? '')
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '' && !/^(s-maxage|max-age)\s*=/i.test(d));
  kept.push(`s-maxage=${seconds}`);
  headers['cache-control'] = kept.join(', ');
  delete headers.expires;
  delete headers.age;
}
