import { ERRORS, type ErrorCode } from '../core/errors.ts';
import type { ResponseTap } from '../forward/response-tap.ts';
import { requestField } from '../http1/request-head.ts';
import { CacheFill, type CacheWaiter } from './cache-fill.ts';
import { policyRequest, variantKey } from './cache-key.ts';
import { type CachedObject, headerObject } from './cached-object.ts';
import type { RouteCache } from './route-cache.ts';
import { answerStored } from './stored-answer.ts';

/** What the cache needs of the exchange it serves (forward/exchange.ts). */
export interface CacheExchange extends CacheWaiter {
  tap: ResponseTap | null;
  /** Field lines added to the upstream request (a revalidation's conditionals). */
  extraUpstreamFields: string;
  readonly keyed: boolean;
  readonly error: ErrorCode | null;
  /** stale-while-revalidate: a copy of the request, with no client, refreshes the object. */
  revalidateInBackground(): void;
}

/** `only-if-cached` among a Cache-Control value's directives. */
const ONLY_IF_CACHED = /(?:^|,)\s*only-if-cached\s*(?:,|$)/i;

/** Client fields that make a request its own: answered by the stored object, never coalesced or filling. */
const OWN_CONDITIONS = ['if-none-match', 'if-modified-since', 'if-range', 'if-match', 'if-unmodified-since', 'range'];

/**
 * One request on a route with `cache:`, from lookup to answer: a fresh hit is answered at once; a miss
 * for a key already being fetched waits on that fetch (coalescing); another miss goes upstream and
 * fills the zone; a stale object is revalidated (the request carries its validators, and a 304 brings
 * the stored object back to life), or served when the upstream fails and stale-if-error allows.
 * `status` is the Cache-Status (RFC 9211) of what the client gets.
 */
export class CacheUse {
  private readonly rc: RouteCache;
  private readonly ex: CacheExchange;
  private readonly scheme: string;
  /** Cache-Status parameters after the cache's name, for a response relayed from upstream. */
  private status = 'fwd=miss';
  private primary = '';
  /** The stale object this request revalidates (it may still serve it on a 304 or an error). */
  private stale: CachedObject | null = null;
  private fill: CacheFill | null = null;
  private waitingOn: CacheFill | null = null;
  /** Location and Content-Location of an unsafe request's answer. */
  private locations: string[] = [];
  /** What the client was told (the last Cache-Status parameters made), for the access log. */
  logged: string | undefined = undefined;
  /** The request's strings for http-cache-semantics (made at lookup). */
  private req: ReturnType<typeof policyRequest> | null = null;

  constructor(rc: RouteCache, ex: CacheExchange, scheme: string) {
    this.rc = rc;
    this.ex = ex;
    this.scheme = scheme;
  }

