import type { ConnectObserver, PoolOptions } from '../pool/h1-pool.ts';
import { H1Pool } from '../pool/h1-pool.ts';
import { poolKey } from '../pool/pool-key.ts';
import type { Dialer } from '../ports/dialer.ts';
import type { SelectableEndpoint } from './selection/selector.ts';

export interface PassiveHealth {
  consecutiveFailures: number;
  ejectionTimeMs: number;
}

/**
 * One resolved upstream address: (IP, port, weight), with its connection pool and passive health.
 * A DNS name in the config becomes one Endpoint per address it resolves to.
 */
export class Endpoint implements SelectableEndpoint, ConnectObserver {
  readonly key: string;
  /** The name as configured (a hostname or an IP). */
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly pool: H1Pool;
  healthy = true;
  active = 0;
  requests = 0;
  errors = 0;
  private failures = 0;
  private readonly health: PassiveHealth;
  private ejectTimer: NodeJS.Timeout | null = null;

  constructor(
    host: string,
    address: string,
    port: number,
    weight: number,
    pool: PoolOptions,
    health: PassiveHealth,
    dialer: Dialer,
  ) {
    this.key = poolKey(address, port);
    this.host = host;
    this.address = address;
    this.port = port;
    this.weight = weight;
    this.health = health;
    this.pool = new H1Pool(this.key, address, port, pool, dialer, this);
  }

  connectSucceeded(): void {
    this.failures = 0;
  }

  /** Consecutive connect failures eject the endpoint for a while so selection routes around it. */
  connectFailed(): void {
    if (++this.failures < this.health.consecutiveFailures || !this.healthy) return;
    this.healthy = false;
    this.ejectTimer = setTimeout(() => {
      this.ejectTimer = null;
      this.healthy = true;
      this.failures = 0;
    }, this.health.ejectionTimeMs);
    this.ejectTimer.unref();
  }

  close(): void {
    if (this.ejectTimer !== null) clearTimeout(this.ejectTimer);
    this.pool.close();
  }
}
