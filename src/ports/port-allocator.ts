import { isIPv6 } from 'node:net';
import type { Logger } from '../core/log.ts';
import type { PortRange } from '../core/sysctl.ts';
import { PortTable } from './port-table.ts';

/** How a cluster leaves: its source IPs and the port range and cooling muxgate manages for them. */
export interface SourcePlan {
  cluster: string;
  sources: readonly string[];
  range: PortRange;
  coolingMs: number;
  warnRatio: number;
}

/** A local port held by one upstream connection. */
export interface PortLease {
  readonly table: PortTable;
  readonly port: number;
}

/**
 * Connections to one destination whose source port the kernel picks (no source_addresses). muxgate
 * cannot choose those ports, but it can count them against the kernel's range so the budget is still
 * visible, and name the cause when connect() fails with EADDRNOTAVAIL.
 */
export class KernelBudget {
  readonly destination: string;
  range: PortRange;
  size: number;
  inUse = 0;
  lastWarnAt = Number.NEGATIVE_INFINITY;
  /** The lowest budget_warn_ratio of the clusters dialling this destination. */
  warnRatio = 1;
  constructor(destination: string, range: PortRange) {
    this.destination = destination;
    this.range = range;
    this.size = range.last - range.first + 1;
  }

  /** The kernel's range can change at run time (sysctl -w): re-read when it matters. */
  update(range: PortRange): void {
    this.range = range;
    this.size = range.last - range.first + 1;
  }
}

/** Logs about one budget fire at most once per this interval: an exhausted budget is hit per attempt. */
export const BUDGET_LOG_INTERVAL_MS = 10_000;

/**
 * The process's source ports: one PortTable per (source IP, destination IP, destination port), made
 * on first use. Tables are shared by every cluster that reaches the same destination from the same
 * source (the first cluster's range and cooling set the table's). With several workers, each worker
 * takes its own slice of every range (`slice`) so workers never hand out the same port.
 */
export class PortAllocator {
  private readonly log: Logger;
  private readonly slice: { index: number; count: number };
  private readonly tables = new Map<string, PortTable>();
  private readonly kernel = new Map<string, KernelBudget>();
  /** Reads net.ipv4.ip_local_port_range: when a destination is first dialled, and when it runs out. */
  private readonly kernelRange: () => PortRange;
  private readonly exhaustedLogAt = new Map<string, number>();
  /** Attempts that found no free port, by destination. */
  exhausted = 0;

  constructor(log: Logger, kernelRange: () => PortRange, slice = { index: 0, count: 1 }) {
    this.log = log;
    this.kernelRange = kernelRange;
    this.slice = slice;
  }

  /**
   * A (source, port) for a connection to address:port: from the source IP with the most free ports
   * for that destination. Null when every source is exhausted (logged once per interval).
   */
  lease(plan: SourcePlan, address: string, port: number, now: number): PortLease | null {
    const destination = formatDestination(address, port);
    const v6 = isIPv6(address);
    let best: PortTable | null = null;
    for (const source of plan.sources) {
      if (isIPv6(source) !== v6) continue;
      const t = this.table(plan, source, destination);
      t.expire(now);
      if (best === null || t.free > best.free) best = t;
    }
    if (best === null) return null;
    const p = best.take(now);
    if (p === -1) {
      this.onExhausted(plan, destination, now);
      return null;
    }
    if (best.usedRatio >= plan.warnRatio && now - best.lastWarnAt >= BUDGET_LOG_INTERVAL_MS) {
      best.lastWarnAt = now;
      this.log.warn(
        { cluster: plan.cluster, ...tableFigures(best), warn_ratio: plan.warnRatio },
        'source port budget running low',
      );
    }
    return { table: best, port: p };
  }

  /** Whether any source of the plan can reach this address family. */
  reaches(plan: SourcePlan, address: string): boolean {
    const v6 = isIPv6(address);
    return plan.sources.some((s) => isIPv6(s) === v6);
  }

  /** A connection with a kernel-chosen source port is opening (paired with kernelClosed). */
  kernelOpened(address: string, port: number, cluster: string, warnRatio: number, now: number): KernelBudget {
    const destination = formatDestination(address, port);
    let b = this.kernel.get(destination);
    if (b === undefined) {
      b = new KernelBudget(destination, this.kernelRange());
      this.kernel.set(destination, b);
    }
    b.inUse++;
    if (warnRatio < b.warnRatio) b.warnRatio = warnRatio;
    if (b.inUse / b.size >= warnRatio && now - b.lastWarnAt >= BUDGET_LOG_INTERVAL_MS) {
      b.lastWarnAt = now;
      this.log.warn(
        {
          cluster,
          source: 'kernel',
          destination,
          range: `${b.range.first}-${b.range.last}`,
          in_use: b.inUse,
          size: b.size,
          warn_ratio: warnRatio,
          hint: 'set source_addresses on the cluster to multiply the budget',
        },
        'source port budget running low',
      );
    }
    return b;
  }

