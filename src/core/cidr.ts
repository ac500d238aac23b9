import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * A set of CIDR ranges answering "is this peer trusted?". Built on node's BlockList, which compares
 * parsed addresses and understands IPv4-mapped IPv6 peers only if we unmap them first.
 */
export class CidrSet {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const slash = c.indexOf('/');
      const ip = slash === -1 ? c : c.slice(0, slash);
      const family = isIPv6(ip) ? 'ipv6' : 'ipv4';
      const bits = slash === -1 ? (family === 'ipv6' ? 128 : 32) : Number(c.slice(slash + 1));
      this.list.addSubnet(ip, bits, family);
    }
    this.size = cidrs.length;
  }

  has(address: string | undefined): boolean {
    if (this.size === 0 || address === undefined) return false;
    const ip = unmapIPv4(address);
    if (isIPv4(ip)) return this.list.check(ip, 'ipv4');
    if (isIPv6(ip)) return this.list.check(ip, 'ipv6');
    return false;
  }
}

/** "::ffff:10.0.0.1" -> "10.0.0.1" (dual-stack listeners report IPv4 peers this way). */
export function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && address.indexOf('.') !== -1 ? address.slice(7) : address;
}
