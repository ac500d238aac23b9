/**
 * The local ports of one (source IP, destination IP, destination port): which are in use by our
 * connections, which are cooling, which are free. Ports of a table are unique only within that
 * 4-tuple family, so two tables (two destinations) may hand out the same port number at once: that is
 * the point. The kernel, binding with port 0, does not know the destination and cannot do this.
 *
 * Ports are handed out round robin from a cursor, so a port just released is the last to be reused:
 * if it sits in TIME_WAIT, the kernel has the longest time to let it go. A port that fails to bind or
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
  private cursor = 0;
  private coolPorts: number[] = [];
  private coolUntil: number[] = [];
  private coolHead = 0;
  /** For logs that fire at most once per interval (see PortAllocator). */
  lastWarnAt = Number.NEGATIVE_INFINITY;

  constructor(source: string, destination: string, first: number, last: number, coolingMs: number) {
    this.source = source;
    this.destination = destination;
    this.first = first;
    this.last = last;
    this.size = last - first + 1;
    this.coolingMs = coolingMs;
    this.state = new Uint8Array(this.size);
  }

  get free(): number {
    return this.size - this.inUse - this.cooling;
  }

  /** Ports in use or cooling, as a share of the range. */
  get usedRatio(): number {
    return (this.inUse + this.cooling) / this.size;
  }

  /** A free port, now marked in use; -1 when none is free (after cooled ports came back). */
  take(now: number): number {
    this.expire(now);
    if (this.free === 0) return -1;
    // Round robin from the cursor; a free port exists, so this ends within one lap.
    const state = this.state;
    let i = this.cursor;
    while (state[i] !== FREE) i = i + 1 === this.size ? 0 : i + 1;
    state[i] = IN_USE;
    this.cursor = i + 1 === this.size ? 0 : i + 1;
    this.inUse++;
    this.taken++;
    return this.first + i;
  }

  /** The connection on `port` closed: the port is free (it goes to the back of the round robin). */
  release(port: number): void {
    const i = port - this.first;
    if (this.state[i] !== IN_USE) return;
    this.state[i] = FREE;
    this.inUse--;
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
        this.state[i] = FREE;
        this.cooling--;
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
