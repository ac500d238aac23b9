import type { SelectableEndpoint } from './selector.ts';

/**
 * Endpoint indexes sorted by key, in code-unit order (locale-independent). Hash-based tables are
 * built in this order so they depend only on the set of endpoints, not on list order: every proxy
 * instance, and every rebuild after a DNS answer comes back shuffled, maps keys the same way.
 */
export function indexesByKey(endpoints: readonly SelectableEndpoint[]): number[] {
  const order: number[] = [];
  for (let i = 0; i < endpoints.length; i++) order.push(i);
  return order.sort((a, b) => {
    const ka = endpoints[a]!.key;
    const kb = endpoints[b]!.key;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}
