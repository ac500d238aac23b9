import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type DoctorReport, diagnose, formatDoctor, type MachineFacts } from '../../src/cli/doctor.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { muxgate } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'muxgate-doctor-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A roomy machine: nothing here should warn unless a test lowers it. */
const FACTS: MachineFacts = {
  ephemeral_port_range: { first: 32768, last: 60999 },
  open_files_soft: 1_048_576,
  open_files_hard: 1_048_576,
  nr_open: 1_048_576,
  file_max: 10_000_000,
  somaxconn: 4096,
  tcp_tw_reuse: 2,
  tcp_migrate_req: 1,
  tcp_fin_timeout: 60,
  nf_conntrack_max: null,
  ip_local_reserved_ports: null,
  cpus: 4,
};

const EIGHT_SOURCES = '[10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8]';

function config(clusters: string, listeners: string, extra = '') {
  return parseConfigText(`admin: false\n${extra}listeners:\n${listeners}\nclusters:\n${clusters}\n`, 'doctor.yaml');
}

const tcpTo = (cluster: string) =>
  `  - { name: l-${cluster}, address: 127.0.0.1:0, protocol: tcp, cluster: ${cluster} }`;
const httpTo = (cluster: string) =>
  `  - { name: h-${cluster}, address: 127.0.0.1:0, routes: [{ cluster: ${cluster} }] }`;

function cluster(report: DoctorReport, name: string) {
  const c = report.clusters.find((x) => x.name === name);
  assert.ok(c, `no cluster ${name} in ${JSON.stringify(report.clusters)}`);
  return c;
}

