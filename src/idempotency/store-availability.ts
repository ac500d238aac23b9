/**
 * A store's up/down state, reported on change only: the proxy logs one line per outage, not one per
 * failed request or per reconnect attempt. Starts `up`, so an unreachable store at startup is reported
 * as `down` like any other outage.
 */
import type { StoreState, StoreStateListener } from './idempotency-store.ts';

export class StoreAvailability {
  private current: StoreState = 'up';
  private readonly listeners = new Set<StoreStateListener>();

  get state(): StoreState {
    return this.current;
  }

  down(cause: Error): void {
    if (this.current === 'down') return;
    this.current = 'down';
    for (const l of this.listeners) l('down', cause);
  }

  up(): void {
    if (this.current === 'up') return;
    this.current = 'up';
    for (const l of this.listeners) l('up', undefined);
  }

  subscribe(listener: StoreStateListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  clear(): void {
    this.listeners.clear();
  }
}
