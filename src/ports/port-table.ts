/**
 * The local ports of one (source IP, destination IP, destination port): which are in use by our
 * connections, which are cooling, which are free. Ports of a table are unique only within that
 * 4-tuple family, so two tables (two destinations) may hand out the same port number at once: that is
 * the point. The kernel, binding with port 0, does not know the destination and cannot do this.
 *
 * Free ports wait in a FIFO: the port free the longest goes first, and a port just released (or back
 * from cooling) is the last to be reused: if it sits in TIME_WAIT, the kernel has the longest time to
 * let it go. A port that fails to bind or
 * connect (EADDRINUSE / EADDRNOTAVAIL: TIME_WAIT, or a connection we do not know about) cools for
 * `coolingMs` before it is tried again. Cooling is a FIFO: every port cools for the same time.
 */
const FREE = 0;
const IN_USE = 1;
const COOLING = 2;

export class PortTable {
  readonly source: string;
  readonly destination: string;
  readonly first: number;
  readonly last: number;
  readonly size: number;
  readonly coolingMs: number;
  inUse = 0;
  cooling = 0;
  /** Ports handed out over the table's life, and ports that failed to bind/connect. */
  taken = 0;
  failed = 0;
  private readonly state: Uint8Array;
  /** Free ports (offsets from `first`) in the order they became free: a ring of `size` slots. */
  private readonly freeRing: Uint16Array;
  private freeHead = 0;
  private freeCount: number;
  private coolPorts: number[] = [];
  private coolUntil: number[] = [];
  private coolHead = 0;
  /** For logs that fire at most once per interval (see PortAllocator). */
  lastWarnAt = Number.NEGATIVE_INFINITY;
  /** The lowest budget_warn_ratio of the clusters using this table (the dashboard turns amber there). */
  warnRatio = 1;

  constructor(source: string, destination: string, first: number, last: number, coolingMs: number) {
    this.source = source;
    this.destination = destination;
    this.first = first;
    this.last = last;
    this.size = last - first + 1;
    this.coolingMs = coolingMs;
    this.state = new Uint8Array(Math.max(0, this.size));
    this.freeRing = new Uint16Array(Math.max(0, this.size));
    for (let i = 0; i < this.size; i++) this.freeRing[i] = i;
    this.freeCount = Math.max(0, this.size);
  }

  get free(): number {
    return this.freeCount;
  }

  /** Ports in use or cooling, as a share of the range. */
  get usedRatio(): number {
    return this.size === 0 ? 1 : (this.inUse + this.cooling) / this.size;
  }

  /** The port free the longest, now marked in use; -1 when none is free (after cooled ports came back). */
  take(now: number): number {
    this.expire(now);
    if (this.freeCount === 0) return -1;
    const i = this.freeRing[this.freeHead] ?? 0;
    this.freeHead = this.freeHead + 1 === this.size ? 0 : this.freeHead + 1;
    this.freeCount--;
    this.state[i] = IN_USE;
    this.inUse++;
    this.taken++;
    return this.first + i;
  }

  /** The connection on `port` closed: the port is free, at the back of the queue. */
  release(port: number): void {
    const i = port - this.first;
    if (this.state[i] !== IN_USE) return;
    this.inUse--;
    this.pushFree(i);
  }

  private pushFree(i: number): void {
    this.state[i] = FREE;
    let tail = this.freeHead + this.freeCount;
    if (tail >= this.size) tail -= this.size;
    this.freeRing[tail] = i;
    this.freeCount++;
  }

  /** `port` could not be bound or connected: leave it alone for coolingMs. */
  cool(port: number, now: number): void {
    const i = port - this.first;
    if (this.state[i] !== IN_USE) return;
    this.state[i] = COOLING;
    this.inUse--;
    this.cooling++;
    this.failed++;
    this.coolPorts.push(port);
    this.coolUntil.push(now + this.coolingMs);
  }

  /** Cooled ports whose time is up become free. */
  expire(now: number): void {
    let h = this.coolHead;
    const ports = this.coolPorts;
    const until = this.coolUntil;
    while (h < ports.length && (until[h] ?? 0) <= now) {
      const i = (ports[h] ?? 0) - this.first;
      if (this.state[i] === COOLING) {
        this.cooling--;
        this.pushFree(i);
      }
      h++;
    }
    if (h === ports.length) {
      this.coolPorts = [];
      this.coolUntil = [];
      h = 0;
    } else if (h > 1024 && h * 2 > ports.length) {
      this.coolPorts = ports.slice(h);
      this.coolUntil = until.slice(h);
      h = 0;
    }
    this.coolHead = h;
  }
}
