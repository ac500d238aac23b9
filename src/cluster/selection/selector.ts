/**
 * The load-balancing contract. A Selector is built over a fixed list of endpoints (rebuilt when the
 * list changes, e.g. after DNS re-resolution) and picks one per request. Selectors never pick an
 * endpoint whose `healthy` is false; they return undefined when no healthy endpoint remains.
 */
export interface SelectableEndpoint {
  /** Stable identity, e.g. "10.0.0.1:8080". Hash-based selectors hash this, so it must not change. */
  readonly key: string;
  /** Relative weight, integer >= 1. */
  readonly weight: number;
  /** False while the endpoint is ejected (connect failures) or removed; selectors skip it. */
  healthy: boolean;
  /** Requests currently in flight to this endpoint (read by least_request). */
  active: number;
}

export interface Selector<E extends SelectableEndpoint = SelectableEndpoint> {
  /**
   * Pick an endpoint. `hashKey` is the request's hash key for ring_hash and maglev (from a header,
   * a cookie or the client IP); other algorithms ignore it. A hash-based selector given no key
   * falls back to a random pick.
   */
  pick(hashKey: string | undefined): E | undefined;
}

export type LbPolicy = 'round_robin' | 'least_request' | 'least_connections' | 'random' | 'ring_hash' | 'maglev';