  /** Before going upstream. True: the request was answered, or waits on another's fetch. */
  intercept(): boolean {
    const { ex, rc } = this;
    const zone = rc.zone;
    const head = ex.head;
    if (head.method !== 'GET' && head.method !== 'HEAD') {
      this.status = 'fwd=method';
      return false;
    }
    if (ex.keyed || rc.bypassed(head)) {
      this.status = 'fwd=bypass';
      zone.counters.bypassed++;
      return false;
    }
    const primary = rc.primary(head, this.scheme);
    this.primary = primary;
    const req = policyRequest(head, primary);
    this.req = req;
    const vary = zone.varyOf(primary);
    const key = variantKey(primary, req.headers, vary ?? []);
    const own = OWN_CONDITIONS.some((f) => requestField(head, f) !== undefined);
    const onlyIfCached = ONLY_IF_CACHED.test(String(req.headers['cache-control'] ?? ''));
    const o = zone.get(key);
    if (o !== undefined) {
      const ev = o.policy.evaluateRequest(req);
      if (ev.response !== undefined && ev.revalidation === undefined) {
        const status = this.line(`hit; ttl=${ttlOf(o)}`);
        zone.bodyOf(o, (body) => {
          if (body !== null) {
            zone.counters.hits++;
            answerStored(ex, o, body, status, rc.rules.via);
            return;
          }
          // Its file is gone or damaged (a disk zone dropped it): a miss after all.
          zone.counters.misses++;
          this.status = 'fwd=miss';
          ex.goUpstream();
        });
        return true;
      }
      // stale-while-revalidate (RFC 5861 §3): the stale object answers now, and one request without a
      // client refreshes it (unless one is on its way already, or this is that request).
      const rv = ev.revalidation;
      if (ev.response !== undefined && rv !== undefined && !rv.synchronous && ex.session.background !== true) {
        const status = this.line(`hit; ttl=${ttlOf(o)}; detail=stale-while-revalidate`);
        zone.bodyOf(o, (body) => {
          if (body === null) {
            zone.counters.misses++;
            this.status = 'fwd=miss';
            ex.goUpstream();
            return;
          }
          zone.counters.stale_served++;
          // First, while the request head is still this request's (answering may start the next one).
          if (head.method === 'GET' && !zone.inflight.has(key)) ex.revalidateInBackground();
          answerStored(ex, o, body, status, rc.rules.via);
        });
        return true;
      }
      if (onlyIfCached) return this.refuseOnlyIfCached('fwd=stale');
      // Stale (or the client asked for a fresh answer): ask the upstream, with our validators when
      // the request has no conditions of its own; the stored object stays at hand for a 304 or an error.
      this.stale = o;
      this.status = 'fwd=stale';
      zone.counters.revalidations++;
      if (own) return false;
      const rh = o.policy.revalidationHeaders(req);
      let lines = '';
      for (const f of ['if-none-match', 'if-modified-since'] as const) {
        const v = rh[f];
        if (typeof v === 'string') lines += `${f}: ${v}\r\n`;
      }
      ex.extraUpstreamFields = lines;
      if (head.method === 'GET' && !zone.inflight.has(key)) this.startFill(key, req);
      return false;
    }
    zone.counters.misses++;
    this.status = vary === undefined ? 'fwd=uri-miss' : 'fwd=vary-miss';
    if (onlyIfCached) return this.refuseOnlyIfCached(this.status);
    if (own) return false;
    const fill = zone.inflight.get(key);
    if (fill?.join(ex, rc.coalesceTimeoutMs, req.headers)) {
      this.waitingOn = fill;
      return true;
    }
    // HEAD fetches no body to store: it goes upstream alone.
    if (head.method === 'GET') this.startFill(key, req);
    return false;
  }

  /** RFC 9111 §5.2.1.7: nothing stored may answer, and the client said not to go upstream: 504. */
  private refuseOnlyIfCached(why: string): true {
    this.line(`${why}; detail=only-if-cached`);
    this.ex.fail('cache_only_if_cached');
    return true;
  }

  /** The Cache-Status field value for a response relayed from upstream. */
  relayedStatus(): string {
    const stored = this.fill?.storing === true;
    return this.line(stored ? `${this.status}; stored` : this.status);
  }

  /**
   * The upstream's final head: whether the cache answers instead (the request revalidated a stale
   * object and got 304, or a 5xx while stale-if-error allows the stale one). The exchange has dropped
   * the upstream side when this is asked to `answer`.
   */
  takesOver(status: number): boolean {
    const o = this.stale;
    if (o === null) return false;
    if (status === 304) return this.ex.extraUpstreamFields !== '';
    return status >= 500 && staleIfErrorAllows(o);
  }

  answer(status: number, flat: readonly string[]): void {
    const o = this.stale!;
    const zone = this.rc.zone;
    if (status === 304) {
      const fields: [string, string][] = [];
      for (let i = 2; i + 1 < flat.length; i += 2) fields.push([flat[i]!, flat[i + 1]!]);
      const { policy } = o.policy.revalidatedPolicy(this.req!, {
        status,
        headers: headerObject(fields),
      });
      const names = new Set(fields.map(([n]) => n));
      names.delete('content-length');
      names.delete('transfer-encoding');
      names.delete('age');
      const merged: [string, string][] = [
        ...o.fields.filter(([n]) => !names.has(n)),
        ...fields.filter(([n]) => names.has(n)),
      ];
      const fresh: CachedObject = { ...o, fields: merged, policy, storedAt: Date.now() };
      zone.set(fresh, zone.varyOf(o.primary) ?? []);
      this.serve(fresh, 'fwd=stale; fwd-status=304');
      return;
    }
    zone.counters.stale_served++;
    this.serve(o, `fwd=stale; fwd-status=${status}; detail=stale-if-error`);
  }

