import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config-error.ts';
import { parseConfigText } from '../../src/config/load.ts';
import type { ClusterConfig, Config } from '../../src/config/schema.ts';

/** Lines joined with \n, so a test's line numbers are the array index + 1. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

// An http1 listener routing to cluster `api`, whose endpoints and settings follow (line numbers in comments).
const HTTP_HEAD = [
  'listeners:', // 1
  '  - name: web', // 2
  '    address: 127.0.0.1:0', // 3
  '    routes:', // 4
  '      - cluster: api', // 5
  'clusters:', // 6
  '  api:', // 7
  '    endpoints:', // 8
];

/** A config whose cluster `api` has these endpoint lines (from line 9) and then these setting lines. */
const withCluster = (endpoints: string[], settings: string[] = []) => yaml(...HTTP_HEAD, ...endpoints, ...settings);

function parse(text: string): Config {
  try {
    return parseConfigText(text, 'muxgate.yaml');
  } catch (err) {
    if (err instanceof ConfigError) assert.fail(`expected the config to load, got:\n${err.problems.join('\n')}`);
    throw err;
  }
}

function problemsOf(text: string): readonly string[] {
  try {
    parseConfigText(text, 'muxgate.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected the config to be rejected');
}

/** deepEqual on the problem list, printing the actual problems when they differ. */
function assertProblems(text: string, expected: readonly string[]): void {
  const problems = problemsOf(text);
  assert.deepEqual(problems, expected, `actual problems:\n${problems.join('\n')}`);
}

function apiCluster(config: Config): ClusterConfig {
  const api = config.clusters.api;
  assert.ok(api, 'cluster api');
  return api;
}

describe('endpoint port ranges', () => {
  test('"host:first-last" expands to one endpoint per port, weight 1', () => {
    const api = apiCluster(parse(withCluster(['      - 127.0.0.1:9000-9003', '      - "[::1]:9100-9101"'])));
    assert.deepEqual(api.endpoints, [
      { host: '127.0.0.1', port: 9000, weight: 1 },
      { host: '127.0.0.1', port: 9001, weight: 1 },
      { host: '127.0.0.1', port: 9002, weight: 1 },
      { host: '127.0.0.1', port: 9003, weight: 1 },
      { host: '::1', port: 9100, weight: 1 },
      { host: '::1', port: 9101, weight: 1 },
    ]);
  });

  test('a one-port range is one endpoint', () => {
    assert.deepEqual(apiCluster(parse(withCluster(['      - backend.internal:9000-9000']))).endpoints, [
      { host: 'backend.internal', port: 9000, weight: 1 },
    ]);
  });

  test('map form: ports as a range or a list, with a weight', () => {
    const api = apiCluster(
      parse(
        withCluster([
          '      - { host: 127.0.0.1, ports: "9000-9002" }',
          '      - { host: backend.internal, ports: [9000, 9005], weight: 3 }',
          '      - { host: 127.0.0.1, port: 8080 }',
        ]),
      ),
    );
    assert.deepEqual(api.endpoints, [
      { host: '127.0.0.1', port: 9000, weight: 1 },
      { host: '127.0.0.1', port: 9001, weight: 1 },
      { host: '127.0.0.1', port: 9002, weight: 1 },
      { host: 'backend.internal', port: 9000, weight: 3 },
      { host: 'backend.internal', port: 9005, weight: 3 },
      { host: '127.0.0.1', port: 8080, weight: 1 },
    ]);
  });

  test('port and ports together, or neither', () => {
    assertProblems(withCluster(['      - { host: 127.0.0.1, port: 80, ports: [81, 82] }']), [
      'muxgate.yaml:9 clusters.api.endpoints[0]: expected exactly one of port, ports, got port and ports',
    ]);
    assertProblems(withCluster(['      - 127.0.0.1:80', '      - host: 127.0.0.1', '        weight: 2']), [
      'muxgate.yaml:10 clusters.api.endpoints[1]: expected exactly one of port, ports, got none',
    ]);
  });

  test('map form: a reversed range, port 0, an empty list and a bad port are rejected', () => {
    assertProblems(
      withCluster([
        '      - { host: 127.0.0.1, ports: "9003-9000" }', // 9
        '      - { host: 127.0.0.1, ports: "0-5" }', // 10
        '      - { host: 127.0.0.1, ports: [] }', // 11
        '      - { host: 127.0.0.1, ports: [9000, 0] }', // 12
        '      - { host: 127.0.0.1, ports: "9000-70000" }', // 13
      ]),
      [
        'muxgate.yaml:9 clusters.api.endpoints[0].ports: expected a port range "first-last" within 1-65535, got "9003-9000"',
        'muxgate.yaml:10 clusters.api.endpoints[1].ports: expected a port range "first-last" within 1-65535, got "0-5"',
        'muxgate.yaml:11 clusters.api.endpoints[2].ports: expected a list of ports, got an empty list',
        'muxgate.yaml:12 clusters.api.endpoints[3].ports[1]: expected an integer 1-65535, got 0',
        'muxgate.yaml:13 clusters.api.endpoints[4].ports: expected a port range "first-last" within 1-65535, got "9000-70000"',
      ],
    );
  });

  test('text form: a reversed range and a range from port 0 are rejected', () => {
    assertProblems(withCluster(['      - 127.0.0.1:9003-9000', '      - 127.0.0.1:0-5']), [
      'muxgate.yaml:9 clusters.api.endpoints[0]: expected a port range "first-last" within 1-65535 after the host, got "127.0.0.1:9003-9000"',
      'muxgate.yaml:10 clusters.api.endpoints[1]: expected a port range "first-last" within 1-65535 after the host, got "127.0.0.1:0-5"',
    ]);
  });

  test('text form: a bad host before a range is reported with the text as written', () => {
    assertProblems(withCluster(['      - "bad host:9000-9001"', '      - "::1:9000-9001"']), [
      'muxgate.yaml:9 clusters.api.endpoints[0]: expected a host name or IP address before ":first-last", got "bad host:9000-9001"',
      'muxgate.yaml:10 clusters.api.endpoints[1]: expected an IPv6 address in brackets like "[::1]:9000-9003", got "::1:9000-9001"',
    ]);
  });
});

describe('source_addresses, source_port_range, port_cooling, budget_warn_ratio', () => {
  test('parsed, with IPv6 brackets removed', () => {
    const api = apiCluster(
      parse(
        withCluster(
          ['      - 127.0.0.1:9000'],
          [
            '    source_addresses: [127.0.0.2, "::1", "[fd00::2]"]',
            '    source_port_range: "20000-20999"',
            '    port_cooling: 5s',
            '    budget_warn_ratio: 0.5',
          ],
        ),
      ),
    );
    assert.deepEqual(api.source_addresses, ['127.0.0.2', '::1', 'fd00::2']);
    assert.deepEqual(api.source_port_range, { first: 20000, last: 20999 });
    assert.equal(api.port_cooling, 5000);
    assert.equal(api.budget_warn_ratio, 0.5);
  });

  test('absent by default; budget_warn_ratio defaults to 0.8', () => {
    const api = apiCluster(parse(withCluster(['      - 127.0.0.1:9000'])));
    assert.equal(api.source_addresses, undefined);
    assert.equal(api.source_port_range, undefined);
    assert.equal(api.port_cooling, undefined);
    assert.equal(api.budget_warn_ratio, 0.8);
    assert.equal(
      apiCluster(parse(withCluster(['      - 127.0.0.1:9000'], ['    budget_warn_ratio: 1']))).budget_warn_ratio,
      1,
    );
  });

  test('source_addresses: host names and duplicates rejected, each on its own line', () => {
    assertProblems(
      withCluster(
        ['      - 127.0.0.1:9000'], // 9
        [
          '    source_addresses:', // 10
          '      - 127.0.0.2', // 11
          '      - localhost', // 12
          '      - 127.0.0.2', // 13
          '      - "[::1]"', // 14
          '      - "::1"', // 15
          '      - 10.0.0.300', // 16
        ],
      ),
      [
        'muxgate.yaml:12 clusters.api.source_addresses[1]: expected an IPv4 or IPv6 address, got "localhost"',
        'muxgate.yaml:13 clusters.api.source_addresses[2]: expected unique addresses, got "127.0.0.2" twice',
        'muxgate.yaml:15 clusters.api.source_addresses[4]: expected unique addresses, got "::1" twice',
        'muxgate.yaml:16 clusters.api.source_addresses[5]: expected an IPv4 or IPv6 address, got "10.0.0.300"',
      ],
    );
  });

  test('source_addresses: an empty list is rejected', () => {
    assertProblems(withCluster(['      - 127.0.0.1:9000'], ['    source_addresses: []']), [
      'muxgate.yaml:10 clusters.api.source_addresses: expected a list of IP addresses, got an empty list',
    ]);
  });

  test('source_port_range: must be "first-last" within 1024-65535', () => {
    for (const [value, got] of [
      ['"80-90"', '"80-90"'],
      ['"1023-2000"', '"1023-2000"'],
      ['"60000-70000"', '"60000-70000"'],
      ['"20999-20000"', '"20999-20000"'],
      ['20000', '20000'],
    ]) {
      assertProblems(withCluster(['      - 127.0.0.1:9000'], [`    source_port_range: ${value}`]), [
        `muxgate.yaml:10 clusters.api.source_port_range: expected a port range "first-last" within 1024-65535, got ${got}`,
      ]);
    }
    assert.deepEqual(
      apiCluster(parse(withCluster(['      - 127.0.0.1:9000'], ['    source_port_range: "1024-65535"'])))
        .source_port_range,
      { first: 1024, last: 65535 },
    );
  });

  test('budget_warn_ratio: 0 and 1.5 rejected', () => {
    for (const value of ['0', '1.5', '-0.1', '"80%"']) {
      const got = value.startsWith('"') ? value : String(Number(value));
      assertProblems(withCluster(['      - 127.0.0.1:9000'], [`    budget_warn_ratio: ${value}`]), [
        `muxgate.yaml:10 clusters.api.budget_warn_ratio: expected a number > 0 and <= 1, got ${got}`,
      ]);
    }
  });

  test('port_cooling: a duration of at least 1ms', () => {
    assert.equal(
      apiCluster(parse(withCluster(['      - 127.0.0.1:9000'], ['    port_cooling: 250ms']))).port_cooling,
      250,
    );
    assertProblems(withCluster(['      - 127.0.0.1:9000'], ['    port_cooling: 0']), [
      'muxgate.yaml:10 clusters.api.port_cooling: expected at least 1ms, got 0',
    ]);
  });
});

// A tcp listener `db` for cluster `pg` (line numbers in comments); tests add listener and cluster lines.
const tcpConfig = (listener: string[], cluster: string[] = []) =>
  yaml(
    'listeners:', // 1
    '  - name: db', // 2
    '    address: 127.0.0.1:0', // 3
    '    protocol: tcp', // 4
    ...listener, // from 5
    'clusters:',
    '  pg:',
    '    endpoints: [127.0.0.1:5432]',
    ...cluster,
  );

describe('tcp listeners', () => {
  test('parse with defaults', () => {
    const config = parse(tcpConfig(['    cluster: pg']));
    assert.deepEqual(config.listeners, [
      {
        name: 'db',
        address: { host: '127.0.0.1', port: 0 },
        protocol: 'tcp',
        cluster: 'pg',
        idle_timeout: 3_600_000,
        max_connections: 0,
        max_connections_per_client: 0,
        accept_queue_size: 1024,
        accept_queue_timeout: 10_000,
        connect_attempts: 3,
        sni_timeout: 5000,
        max_client_hello_bytes: 16404,
      },
    ]);
  });

  test('send_proxy_protocol: accepted on an HTTP/1.1 cluster behind an HTTP route, refused with HTTP/2 upstreams', () => {
    const ok = parseConfigText(
      yaml(
        'listeners:',
        '  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: app }] }',
        'clusters:',
        '  app: { endpoints: [127.0.0.1:8080], send_proxy_protocol: v2 }',
      ),
      'muxgate.yaml',
    );
    assert.equal(ok.clusters.app?.send_proxy_protocol, 'v2');
    for (const protocol of ['http2', 'auto']) {
      assertProblems(
        yaml(
          'listeners:',
          '  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: app }] }',
          'clusters:',
          `  app: { endpoints: [127.0.0.1:8080], protocol: ${protocol}, send_proxy_protocol: v1 }`,
        ),
        [
          `muxgate.yaml:4 clusters.app.send_proxy_protocol: send_proxy_protocol needs protocol http1 (an HTTP/2 connection is shared by many clients, a PROXY header names one), got protocol ${protocol}`,
        ],
      );
    }
  });

  test('sni_routes and proxy_protocol: parsed, names lower-cased, clusters checked', () => {
    const [l] = parse(
      tcpConfig([
        '    sni_routes:',
        '      - { server_names: [API.example.com, "*.Apps.example.com"], alpn: [h2], cluster: pg }',
        '      - { server_names: [db.example.com], cluster: pg }',
        '    proxy_protocol: { trusted: [10.0.0.0/8, "::1"] }',
      ]),
    ).listeners;
    assert.ok(l?.protocol === 'tcp');
    assert.equal(l.cluster, undefined);
    assert.deepEqual(l.sni_routes, [
      { server_names: ['api.example.com', '*.apps.example.com'], alpn: ['h2'], cluster: 'pg' },
      { server_names: ['db.example.com'], cluster: 'pg' },
    ]);
    assert.deepEqual(l.proxy_protocol, { trusted: ['10.0.0.0/8', '::1/128'], timeout: 5000 });
    assertProblems(tcpConfig(['    idle_timeout: 1s']), [
      'muxgate.yaml:2 listeners[0].cluster: expected a cluster name (or sni_routes)',
    ]);
    assertProblems(tcpConfig(['    sni_routes: [{ server_names: [ex.com], cluster: nope }]']), [
      'muxgate.yaml:5 listeners[0].sni_routes[0].cluster: expected the name of a cluster (pg), got "nope"',
    ]);
    assertProblems(tcpConfig(['    cluster: pg', '    sni_routes: [{ server_names: ["a..b"], cluster: pg }]']), [
      'muxgate.yaml:6 listeners[0].sni_routes[0].server_names[0]: expected a server name like "api.example.com" or "*.example.com", got "a..b"',
    ]);
  });

  test('settings override the defaults and are range-checked', () => {
    const [l] = parse(
      tcpConfig(['    cluster: pg', '    idle_timeout: 30s', '    max_connections: 500', '    connect_attempts: 10']),
    ).listeners;
    assert.ok(l?.protocol === 'tcp');
    assert.deepEqual([l.idle_timeout, l.max_connections, l.connect_attempts], [30_000, 500, 10]);
    assertProblems(
      tcpConfig(['    cluster: pg', '    connect_attempts: 0', '    max_connections: -1', '    idle_timeout: 0']),
      [
        'muxgate.yaml:6 listeners[0].connect_attempts: expected an integer 1-10, got 0',
        'muxgate.yaml:7 listeners[0].max_connections: expected an integer >= 0, got -1',
        'muxgate.yaml:8 listeners[0].idle_timeout: expected at least 1ms, got 0',
      ],
    );
  });

  test('alongside an http1 listener', () => {
    const config = parse(
      yaml(
        'listeners:',
        '  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: pg }] }',
        '  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: pg }',
        'clusters:',
        '  pg:',
        '    endpoints: [127.0.0.1:5432]',
      ),
    );
    assert.deepEqual(
      config.listeners.map((l) => l.protocol),
      ['http1', 'tcp'],
    );
  });

  test('a tcp listener with routes: unknown key', () => {
    assertProblems(tcpConfig(['    cluster: pg', '    routes:', '      - cluster: pg']), [
      'muxgate.yaml:6 listeners[0]: unknown key "routes"; expected one of: name, address, protocol, cluster, sni_routes, sni_timeout, max_client_hello_bytes, proxy_protocol, idle_timeout, max_connections, max_connections_per_client, accept_queue_size, accept_queue_timeout, connect_attempts, tunnel, tunnel_target',
    ]);
  });

  test('a tcp listener without cluster: missing key', () => {
    assertProblems(tcpConfig([]), ['muxgate.yaml:2 listeners[0].cluster: expected a cluster name (or sni_routes)']);
  });

  test('an http1 listener with cluster: unknown key', () => {
    assertProblems(
      yaml(
        'listeners:', // 1
        '  - name: web', // 2
        '    address: 127.0.0.1:0', // 3
        '    cluster: pg', // 4
        '    routes: [{ cluster: pg }]', // 5
        'clusters:',
        '  pg:',
        '    endpoints: [127.0.0.1:5432]',
      ),
      [
        'muxgate.yaml:4 listeners[0]: unknown key "cluster"; expected one of: name, address, protocol, tls, http2, trusted_proxies, proxy_protocol, passthrough, max_header_bytes, max_headers, header_timeout, idle_timeout, max_requests_per_connection, max_connections, max_connections_per_client, accept_queue_size, accept_queue_timeout, routes, connect',
      ],
    );
  });

  test('an unknown protocol names the allowed ones', () => {
    assertProblems(
      yaml(
        'listeners:',
        '  - name: db',
        '    address: 127.0.0.1:0',
        '    protocol: udp', // 4
        '    cluster: pg',
        'clusters:',
        '  pg:',
        '    endpoints: [127.0.0.1:5432]',
      ),
      ['muxgate.yaml:4 listeners[0].protocol: expected one of http1, http2, auto, tcp, got "udp"'],
    );
    assertProblems(yaml('listeners:', '  - web', 'clusters:', '  pg:', '    endpoints: [127.0.0.1:5432]'), [
      'muxgate.yaml:2 listeners[0]: expected a listener map, got "web"',
    ]);
  });

  test('a tcp listener naming a missing cluster', () => {
    assertProblems(tcpConfig(['    cluster: nope']), [
      'muxgate.yaml:5 listeners[0].cluster: expected the name of a cluster (pg), got "nope"',
    ]);
  });

  test('its cluster may only hash the source IP', () => {
    for (const cluster of [
      ['    lb: ring_hash', '    hash_key: { header: x-user }'],
      ['    lb: maglev', '    hash_key: { cookie: session }'],
    ]) {
      assertProblems(tcpConfig(['    cluster: pg'], cluster), [
        'muxgate.yaml:5 listeners[0].cluster: expected a cluster whose hash_key is source_ip (tcp listeners have no headers or cookies), got "pg"',
      ]);
    }
    const config = parse(tcpConfig(['    cluster: pg'], ['    lb: ring_hash', '    hash_key: { source_ip: true }']));
    assert.deepEqual(config.clusters.pg?.hash_key, { source_ip: true });
    assert.equal(config.clusters.pg?.lb, 'ring_hash');
  });

  test('lb: least_connections is accepted', () => {
    assert.equal(
      parse(tcpConfig(['    cluster: pg'], ['    lb: least_connections'])).clusters.pg?.lb,
      'least_connections',
    );
  });
});