describe('diagnose', () => {
  test('8 source addresses × a 1000-port range = 8000 connections per endpoint', () => {
    const cfg = config(
      `  db: { endpoints: ["10.1.0.1:5432-5433"], source_addresses: ${EIGHT_SOURCES}, source_port_range: "20000-20999" }`,
      tcpTo('db'),
    );
    const r = diagnose(FACTS, cfg);
    const db = cluster(r, 'db');
    assert.equal(db.source_addresses, 8);
    assert.deepEqual(db.port_range, { first: 20000, last: 20999, size: 1000 });
    assert.equal(db.port_range_from, 'source_port_range');
    assert.equal(db.used_by, 'tcp');
    assert.equal(db.endpoints, 2);
    assert.equal(db.max_per_endpoint, 8000);
    assert.equal(db.max_total, 16_000);
    assert.equal(r.total?.upstream_connections, 16_000);
    assert.equal(r.total?.tcp_client_connections, 16_000);
    assert.deepEqual(r.warnings, []);
    assert.match(formatDoctor(r), /8,000 per endpoint \(8 × 1,000 ports\), 16,000 for the cluster/);
  });

  test("a cluster without source_addresses gets the kernel's range per endpoint", () => {
    const r = diagnose(FACTS, config('  db: { endpoints: ["db.internal:5432"] }', tcpTo('db')));
    const db = cluster(r, 'db');
    assert.equal(db.source_addresses, null);
    assert.equal(db.port_range_from, 'kernel');
    assert.equal(db.max_per_endpoint, 28_232);
    assert.deepEqual(db.dns_names, ['db.internal']);
    const text = formatDoctor(r);
    assert.match(text, /source addresses: kernel-chosen; ports 32768-60999 \(28,232 ports\)/);
    assert.match(text, /name: resolved at start/);
  });

  test('source_addresses without source_port_range use the kernel range per source', () => {
    const r = diagnose(
      FACTS,
      config('  db: { endpoints: ["10.1.0.1:1"], source_addresses: [10.0.0.1, 10.0.0.2] }', tcpTo('db')),
    );
    assert.equal(cluster(r, 'db').max_per_endpoint, 2 * 28_232);
  });

  test('an http1 cluster is capped by pool.max_connections × workers', () => {
    const cfg = config(
      '  api: { endpoints: ["10.1.0.1:9000-9001"], pool: { max_connections: 50 } }',
      httpTo('api'),
      'workers: 3\n',
    );
    const api = cluster(diagnose(FACTS, cfg), 'api');
    assert.equal(api.used_by, 'http1');
    assert.equal(api.pool_cap_per_endpoint, 150);
    assert.equal(api.max_per_endpoint, 150);
    assert.equal(api.max_total, 300);
    assert.equal(api.upstream_per_worker, 100);
    // workers: auto counts the CPUs; a pool bigger than the port range is held to the range.
    const auto = config(
      '  api: { endpoints: ["10.1.0.1:80"], pool: { max_connections: 20000 } }',
      httpTo('api'),
      'workers: auto\n',
    );
    const big = cluster(diagnose(FACTS, auto), 'api');
    assert.equal(big.pool_cap_per_endpoint, 80_000);
    assert.equal(big.max_per_endpoint, 28_232);
  });

  test('a cluster used by a tcp listener and http1 routes is only held to its port budget', () => {
    const r = diagnose(FACTS, config('  both: { endpoints: ["10.1.0.1:80"] }', `${tcpTo('both')}\n${httpTo('both')}`));
    const c = cluster(r, 'both');
    assert.equal(c.used_by, 'both');
    assert.equal(c.max_per_endpoint, 28_232);
    assert.match(formatDoctor(r), /used by tcp listeners and http1 routes/);
  });

  test('the fd warning fires when a worker may need more fds than the soft limit, and not with a large one', () => {
    const cfg = config(
      `  db: { endpoints: ["10.1.0.1:5432-5433"], source_addresses: ${EIGHT_SOURCES}, source_port_range: "20000-20999" }`,
      tcpTo('db'),
    );
    // 16,000 upstream connections, each with its client: 32,000 fds.
    const low = diagnose({ ...FACTS, open_files_soft: 20_000 }, cfg);
    assert.equal(low.total?.fds_per_worker, 32_000);
    const fd = low.warnings.find((w) => w.startsWith('fd soft limit'));
    assert.ok(fd, JSON.stringify(low.warnings));
    assert.match(fd, /fd soft limit 20,000 .* below the 16,000 upstream connections .* up to 32,000 fds/);
    assert.match(fd, /run more workers or raise the limit/);
    assert.deepEqual(diagnose(FACTS, cfg).warnings, []);

    // Two workers split the source port range: 16,000 fds each fit under 20,000.
    const two = config(
      `  db: { endpoints: ["10.1.0.1:5432-5433"], source_addresses: ${EIGHT_SOURCES}, source_port_range: "20000-20999" }`,
      tcpTo('db'),
      'workers: 2\n',
    );
    const r2 = diagnose({ ...FACTS, open_files_soft: 20_000 }, two);
    assert.equal(r2.total?.fds_per_worker, 16_000);
    assert.deepEqual(r2.warnings, []);

    const hard = diagnose({ ...FACTS, open_files_soft: 1024, open_files_hard: 4096, nr_open: 8192 }, cfg);
    assert.ok(hard.warnings.some((w) => w.startsWith('fd hard limit 4,096')));
    assert.ok(hard.warnings.some((w) => w.startsWith('fs.nr_open 8,192')));
  });

  test('somaxconn below the listen backlog warns, with or without a config', () => {
    const r = diagnose({ ...FACTS, somaxconn: 128 }, null);
    assert.deepEqual(r.warnings, [
      "net.core.somaxconn 128 is below muxgate's listen backlog 4096: connections beyond 128 queued per listener are dropped by the kernel; raise it to 4096",
    ]);
    assert.equal(r.total, null);
    assert.deepEqual(r.clusters, []);
  });

  test('nf_conntrack_max below upstream + tcp-client connections warns; absent, it does not', () => {
    const cfg = config(
      `  db: { endpoints: ["10.1.0.1:5432"], source_addresses: ${EIGHT_SOURCES}, source_port_range: "20000-20999" }`,
      tcpTo('db'),
    );
    const r = diagnose({ ...FACTS, nf_conntrack_max: 10_000 }, cfg);
    assert.deepEqual(
      r.warnings.filter((w) => w.includes('nf_conntrack_max')).map((w) => w.split(':')[0]),
      [
        'net.netfilter.nf_conntrack_max 10,000 is below the 16,000 connections the config allows (8,000 upstream + 8,000 tcp-listener clients; http1 clients not counted)',
      ],
    );
    assert.deepEqual(diagnose({ ...FACTS, nf_conntrack_max: 100_000 }, cfg).warnings, []);
    assert.match(formatDoctor(diagnose(FACTS, cfg)), /net\.netfilter\.nf_conntrack_max\s+not present/);
  });

  test('a tcp cluster without source_addresses is told to add them; an http1 one is not', () => {
    const cfg = config(
      '  db: { endpoints: ["10.1.0.1:5432"] }\n  api: { endpoints: ["10.1.0.2:80"] }',
      `${tcpTo('db')}\n${httpTo('api')}`,
    );
    const r = diagnose(FACTS, cfg);
    assert.deepEqual(r.warnings, [
      "cluster db: without source_addresses each endpoint is limited to 28,232 connections (the kernel's range 32768-60999); add source_addresses to multiply it",
    ]);
  });

  test('tcp_tw_reuse 0 warns; an unreadable port range assumes the Linux default and says so', () => {
    const r = diagnose({ ...FACTS, tcp_tw_reuse: 0, ephemeral_port_range: null }, null);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /^net\.ipv4\.tcp_tw_reuse is 0: TIME_WAIT ports are not reused/);
    assert.equal(r.machine.ephemeral_port_range_assumed, true);
    assert.match(formatDoctor(r), /32768-60999 \(28,232 ports\), unreadable: Linux default assumed/);
  });

  test('tcp_migrate_req 0 warns about resets during an upgrade; absent (old kernel) says so', () => {
    const r = diagnose({ ...FACTS, tcp_migrate_req: 0 }, null);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /^net\.ipv4\.tcp_migrate_req is 0: during a zero-downtime upgrade/);
    assert.match(formatDoctor(diagnose({ ...FACTS, tcp_migrate_req: null }, null)), /tcp_migrate_req +not present/);
  });

  test('an unused cluster counts for nothing', () => {
    const r = diagnose(
      FACTS,
      config('  api: { endpoints: ["10.1.0.1:80"] }\n  spare: { endpoints: ["10.1.0.2:80"] }', httpTo('api')),
    );
    assert.equal(cluster(r, 'spare').used_by, 'none');
    assert.equal(cluster(r, 'spare').max_total, 0);
    assert.equal(r.total?.upstream_connections, 100);
  });
});

