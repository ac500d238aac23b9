import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { tcpListenerClusters } from '../config/edge.ts';
import type { ClusterConfig, Config } from '../config/schema.ts';
import {
  DEFAULT_EPHEMERAL_RANGE,
  ephemeralPortRange,
  openFileLimits,
  type PortRange,
  readSysctl,
  readSysctlInt,
} from '../core/sysctl.ts';
import { LISTEN_BACKLOG } from '../listener/listen.ts';
import { sliceOf } from '../ports/port-allocator.ts';

export { LISTEN_BACKLOG };

/** What `muxgate doctor` reads from the kernel. null = not readable (or, for nf_conntrack_max, not present). */
export interface MachineFacts {
  ephemeral_port_range: PortRange | null;
  open_files_soft: number | null;
  open_files_hard: number | null;
  nr_open: number | null;
  file_max: number | null;
  somaxconn: number | null;
  tcp_tw_reuse: number | null;
  tcp_fin_timeout: number | null;
  /** 1: a closing listener's queued connections move to another socket of its SO_REUSEPORT group (upgrades). */
  tcp_migrate_req: number | null;
  nf_conntrack_max: number | null;
  /** null when empty. */
  ip_local_reserved_ports: string | null;
  /** What workers: auto resolves to. */
  cpus: number;
}

export interface RangeReport {
  first: number;
  last: number;
  size: number;
}

export type MachineReport = Omit<MachineFacts, 'ephemeral_port_range'> & {
  ephemeral_port_range: RangeReport;
  /** The range could not be read: Linux's default is assumed (as muxgate does at start). */
  ephemeral_port_range_assumed: boolean;
};

export type ClusterUse = 'tcp' | 'http1' | 'both' | 'none';

export interface ClusterReport {
  name: string;
  used_by: ClusterUse;
  /** null: the kernel picks source address and port. */
  source_addresses: number | null;
  port_range: RangeReport;
  port_range_from: 'source_port_range' | 'kernel';
  endpoints: number;
  /** Endpoint hosts that are DNS names, each counted as one address. */
  dns_names: string[];
  port_budget_per_endpoint: number;
  /** pool.max_connections × workers; null when no http1 route uses the cluster. */
  pool_cap_per_endpoint: number | null;
  max_per_endpoint: number;
  max_total: number;
  /** Upstream connections one worker may hold for this cluster, and the fds they (and tcp clients) take. */
  upstream_per_worker: number;
  fds_per_worker: number;
}

export interface TotalReport {
  workers: number;
  upstream_connections: number;
  /** Client side of tcp listeners (one per upstream connection); http1 clients are not bounded by the config. */
  tcp_client_connections: number;
  connections: number;
  upstream_per_worker: number;
  fds_per_worker: number;
  fds_all_workers: number;
}

export interface DoctorReport {
  machine: MachineReport;
  clusters: ClusterReport[];
  total: TotalReport | null;
  warnings: string[];
}

export function readMachineFacts(): MachineFacts {
  const files = openFileLimits();
  const reserved = readSysctl('net.ipv4.ip_local_reserved_ports');
  return {
    ephemeral_port_range: ephemeralPortRange(),
    open_files_soft: files.soft,
    open_files_hard: files.hard,
    nr_open: readSysctlInt('fs.nr_open'),
    file_max: readSysctlInt('fs.file-max'),
    somaxconn: readSysctlInt('net.core.somaxconn'),
    tcp_tw_reuse: readSysctlInt('net.ipv4.tcp_tw_reuse'),
    tcp_fin_timeout: readSysctlInt('net.ipv4.tcp_fin_timeout'),
    tcp_migrate_req: readSysctlInt('net.ipv4.tcp_migrate_req'),
    nf_conntrack_max: readSysctlInt('net.netfilter.nf_conntrack_max'),
    ip_local_reserved_ports: reserved === null || reserved === '' ? null : reserved,
    cpus: availableParallelism(),
  };
}

function rangeReport(r: PortRange): RangeReport {
  return { first: r.first, last: r.last, size: r.last - r.first + 1 };
}

/** Thousands separators, so budgets are readable; never used for port numbers. */
export function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

function plural(n: number, word: string): string {
  return `${fmt(n)} ${word}${n === 1 ? '' : 's'}`;
}

