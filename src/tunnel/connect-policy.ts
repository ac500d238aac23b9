import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { CidrSet, unmapIPv4 } from '../core/cidr.ts';
import { insideSpecialRange, isSpecialAddress } from '../core/special-addresses.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { ConnectConfig, PortRange } from '../config/tunnels.ts';
import type { Fields } from './tunnel-downstream.ts';

interface HostRule {
  exact: string | null;
  /** ".example.com" for "*.example.com". */
  suffix: string | null;
  ports: readonly PortRange[];
}

interface CidrRule {
  set: CidrSet;
  ports: readonly PortRange[];
  /** The rule lies inside a special range: it may reach addresses there. */
  special: boolean;
}

export interface ResolvedTarget {
  address: string;
  family: 4 | 6;
}

/**
 * What a listener's CONNECT / CONNECT-UDP may reach (`connect:` in the config). Deny by default: a
 * target passes only if a rule allows its port and either names it (`host`, then its resolved
 * address must not be special) or contains its resolved address (`cidr`; a special address only
 * through a rule that lies inside its special range). Names are resolved once,
 * here; the address that passed is the one dialled, so a DNS answer cannot change between check and
 * connect.
 */
export class ConnectPolicy {
  readonly udp: boolean;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly udpIdleTimeoutMs: number;
  readonly maxCapsuleBytes: number;
  private readonly hostRules: HostRule[] = [];
  private readonly cidrRules: CidrRule[] = [];
  /** sha256 of each "user:password"; null = no authentication. */
  private readonly credentials: Buffer[] | null;
  private readonly realm: string;
  /** `clients`: who may use the proxy (null: anyone who reaches the listener). */
  private readonly clients: CidrSet | null;

  constructor(cfg: ConnectConfig) {
    this.udp = cfg.udp;
    this.connectTimeoutMs = cfg.connect_timeout;
    this.idleTimeoutMs = cfg.idle_timeout;
    this.udpIdleTimeoutMs = cfg.udp_idle_timeout;
    this.maxCapsuleBytes = cfg.max_capsule_bytes;
    for (const r of cfg.allow) {
      if (r.cidr !== undefined) {
        this.cidrRules.push({ set: new CidrSet([r.cidr]), ports: r.ports, special: insideSpecialRange(r.cidr) });
      } else if (r.host !== undefined) {
        const wild = r.host.startsWith('*.');
        this.hostRules.push({ exact: wild ? null : r.host, suffix: wild ? r.host.slice(1) : null, ports: r.ports });
      }
    }
    this.credentials = cfg.users === undefined ? null : cfg.users.map((u) => sha256(`${u.user}:${u.password}`));
    this.realm = cfg.realm;
    this.clients = cfg.clients === undefined ? null : new CidrSet(cfg.clients);
  }

  /** `client`: the peer, or the client a trusted PROXY header named. */
  clientAllowed(client: string): boolean {
    return this.clients === null || this.clients.has(client);
  }

  /** True when no credentials are configured or `header` carries valid Basic credentials. */
  authorized(header: string | undefined): boolean {
    const creds = this.credentials;
    if (creds === null) return true;
    if (header === undefined) return false;
    const m = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header);
    if (m === null) return false;
    const given = sha256(Buffer.from(m[1] as string, 'base64').toString('utf8'));
    // Compare with every entry, in constant time each: no early exit tells which user exists.
    let ok = false;
    for (const c of creds) if (timingSafeEqual(c, given)) ok = true;
    return ok;
  }

  /** The 407's challenge. */
  challenge(): Fields {
    return [['proxy-authenticate', `Basic realm="${this.realm}"`]];
  }

  /** Resolve `host` once and pick the first address the rules allow for `port`. */
  async resolve(host: string, port: number): Promise<ResolvedTarget | ErrorCode> {
    const name = host.toLowerCase();
    const named = this.hostRules.some((r) => hostMatches(r, name) && portIn(r.ports, port));
    if (!named && !this.cidrRules.some((r) => portIn(r.ports, port))) return 'connect_denied';
    let addresses: ResolvedTarget[];
    // The family is the unmapped address's: "::ffff:127.0.0.1" is dialled (and its UDP socket opened)
    // as the IPv4 address it stands for.
    if (isIP(name) !== 0) addresses = [target(name)];
    else {
      try {
        const all = await lookup(name, { all: true });
        addresses = all.map((a) => target(a.address));
      } catch {
        return 'connect_resolve_failed';
      }
    }
    for (const a of addresses) {
      const special = isSpecialAddress(a.address);
      if (this.cidrRules.some((r) => r.set.has(a.address) && portIn(r.ports, port) && (r.special || !special))) {
        return a;
      }
      if (named && !special) return a;
    }
    return 'connect_denied';
  }
}

function target(ip: string): ResolvedTarget {
  const address = unmapIPv4(ip);
  return { address, family: isIP(address) === 6 ? 6 : 4 };
}

function hostMatches(r: HostRule, name: string): boolean {
  if (r.exact !== null) return r.exact === name;
  return r.suffix !== null && name.length > r.suffix.length && name.endsWith(r.suffix);
}

function portIn(ranges: readonly PortRange[], port: number): boolean {
  for (const r of ranges) if (port >= r.first && port <= r.last) return true;
  return false;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** "host:port" / "[v6]:port" -> parts (the authority was validated by the request parser). */
export function splitAuthority(a: string): { host: string; port: number } | null {
  const colon = a.lastIndexOf(':');
  if (colon <= 0) return null;
  const port = Number(a.slice(colon + 1));
  let host = a.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || host === '') return null;
  return { host, port };
}