describe('muxgate doctor', () => {
  const kernel = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).join('-');
  const example = join(dir, 'example.yaml');
  writeFileSync(
    example,
    `admin: false
listeners:
  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: pg }
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: api }] }
clusters:
  pg: { endpoints: ["127.0.0.1:5432"], source_addresses: [127.0.0.2, 127.0.0.3], source_port_range: "20000-20999" }
  api: { endpoints: ["127.0.0.1:9000-9001"], pool: { max_connections: 50 } }
`,
  );

  test('without a config it prints the machine facts and exits 0', async () => {
    const r = await muxgate(['doctor']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^machine\n/);
    assert.ok(r.stdout.includes(kernel), `${kernel} not in\n${r.stdout}`);
    assert.match(r.stdout, /ulimit -n \(soft \/ hard\)/);
    assert.doesNotMatch(r.stdout, /clusters/);
  });

  test('-c prints the clusters; --json prints one object with stable keys', async () => {
    const text = await muxgate(['doctor', '-c', example]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /pg: used by tcp listeners\n {4}source addresses: 2; ports 20000-20999 \(1,000 ports\)/);
    assert.match(text.stdout, /2,000 per endpoint \(2 × 1,000 ports\)/);
    assert.ok(text.stdout.includes(`source addresses: kernel-chosen; ports ${kernel}`), text.stdout);

    const r = await muxgate(['doctor', '--json', '-c', example]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.deepEqual(Object.keys(report), ['machine', 'clusters', 'total', 'warnings']);
    const [first, last] = kernel.split('-').map(Number);
    assert.deepEqual(report.machine.ephemeral_port_range, { first, last, size: (last ?? 0) - (first ?? 0) + 1 });
    assert.deepEqual(
      report.clusters.map((c) => [c.name, c.used_by, c.max_per_endpoint, c.max_total]),
      [
        ['pg', 'tcp', 2000, 2000],
        ['api', 'http1', 50, 100],
      ],
    );
    assert.equal(report.total?.upstream_connections, 2100);
    assert.ok(Array.isArray(report.warnings));
  });

  test('a missing config file exits 2', async () => {
    const r = await muxgate(['doctor', '-c', join(dir, 'missing.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing\.yaml: cannot read the config file/);
    assert.equal(r.stdout, '');
  });
});
