import { readFileSync } from 'node:fs';

/**
 * Kernel settings muxgate reads at start (and `muxgate doctor` prints). Each reader returns null when
 * the file is absent (not Linux, a namespace without it, a module not loaded): callers fall back to
 * the Linux default and say so.
 */
export function readSysctl(name: string): string | null {
  try {
    return readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8').trim();
  } catch {
    return null;
  }
}

export function readSysctlInt(name: string): number | null {
  const v = readSysctl(name);
  if (v === null) return null;
  const n = Number(v.split(/\s+/)[0]);
  return Number.isFinite(n) ? n : null;
}

export interface PortRange {
  first: number;
  last: number;
}

/** Linux's defaults, used when /proc says nothing. */
export const DEFAULT_EPHEMERAL_RANGE: PortRange = { first: 32768, last: 60999 };
export const DEFAULT_FIN_TIMEOUT_S = 60;

/** net.ipv4.ip_local_port_range: the ports the kernel picks from for connect() without a bound port. */
export function ephemeralPortRange(): PortRange | null {
  const v = readSysctl('net.ipv4.ip_local_port_range');
  if (v === null) return null;
  const [a, b] = v.split(/\s+/).map(Number);
  if (a === undefined || b === undefined || !Number.isInteger(a) || !Number.isInteger(b) || a > b) return null;
  return { first: a, last: b };
}

/** Soft and hard RLIMIT_NOFILE of this process, from /proc/self/limits. */
export function openFileLimits(): { soft: number | null; hard: number | null } {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const parts = line?.slice('Max open files'.length).trim().split(/\s+/) ?? [];
    const num = (s: string | undefined) => (s === undefined || s === 'unlimited' ? null : Number(s));
    return { soft: num(parts[0]), hard: num(parts[1]) };
  } catch {
    return { soft: null, hard: null };
  }
}