function usesOf(config: Config): Map<string, ClusterUse> {
  const uses = new Map<string, ClusterUse>();
  const add = (name: string, use: 'tcp' | 'http1') => {
    const had = uses.get(name);
    uses.set(name, had === undefined || had === use ? use : 'both');
  };
  for (const l of config.listeners) {
    if (l.protocol === 'tcp') for (const c of tcpListenerClusters(l)) add(c, 'tcp');
    else for (const r of l.routes) add(r.cluster, 'http1');
  }
  return uses;
}

function clusterReport(
  name: string,
  c: ClusterConfig,
  use: ClusterUse,
  kernel: PortRange,
  workers: number,
): ClusterReport {
  const range = c.source_addresses === undefined ? kernel : (c.source_port_range ?? kernel);
  const r = rangeReport(range);
  const sources = c.source_addresses?.length ?? null;
  const budget = (sources ?? 1) * r.size;
  // With source addresses each worker owns a slice of the range (the largest slice is the worst
  // case); the kernel's range is shared, so assume SO_REUSEPORT spreads connections evenly.
  const budgetPerWorker =
    sources === null ? Math.ceil(r.size / workers) : sources * rangeReport(sliceOf(range, workers - 1, workers)).size;
  const poolCap = use === 'http1' || use === 'both' ? c.pool.max_connections * workers : null;
  const endpoints = c.endpoints.length;
  // tcp connections can take the whole port budget; only a pure http1 cluster is held to its pool.
  const perEndpoint = use === 'none' ? 0 : use === 'http1' ? Math.min(budget, poolCap ?? budget) : budget;
  let upstreamPerWorker = 0;
  let fdsPerWorker = 0;
  if (use === 'http1') {
    // Each worker has its own pool; kernel-chosen ports are not split between workers.
    const portsPerWorker = sources === null ? r.size : budgetPerWorker;
    upstreamPerWorker = Math.min(c.pool.max_connections, portsPerWorker) * endpoints;
    fdsPerWorker = upstreamPerWorker;
  } else if (use !== 'none') {
    upstreamPerWorker = budgetPerWorker * endpoints;
    fdsPerWorker = 2 * upstreamPerWorker;
  }
  return {
    name,
    used_by: use,
    source_addresses: sources,
    port_range: r,
    port_range_from:
      c.source_addresses !== undefined && c.source_port_range !== undefined ? 'source_port_range' : 'kernel',
    endpoints,
    dns_names: [...new Set(c.endpoints.filter((e) => isIP(e.host) === 0).map((e) => e.host))],
    port_budget_per_endpoint: budget,
    pool_cap_per_endpoint: poolCap,
    max_per_endpoint: perEndpoint,
    max_total: perEndpoint * endpoints,
    upstream_per_worker: upstreamPerWorker,
    fds_per_worker: fdsPerWorker,
  };
}

/** Pure: what the machine's limits allow the config (if any), and what falls short, as sentences. */
export function diagnose(facts: MachineFacts, config: Config | null): DoctorReport {
  const kernel = facts.ephemeral_port_range ?? DEFAULT_EPHEMERAL_RANGE;
  const machine: MachineReport = {
    ...facts,
    ephemeral_port_range: rangeReport(kernel),
    ephemeral_port_range_assumed: facts.ephemeral_port_range === null,
  };
  const warnings: string[] = [];
  const clusters: ClusterReport[] = [];
  let total: TotalReport | null = null;

  if (config !== null) {
    const workers = config.workers === 'auto' ? Math.max(1, facts.cpus) : config.workers;
    const uses = usesOf(config);
    for (const [name, c] of Object.entries(config.clusters)) {
      clusters.push(clusterReport(name, c, uses.get(name) ?? 'none', kernel, workers));
    }
    const sum = (f: (c: ClusterReport) => number) => clusters.reduce((n, c) => n + f(c), 0);
    const upstream = sum((c) => c.max_total);
    const tcpClients = sum((c) => (c.used_by === 'tcp' || c.used_by === 'both' ? c.max_total : 0));
    total = {
      workers,
      upstream_connections: upstream,
      tcp_client_connections: tcpClients,
      connections: upstream + tcpClients,
      upstream_per_worker: sum((c) => c.upstream_per_worker),
      fds_per_worker: sum((c) => c.fds_per_worker),
      fds_all_workers: sum((c) => c.fds_per_worker) * workers,
    };
    warnings.push(...configWarnings(facts, clusters, total));
  }

  if (facts.somaxconn !== null && facts.somaxconn < LISTEN_BACKLOG) {
    warnings.push(
      `net.core.somaxconn ${fmt(facts.somaxconn)} is below muxgate's listen backlog ${LISTEN_BACKLOG}: connections beyond ${fmt(facts.somaxconn)} queued per listener are dropped by the kernel; raise it to ${LISTEN_BACKLOG}`,
    );
  }
  if (facts.tcp_tw_reuse === 0) {
    warnings.push(
      'net.ipv4.tcp_tw_reuse is 0: TIME_WAIT ports are not reused for new outgoing connections, so each closed upstream connection keeps its port for about 60 s; set it to 1',
    );
  }
  if (facts.tcp_migrate_req === 0) {
    warnings.push(
      "net.ipv4.tcp_migrate_req is 0: during a zero-downtime upgrade, connections still queued on the old process's listening socket when it stops are reset; set it to 1 (Linux 5.14+) so the kernel hands them to the new process",
    );
  }
  return { machine, clusters, total, warnings };
}

