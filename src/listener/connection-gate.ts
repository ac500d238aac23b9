import type { Socket } from 'node:net';
import type { ErrorCode } from '../core/errors.ts';
import { type Expirable, deadlineIn, sweeper } from '../core/sweeper.ts';

export interface GateLimits {
  /** Open connections of the listener; 0 = no limit. */
  maxConnections: number;
  /** Open connections per client address; 0 = no limit. */
  maxPerClient: number;
  /** Connections held (paused, unread) while the listener is at max_connections. */
  queueSize: number;
  /** How long one is held before it is closed. */
  queueTimeoutMs: number;
}

/** A connection held at the limit: admitted when one closes, in arrival order, or closed when it waited too long. */
class Held implements Expirable {
  deadline: number;
  sweepSlot = -1;
  readonly socket: Socket;
  readonly client: string;
  readonly start: () => void;
  private readonly gate: ConnectionGate;
  done = false;

  constructor(gate: ConnectionGate, socket: Socket, client: string, start: () => void, timeoutMs: number) {
    this.gate = gate;
    this.socket = socket;
    this.client = client;
    this.start = start;
    this.deadline = deadlineIn(timeoutMs);
  }

  expire(): void {
    this.gate.dropHeld(this, 'too_many_connections');
  }
}

/**
 * A listener's connection limits (`max_connections`, `max_connections_per_client`). Node cannot stop
 * accepting without closing the listening socket, so at max_connections a new connection is accepted
 * and held paused (nothing read, nothing answered) in a bounded queue, and admitted when another one
 * closes: the client waits, as it would in the kernel's backlog, instead of being accepted and closed
 * in a loop. A full queue, or a connection held longer than its timeout, is closed
 * (`too_many_connections`); a client over its own limit is closed at once
 * (`too_many_connections_per_client`). Both are counted in the listener's error codes.
 */
export class ConnectionGate {
  private limits: GateLimits;
  private readonly refuse: (socket: Socket, code: ErrorCode, client: string) => void;
  private open = 0;
  /** Open connections per client; only kept when max_connections_per_client is set. */
  private readonly perClient = new Map<string, number>();
  private readonly held: Held[] = [];
  /** Connections held at the limit since start (they may have been admitted since). */
  queuedTotal = 0;

  constructor(limits: GateLimits, refuse: (socket: Socket, code: ErrorCode, client: string) => void) {
    this.limits = limits;
    this.refuse = refuse;
  }

  get active(): boolean {
    return this.limits.maxConnections > 0 || this.limits.maxPerClient > 0;
  }

  get heldCount(): number {
    return this.held.length;
  }

  /** New limits (reload): connections already open or held stay; the new limits apply from the next one. */
  update(limits: GateLimits): void {
    this.limits = limits;
    this.admitHeld();
  }

  /**
   * `start` runs now, later (held at the limit: the socket is paused meanwhile, and `start` resumes
   * it when it reads through the stream), or never (refused).
   */
  admit(socket: Socket, client: string, start: () => void): void {
    const l = this.limits;
    if (l.maxPerClient > 0 && (this.perClient.get(client) ?? 0) >= l.maxPerClient) {
      this.refuse(socket, 'too_many_connections_per_client', client);
      return;
    }
    if (l.maxConnections > 0 && (this.open >= l.maxConnections || this.held.length > 0)) {
      if (this.held.length >= l.queueSize) {
        this.refuse(socket, 'too_many_connections', client);
        return;
      }
      socket.pause();
      const h = new Held(this, socket, client, start, l.queueTimeoutMs);
      this.held.push(h);
      this.queuedTotal++;
      sweeper.add(h);
      socket.once('close', () => this.dropHeld(h, null));
      return;
    }
    this.enter(socket, client, start);
  }

  private enter(socket: Socket, client: string, start: () => void): void {
    this.open++;
    if (this.limits.maxPerClient > 0) this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    const counted = this.limits.maxPerClient > 0;
    socket.once('close', () => this.leave(client, counted));
    start();
  }

  private leave(client: string, counted: boolean): void {
    this.open--;
    if (counted) {
      const n = (this.perClient.get(client) ?? 1) - 1;
      if (n <= 0) this.perClient.delete(client);
      else this.perClient.set(client, n);
    }
    this.admitHeld();
  }

  private admitHeld(): void {
    const max = this.limits.maxConnections;
    while (this.held.length > 0 && (max === 0 || this.open < max)) {
      const h = this.held.shift()!;
      h.done = true;
      sweeper.delete(h);
      if (h.socket.destroyed) continue;
      if (this.limits.maxPerClient > 0 && (this.perClient.get(h.client) ?? 0) >= this.limits.maxPerClient) {
        this.refuse(h.socket, 'too_many_connections_per_client', h.client);
        continue;
      }
      this.enter(h.socket, h.client, h.start);
    }
  }

  /** A held connection leaves the queue: it closed (code null) or waited too long. */
  dropHeld(h: Held, code: ErrorCode | null): void {
    if (h.done) return;
    h.done = true;
    sweeper.delete(h);
    const i = this.held.indexOf(h);
    if (i !== -1) this.held.splice(i, 1);
    if (code !== null) this.refuse(h.socket, code, h.client);
  }

  /** Shutdown: every held connection is closed. */
  closeHeld(): void {
    for (const h of this.held.splice(0)) {
      h.done = true;
      sweeper.delete(h);
      h.socket.destroy();
    }
  }
}