  kernelClosed(b: KernelBudget): void {
    b.inUse--;
  }

  /** connect() without a bound port failed with EADDRNOTAVAIL: the kernel's range is used up for this destination. */
  kernelExhausted(b: KernelBudget, cluster: string, now: number): void {
    this.exhausted++;
    const key = `kernel>${b.destination}`;
    if (now - (this.exhaustedLogAt.get(key) ?? Number.NEGATIVE_INFINITY) < BUDGET_LOG_INTERVAL_MS) return;
    this.exhaustedLogAt.set(key, now);
    b.update(this.kernelRange());
    this.log.error(
      {
        cluster,
        destination: b.destination,
        source: 'kernel',
        range: `${b.range.first}-${b.range.last}`,
        in_use: b.inUse,
        size: b.size,
        hint: 'set source_addresses on the cluster, or add endpoint ports, to multiply the budget',
      },
      'upstream ports exhausted',
    );
  }

  /** Every table and kernel budget, for the stats snapshot. */
  budgets(now: number): BudgetFigures[] {
    const out: BudgetFigures[] = [];
    for (const t of this.tables.values()) {
      t.expire(now);
      out.push(tableFigures(t));
    }
    for (const b of this.kernel.values()) {
      out.push({
        source: 'kernel',
        destination: b.destination,
        range: `${b.range.first}-${b.range.last}`,
        size: b.size,
        in_use: b.inUse,
        cooling: 0,
        free: Math.max(0, b.size - b.inUse),
        warn_ratio: b.warnRatio,
      });
    }
    return out;
  }

  private onExhausted(plan: SourcePlan, destination: string, now: number): void {
    this.exhausted++;
    if (now - (this.exhaustedLogAt.get(destination) ?? Number.NEGATIVE_INFINITY) < BUDGET_LOG_INTERVAL_MS) return;
    this.exhaustedLogAt.set(destination, now);
    const per = plan.sources
      .map((s) => this.tables.get(`${s}>${destination}`))
      .filter((t): t is PortTable => t !== undefined)
      .map(tableFigures);
    this.log.error(
      {
        cluster: plan.cluster,
        destination,
        sources: per,
        hint: 'add source_addresses or endpoint ports, or lower port_cooling',
      },
      'upstream ports exhausted',
    );
  }

  private table(plan: SourcePlan, source: string, destination: string): PortTable {
    const key = `${source}>${destination}`;
    let t = this.tables.get(key);
    if (t === undefined) {
      const { first, last } = sliceOf(plan.range, this.slice.index, this.slice.count);
      t = new PortTable(source, destination, first, last, plan.coolingMs);
      this.tables.set(key, t);
    }
    if (plan.warnRatio < t.warnRatio) t.warnRatio = plan.warnRatio;
    return t;
  }
}

export interface BudgetFigures {
  source: string;
  destination: string;
  range: string;
  size: number;
  in_use: number;
  cooling: number;
  free: number;
  /** Share of the budget (in use + cooling) past which it is running low: budget_warn_ratio. */
  warn_ratio: number;
}

function tableFigures(t: PortTable): BudgetFigures {
  return {
    source: t.source,
    destination: t.destination,
    range: `${t.first}-${t.last}`,
    size: t.size,
    in_use: t.inUse,
    cooling: t.cooling,
    free: t.free,
    warn_ratio: t.warnRatio,
  };
}

/**
 * Worker `index` of `count` gets the index-th contiguous slice of the range (the last takes the rest).
 * With fewer ports than workers, the first workers get one port each and the rest none (an empty
 * range, first > last): workers must never hand out the same port.
 */
export function sliceOf(range: PortRange, index: number, count: number): PortRange {
  const size = range.last - range.first + 1;
  if (count <= 1) return range;
  if (size < count) {
    return index < size
      ? { first: range.first + index, last: range.first + index }
      : { first: range.first, last: range.first - 1 };
  }
  const each = Math.floor(size / count);
  const first = range.first + index * each;
  const last = index === count - 1 ? range.last : first + each - 1;
  return { first, last };
}

export function formatDestination(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