function configWarnings(facts: MachineFacts, clusters: ClusterReport[], t: TotalReport): string[] {
  const out: string[] = [];
  const w = plural(t.workers, 'worker');
  const assumption = `assuming 2 fds per tcp-listener connection, client + upstream; 1 per pooled http1 upstream connection; http1 clients not counted; connections spread evenly over ${w}`;
  const need = fmt(t.fds_per_worker);
  if (facts.open_files_soft !== null && t.fds_per_worker > facts.open_files_soft) {
    out.push(
      `fd soft limit ${fmt(facts.open_files_soft)} (ulimit -n here) caps each worker below the ${fmt(t.upstream_per_worker)} upstream connections the config allows it, which need up to ${need} fds (${assumption}): run more workers or raise the limit`,
    );
  }
  if (facts.open_files_hard !== null && t.fds_per_worker > facts.open_files_hard) {
    out.push(
      `fd hard limit ${fmt(facts.open_files_hard)} (ulimit -Hn here) is below the ${need} fds a worker may need: raising ulimit -n cannot get there; raise the hard limit (LimitNOFILE= for systemd, nofile in limits.conf) or run more workers`,
    );
  }
  if (facts.nr_open !== null && t.fds_per_worker > facts.nr_open) {
    out.push(
      `fs.nr_open ${fmt(facts.nr_open)} is below the ${need} fds a worker may need: no process can open that many; raise fs.nr_open or run more workers`,
    );
  }
  if (facts.file_max !== null && t.fds_all_workers > facts.file_max) {
    out.push(
      `fs.file-max ${fmt(facts.file_max)} is below the ${fmt(t.fds_all_workers)} fds all ${w} together may need: the system runs out of file handles first; raise fs.file-max`,
    );
  }
  if (facts.nf_conntrack_max !== null && t.connections > facts.nf_conntrack_max) {
    out.push(
      `net.netfilter.nf_conntrack_max ${fmt(facts.nf_conntrack_max)} is below the ${fmt(t.connections)} connections the config allows (${fmt(t.upstream_connections)} upstream + ${fmt(t.tcp_client_connections)} tcp-listener clients; http1 clients not counted): once the table is full the kernel drops new connections; raise it or exempt this traffic from tracking`,
    );
  }
  for (const c of clusters) {
    if (c.source_addresses === null && (c.used_by === 'tcp' || c.used_by === 'both')) {
      out.push(
        `cluster ${c.name}: without source_addresses each endpoint is limited to ${fmt(c.port_budget_per_endpoint)} connections (the kernel's range ${c.port_range.first}-${c.port_range.last}); add source_addresses to multiply it`,
      );
    }
  }
  return out;
}

const TW_REUSE: Record<number, string> = { 0: 'off', 1: 'on', 2: 'loopback only' };

function orUnknown(n: number | null): string {
  return n === null ? 'unknown' : fmt(n);
}

function rangeText(r: RangeReport): string {
  return `${r.first}-${r.last} (${plural(r.size, 'port')})`;
}

