import { Buffer } from 'node:buffer';
import { isIP, SocketAddress } from 'node:net';
import { CidrSet, unmapIPv4 } from './cidr.ts';

/**
 * Addresses a forward proxy must not reach just because a name or a broad rule pointed there:
 * loopback, private (RFC 1918, ULA), shared (CGNAT), link-local (cloud metadata lives at
 * 169.254.169.254), multicast, documentation, reserved and unspecified ranges, and the IPv6
 * prefixes that embed an IPv4 address (NAT64, 6to4, IPv4-compatible). Only a `cidr` rule that lies
 * inside one of them opts (that part of) it back in: `127.0.0.1/32` reaches loopback, `0.0.0.0/0`
 * ("anywhere") does not.
 */
const SPECIAL_RANGES = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::/96',
  '::1/128',
  '64:ff9b::/96',
  '64:ff9b:1::/48',
  '100::/64',
  '2001:db8::/32',
  '2002::/16',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
] as const;
const SPECIAL = new CidrSet(SPECIAL_RANGES);

export function isSpecialAddress(ip: string): boolean {
  return SPECIAL.has(ip);
}

/** True when the whole of `cidr` lies inside one special range (so a rule for it may reach it). */
export function insideSpecialRange(cidr: string): boolean {
  const r = parseCidr(cidr);
  if (r === null) return false;
  return SPECIAL_RANGES.some((s) => {
    const p = parseCidr(s)!;
    return p.v6 === r.v6 && p.bits <= r.bits && prefixEqual(p.addr, r.addr, p.bits);
  });
}

/** A rule broader than every special range it touches: it is not how one reaches them (`muxgate check` warns). */
export function coversSpecialRange(cidr: string): boolean {
  const r = parseCidr(cidr);
  if (r === null || insideSpecialRange(cidr)) return false;
  return SPECIAL_RANGES.some((s) => {
    const p = parseCidr(s)!;
    return p.v6 === r.v6 && r.bits <= p.bits && prefixEqual(p.addr, r.addr, r.bits);
  });
}

interface ParsedCidr {
  v6: boolean;
  addr: Buffer;
  bits: number;
}

function parseCidr(cidr: string): ParsedCidr | null {
  const slash = cidr.indexOf('/');
  const ip = unmapIPv4(slash === -1 ? cidr : cidr.slice(0, slash));
  const family = isIP(ip);
  if (family === 0) return null;
  const v6 = family === 6;
  const bits = slash === -1 ? (v6 ? 128 : 32) : Number(cidr.slice(slash + 1));
  const addr = new SocketAddress({ address: ip, family: v6 ? 'ipv6' : 'ipv4' });
  return { v6, addr: addressBytes(addr.address, v6), bits };
}

function addressBytes(ip: string, v6: boolean): Buffer {
  if (!v6) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail = ''] = ip.split('::');
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const h = groups(head);
  const t = groups(tail);
  const all = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  for (let i = 0; i < all.length; i++) out.writeUInt16BE(Number.parseInt(all[i] ?? '0', 16), i * 2);
  return out;
}

function prefixEqual(a: Buffer, b: Buffer, bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if (((a[byte] ?? 0) & mask) !== ((b[byte] ?? 0) & mask)) return false;
  }
  return true;
}
