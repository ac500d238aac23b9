import type { SniRouteConfig } from '../config/edge.ts';

/**
 * Which cluster a passed-through TLS connection goes to, from its ClientHello: the first route whose
 * server names match (exact, or a "*." wildcard covering one or more labels) and whose ALPN list
 * shares a protocol with the client's offer; no match, the listener's default. Names are compared
 * lower-cased (the ClientHello reader lower-cases them).
 */
export class SniRouter<C> {
  private readonly routes: { exact: Set<string> | null; suffixes: string[]; alpn: string[] | null; target: C }[];
  private readonly fallback: C | null;

  constructor(routes: readonly SniRouteConfig[], target: (cluster: string) => C, fallback: C | null) {
    this.routes = routes.map((r) => {
      const names = r.server_names ?? null;
      return {
        exact: names === null ? null : new Set(names.filter((n) => !n.startsWith('*.'))),
        // "*.example.com" -> ".example.com"
        suffixes: names === null ? [] : names.filter((n) => n.startsWith('*.')).map((n) => n.slice(1)),
        alpn: r.alpn ?? null,
        target: target(r.cluster),
      };
    });
    this.fallback = fallback;
  }

  pick(serverName: string | null, alpn: readonly string[]): C | null {
    for (const r of this.routes) {
      if (r.exact !== null) {
        if (serverName === null) continue;
        if (
          !r.exact.has(serverName) &&
          !r.suffixes.some((s) => serverName.length > s.length && serverName.endsWith(s))
        ) {
          continue;
        }
      }
      if (r.alpn !== null && !r.alpn.some((p) => alpn.includes(p))) continue;
      return r.target;
    }
    return this.fallback;
  }
}