export function formatDoctor(report: DoctorReport): string {
  const m = report.machine;
  const rows: [string, string][] = [
    [
      'net.ipv4.ip_local_port_range',
      `${rangeText(m.ephemeral_port_range)}${m.ephemeral_port_range_assumed ? ', unreadable: Linux default assumed' : ''}`,
    ],
    ['ulimit -n (soft / hard)', `${orUnknown(m.open_files_soft)} / ${orUnknown(m.open_files_hard)}`],
    ['fs.nr_open', orUnknown(m.nr_open)],
    ['fs.file-max', orUnknown(m.file_max)],
    ['net.core.somaxconn', orUnknown(m.somaxconn)],
    [
      'net.ipv4.tcp_tw_reuse',
      m.tcp_tw_reuse === null ? 'unknown' : `${m.tcp_tw_reuse} (${TW_REUSE[m.tcp_tw_reuse] ?? '?'})`,
    ],
    ['net.ipv4.tcp_fin_timeout', m.tcp_fin_timeout === null ? 'unknown' : `${m.tcp_fin_timeout} s`],
    [
      'net.ipv4.tcp_migrate_req',
      m.tcp_migrate_req === null ? 'not present (kernel before 5.14)' : String(m.tcp_migrate_req),
    ],
    ['net.netfilter.nf_conntrack_max', m.nf_conntrack_max === null ? 'not present' : fmt(m.nf_conntrack_max)],
  ];
  if (m.ip_local_reserved_ports !== null) {
    rows.push(['net.ipv4.ip_local_reserved_ports', `${m.ip_local_reserved_ports} (the kernel never picks these)`]);
  }
  rows.push(['cpus', fmt(m.cpus)]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  const lines = ['machine', ...rows.map(([k, v]) => `  ${k.padEnd(width)}${v}`)];

  const t = report.total;
  if (t !== null) {
    lines.push('', `clusters (workers: ${t.workers})`);
    for (const c of report.clusters) lines.push(...clusterLines(c, t.workers));
    lines.push(
      '',
      'total',
      `  ${fmt(t.upstream_connections)} upstream connections + ${fmt(t.tcp_client_connections)} tcp-listener clients = ${fmt(t.connections)} connections`,
      `  per worker: up to ${fmt(t.upstream_per_worker)} upstream connections, ${fmt(t.fds_per_worker)} fds (2 per tcp-listener connection, 1 per http1 upstream connection, http1 clients not counted)`,
    );
  }
  lines.push('', 'warnings');
  if (report.warnings.length === 0) lines.push('  none');
  for (const w of report.warnings) lines.push(`  - ${w}`);
  return `${lines.join('\n')}\n`;
}

const USE_TEXT: Record<ClusterUse, string> = {
  tcp: 'used by tcp listeners',
  http1: 'used by http1 routes',
  both: 'used by tcp listeners and http1 routes',
  none: 'not used by any listener',
};

function clusterLines(c: ClusterReport, workers: number): string[] {
  const sources = c.source_addresses === null ? 'kernel-chosen' : fmt(c.source_addresses);
  const from = c.port_range_from === 'kernel' ? "the kernel's range" : 'source_port_range';
  let endpoints = plural(c.endpoints, 'endpoint');
  if (c.dns_names.length > 0)
    endpoints += `; ${c.dns_names.join(', ')} — name: resolved at start, counted as one address`;
  const lines = [
    `  ${c.name}: ${USE_TEXT[c.used_by]}`,
    `    source addresses: ${sources}; ports ${rangeText(c.port_range)}, ${from}; ${endpoints}`,
  ];
  if (c.used_by === 'none') return lines;
  const ports =
    c.source_addresses === null
      ? `${fmt(c.port_budget_per_endpoint)} ports`
      : `${fmt(c.source_addresses)} × ${fmt(c.port_range.size)} ports`;
  const why =
    c.used_by === 'http1' && c.pool_cap_per_endpoint !== null && c.pool_cap_per_endpoint < c.port_budget_per_endpoint
      ? `pool.max_connections ${fmt(c.pool_cap_per_endpoint / workers)} × ${plural(workers, 'worker')}; ports allow ${fmt(c.port_budget_per_endpoint)}`
      : ports;
  lines.push(
    `    max upstream connections: ${fmt(c.max_per_endpoint)} per endpoint (${why}), ${fmt(c.max_total)} for the cluster`,
  );
  return lines;
}
