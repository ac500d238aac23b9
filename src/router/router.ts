import { type RequestHead, requestField } from '../http1/request-head.ts';
import type { HeaderMatch, Route } from './route.ts';

/**
 * First-match routing over an ordered list of routes. Matching is cheap checks first (method set,
 * host set) so most non-matching routes are rejected without touching the path or headers.
 */
export class Router {
  readonly routes: readonly Route[];

  /** One-entry memo of the normalised Host: most requests on a listener repeat the previous one's. */
  private lastHost: string | null = null;
  private lastKey = '';

  constructor(routes: readonly Route[]) {
    this.routes = routes;
  }

  /**
   * The route of a request, the one entry point every listener kind uses: Host without its port and
   * lower-cased, `path` without the query (`pathOf`), `method` as given (a WebSocket over RFC 8441
   * routes as the GET it stands for).
   */
  route(head: RequestHead, path: string = pathOf(head.target), method: string = head.method): Route | null {
    const host = head.host;
    if (host !== this.lastHost) {
      this.lastHost = host;
      this.lastKey = hostWithoutPort(host);
    }
    return this.match(method, this.lastKey, path, head);
  }

  /**
   * The first route matching the request. `host` is without port and lower-cased; `path` excludes the
   * query string and is matched as received (not percent-decoded). Arguments, not an object: this runs
   * for every request.
   */
  match(method: string, host: string, path: string, head: RequestHead): Route | null {
    const routes = this.routes;
    for (let i = 0; i < routes.length; i++) {
      const r = routes[i]!;
      if (r.methods !== null && !r.methods.has(method)) continue;
      if (r.hostsExact !== null && !hostMatches(r, host)) continue;
      if (r.path !== null && !pathMatches(r, path)) continue;
      if (r.headers.length !== 0 && !headersMatch(r.headers, head)) continue;
      return r;
    }
    return null;
  }
}

function hostMatches(r: Route, host: string): boolean {
  if (r.hostsExact!.has(host)) return true;
  for (const suffix of r.hostSuffixes) {
    // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
    if (host.length > suffix.length && host.endsWith(suffix)) return true;
  }
  return false;
}

function pathMatches(r: Route, path: string): boolean {
  const m = r.path!;
  if (m.kind === 'prefix') return path.startsWith(m.value);
  if (m.kind === 'exact') return path === m.value;
  return m.re.test(path);
}

function headersMatch(matchers: readonly HeaderMatch[], head: RequestHead): boolean {
  for (const h of matchers) {
    const v = requestField(head, h.name);
    if (h.present === true) {
      if (v === undefined) return false;
      continue;
    }
    if (h.present === false) {
      if (v !== undefined) return false;
      continue;
    }
    if (v === undefined) return false;
    if (h.exact !== undefined && v !== h.exact) return false;
    if (h.regex !== undefined && !h.regex.test(v)) return false;
  }
  return true;
}

/** The request target without its query: what routes match paths against. */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/** "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]". */
export function hostWithoutPort(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    end = close === -1 ? host.length : close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  const h = end === host.length ? host : host.slice(0, end);
  return h.toLowerCase();
}