  /** The request failed before an answer (`code`): whether a stale object may answer instead (stale-if-error). */
  servesStaleFor(code: ErrorCode): boolean {
    const o = this.stale;
    return o !== null && ERRORS[code].source === 'upstream' && staleIfErrorAllows(o);
  }

  /** After `servesStaleFor` said yes; the exchange has dropped its upstream side. */
  serveStaleFor(code: ErrorCode): void {
    this.rc.zone.counters.stale_served++;
    this.serve(this.stale!, `fwd=stale; detail=stale-if-error; error=${code}`);
  }

  /**
   * The upstream's final head: for an unsafe method, the URLs its Location and Content-Location name
   * are invalidated with the target's if it succeeds (RFC 9111 §4.4). `flat()`: name, value, ... with
   * the status line's pair first; made only for unsafe methods.
   */
  sawHead(flat: () => readonly string[]): void {
    if (!this.rc.unsafe(this.ex.head.method)) return;
    const f = flat();
    for (let i = 2; i + 1 < f.length; i += 2) {
      const n = f[i]!.toLowerCase();
      if (n === 'location' || n === 'content-location') this.locations.push(f[i + 1]!);
    }
  }

  /** The response was relayed whole: an unsafe method's success invalidates what is stored for the URL. */
  completed(status: number): void {
    this.rc.invalidate(this.ex.head, this.scheme, status, this.locations);
  }

  /** This request is fetching for others waiting on it (its client leaving should not stop it). */
  fillHasWaiters(): boolean {
    return this.fill !== null && this.fill.waiting > 0;
  }

  /** The exchange ended without an answer from here (its client left): it stops waiting. */
  ended(): void {
    this.waitingOn?.leave(this.ex);
    this.waitingOn = null;
  }

  /** Answers the request (and its waiters) from `o`; a body that cannot be read sends them upstream again. */
  private serve(o: CachedObject, params: string): void {
    const status = this.line(params);
    const fill = this.fill;
    this.fill = null;
    if (this.ex.tap === fill) this.ex.tap = null;
    this.rc.zone.bodyOf(o, (body) => {
      fill?.answeredFromStore(o, body, status);
      if (body !== null) {
        answerStored(this.ex, o, body, status, this.rc.rules.via);
        return;
      }
      this.stale = null;
      this.ex.extraUpstreamFields = '';
      this.status = 'fwd=miss';
      this.ex.goUpstream();
    });
  }

  private startFill(key: string, req: ReturnType<typeof policyRequest>): void {
    if (this.ex.tap !== null) return;
    this.fill = new CacheFill(this.rc.zone, key, this.primary, req, this.rc.rules, this.ex);
    this.ex.tap = this.fill;
  }

  private line(params: string): string {
    this.logged = params;
    return `${this.rc.rules.name}; ${params}`;
  }
}

/** Seconds of freshness left (negative: stale by that much), as Cache-Status `ttl` says it. */
function ttlOf(o: CachedObject): number {
  return Math.round(o.policy.maxAge() - o.policy.age());
}

/** RFC 5861 §4: within `stale-if-error` seconds past its freshness, a stale object may answer an error. */
function staleIfErrorAllows(o: CachedObject): boolean {
  const cc = o.fields.find(([n]) => n === 'cache-control')?.[1] ?? '';
  const m = /(?:^|,)\s*stale-if-error\s*=\s*"?(\d+)/i.exec(cc);
  if (m === null) return false;
  return o.policy.maxAge() + Number(m[1]) > o.policy.age();
}
