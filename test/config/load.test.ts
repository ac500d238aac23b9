import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config-error.ts';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { loadConfigFile, parseConfigText, validateConfig } from '../../src/config/load.ts';
import { parseHostPort } from '../../src/config/schema.ts';
import { parseDuration, parseSize } from '../../src/config/units.ts';

const dir = mkdtempSync(join(tmpdir(), 'muxgate-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Lines joined with \n, so a test's line numbers are the array index + 1. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

// A small valid config; tests append to or replace parts of it. Line numbers in comments.
const LISTENERS = [
  'listeners:', // 1
  '  - name: web', // 2
  '    address: 127.0.0.1:0', // 3
  '    routes:', // 4
  '      - cluster: api', // 5
];
const CLUSTERS = [
  'clusters:', // 6
  '  api:', // 7
  '    endpoints:', // 8
  '      - 127.0.0.1:9001', // 9
];

function problemsOf(text: string): readonly string[] {
  try {
    parseConfigText(text, 'muxgate.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'config_invalid');
    assert.equal(err.message, err.problems.join('\n'));
    return err.problems;
  }
  assert.fail('expected the config to be rejected');
}

describe('loading a valid config', () => {
  test('fills every default', () => {
    const config = parseConfigText(yaml(...LISTENERS, ...CLUSTERS), 'muxgate.yaml');
    assert.deepEqual(config, {
      log_level: 'info',
      access_log: {
        enabled: true,
        path: 'stdout',
        errors_only: false,
        sample: 1,
        buffer: 65536,
        flush_interval: 1000,
        max_buffer: 16 * 1024 * 1024,
      },
      workers: 1,
      drain_timeout: 30_000,
      memory_trim: { enabled: true, idle_below: 0.05, young_above: 4 * 1024 * 1024, min_interval: 5000 },
      drain_idle_grace: 1000,
      reuse_port: true,
      direct_io: true,
      trusted_proxies: [],
      via: 'muxgate',
      admin: { address: { host: '127.0.0.1', port: 9901 } },
      listeners: [
        {
          name: 'web',
          address: { host: '127.0.0.1', port: 0 },
          protocol: 'http1',
          max_header_bytes: 65_536,
          max_headers: 100,
          header_timeout: 10_000,
          idle_timeout: 60_000,
          max_requests_per_connection: 0,
          max_connections: 0,
          max_connections_per_client: 0,
          accept_queue_size: 1024,
          accept_queue_timeout: 10_000,
          routes: [{ cluster: 'api', upgrade_idle_timeout: 3_600_000 }],
        },
      ],
      cache_zones: {},
      clusters: {
        api: {
          protocol: 'http1',
          h2c: false,
          websocket: 'http1',
          endpoints: [{ host: '127.0.0.1', port: 9001, weight: 1 }],
          lb: 'round_robin',
          dns_refresh: 30_000,
          response_timeout: 30_000,
          outlier: {
            consecutive_connect_failures: 5,
            consecutive_5xx: 5,
            consecutive_gateway_errors: 5,
            base_ejection_time: 10_000,
            max_ejection_time: 300_000,
            max_ejection_percent: 50,
            panic: true,
          },
          circuit_breakers: { max_requests: 0, max_pending: 0, max_connections: 0, max_retries: 0 },
          pool: {
            max_connections: 100,
            max_pending: 1000,
            pending_timeout: 5000,
            max_requests_per_connection: 0,
            idle_timeout: 60_000,
            connect_timeout: 5000,
          },
          budget_warn_ratio: 0.8,
        },
      },
    });
  });

  test('reads a full config from disk and normalises it', () => {
    const file = join(dir, 'full.yaml');
    writeFileSync(
      file,
      yaml(
        'log_level: debug',
        'access_log: { enabled: false, path: /var/log/muxgate.log, errors_only: true, sample: 10, buffer: 8KiB, flush_interval: 250ms }',
        'workers: auto',
        'drain_timeout: 1.5s',
        'trusted_proxies: [10.0.0.0/8, "::1", 192.168.1.7]',
        'via: false',
        'admin: false',
        'listeners:',
        '  - name: web',
        '    address: "[::1]:8080"',
        '    trusted_proxies: [127.0.0.1/32]',
        '    max_header_bytes: 16KB',
        '    header_timeout: 250ms',
        '    idle_timeout: 2m',
        '    max_requests_per_connection: 100',
        '    routes:',
        '      - name: api',
        '        match:',
        '          host: API.example.com',
        '          path: { prefix: /api }',
        '          methods: [get, POST]',
        '          headers:',
        '            - { name: X-Canary, exact: "1" }',
        '            - { name: x-debug, present: true }',
        '            - { name: x-user, regex: "^[a-z]+$" }',
        '        cluster: api',
        '        host_rewrite: internal.api',
        '        prefix_rewrite: /v2/',
        '        response_timeout: 1h',
        '      - match: { host: ["*.example.com", "*"], path: { regex: "^/static/" } }',
        '        cluster: static',
        'clusters:',
        '  api:',
        '    endpoints:',
        '      - 127.0.0.1:9001',
        '      - { host: backend.internal, port: 80, weight: 3 }',
        '    lb: ring_hash',
        '    hash_key: { header: X-User-Id }',
        '    dns_refresh: 10s',
        '    response_timeout: 5000',
        '    outlier: { consecutive_connect_failures: 2, panic: false }',
        '    pool: { max_connections: 10, connect_timeout: 1s }',
        '  static:',
        '    endpoints: ["[::1]:9002"]',
        '    lb: maglev',
        '    hash_key: { source_ip: true }',
      ),
    );
    const config = loadConfigFile(file);
    assert.equal(config.log_level, 'debug');
    assert.deepEqual(config.access_log, {
      enabled: false,
      path: '/var/log/muxgate.log',
      errors_only: true,
      sample: 10,
      buffer: 8192,
      flush_interval: 250,
      max_buffer: 16 * 1024 * 1024,
    });
    assert.equal(config.workers, 'auto');
    assert.equal(config.drain_timeout, 1500);
    assert.deepEqual(config.trusted_proxies, ['10.0.0.0/8', '::1/128', '192.168.1.7/32']);
    assert.equal(config.via, false);
    assert.equal(config.admin, false);

    const [listener] = config.listeners;
    assert.ok(listener);
    assert.equal(listener.protocol, 'http1', 'protocol defaults to http1');
    if (listener.protocol !== 'http1') return;
    assert.deepEqual(listener.address, { host: '::1', port: 8080 });
    assert.deepEqual(listener.trusted_proxies, ['127.0.0.1/32']);
    assert.equal(listener.max_header_bytes, 16_000);
    assert.equal(listener.header_timeout, 250);
    assert.equal(listener.idle_timeout, 120_000);
    assert.equal(listener.max_requests_per_connection, 100);
    assert.deepEqual(listener.routes, [
      {
        name: 'api',
        match: {
          host: ['api.example.com'],
          path: { prefix: '/api' },
          methods: ['GET', 'POST'],
          headers: [
            { name: 'x-canary', exact: '1' },
            { name: 'x-debug', present: true },
            { name: 'x-user', regex: '^[a-z]+$' },
          ],
        },
        cluster: 'api',
        host_rewrite: 'internal.api',
        prefix_rewrite: '/v2/',
        response_timeout: 3_600_000,
        upgrade_idle_timeout: 3_600_000,
      },
      {
        match: { host: ['*.example.com', '*'], path: { regex: '^/static/' } },
        cluster: 'static',
        upgrade_idle_timeout: 3_600_000,
      },
    ]);

    const { api, static: staticCluster } = config.clusters;
    assert.ok(api && staticCluster);
    assert.deepEqual(api.endpoints, [
      { host: '127.0.0.1', port: 9001, weight: 1 },
      { host: 'backend.internal', port: 80, weight: 3 },
    ]);
    assert.equal(api.lb, 'ring_hash');
    assert.deepEqual(api.hash_key, { header: 'x-user-id' });
    assert.equal(api.dns_refresh, 10_000);
    assert.equal(api.response_timeout, 5000);
    assert.deepEqual(api.outlier, {
      consecutive_connect_failures: 2,
      consecutive_5xx: 5,
      consecutive_gateway_errors: 5,
      base_ejection_time: 10_000,
      max_ejection_time: 300_000,
      max_ejection_percent: 50,
      panic: false,
    });
    assert.equal(api.pool.max_connections, 10);
    assert.equal(api.pool.connect_timeout, 1000);
    assert.equal(api.pool.max_pending, 1000);
    assert.deepEqual(staticCluster.endpoints, [{ host: '::1', port: 9002, weight: 1 }]);
    assert.deepEqual(staticCluster.hash_key, { source_ip: true });
  });
});

describe('reporting problems', () => {
  test('names file, line, path, what was expected and what was got', () => {
    const text = yaml(
      'log_level: info', // 1
      'listeners:', // 2
      '  - name: web', // 3
      '    address: 0.0.0.0:8080', // 4
      '    routes:', // 5
      '      - cluster: api', // 6
      'clusters:', // 7
      '  api:', // 8
      '    lb: round_robin', // 9
      '    endpoints:', // 10
      '      - 127.0.0.1:9001', // 11
      '      - host: backend.internal', // 12
      '        weight: 3', // 13
      '        port: 80a', // 14
    );
    const expected = 'muxgate.yaml:14 clusters.api.endpoints[1].port: expected an integer 1-65535, got "80a"';
    assert.deepEqual(problemsOf(text), [expected]);

    // From disk the message carries the file's basename; the error keeps the path as given.
    const file = join(dir, 'muxgate.yaml');
    writeFileSync(file, text);
    assert.throws(
      () => loadConfigFile(file),
      (err: unknown) => err instanceof ConfigError && err.message === expected && err.file === file,
    );
  });

  test('unknown key: on the line of the key itself', () => {
    const problems = problemsOf(yaml(...LISTENERS, '    foo: 1', ...CLUSTERS));
    assert.equal(problems.length, 1);
    assert.match(
      problems[0] ?? '',
      /^muxgate\.yaml:6 listeners\[0\]: unknown key "foo"; expected one of: name, address,/,
    );
  });

  test('missing key: on the line of the parent', () => {
    const problems = problemsOf(yaml(...LISTENERS.slice(0, 4), '      - name: api', ...CLUSTERS));
    assert.deepEqual(problems, ['muxgate.yaml:5 listeners[0].routes[0]: missing required key "cluster"']);
  });

  test('bad duration', () => {
    assert.deepEqual(problemsOf(yaml('drain_timeout: 5x', ...LISTENERS, ...CLUSTERS)), [
      'muxgate.yaml:1 drain_timeout: expected a duration like "5s" or "250ms", got "5x"',
    ]);
    assert.deepEqual(problemsOf(yaml(...LISTENERS, '    header_timeout: 0', ...CLUSTERS)), [
      'muxgate.yaml:6 listeners[0].header_timeout: expected at least 1ms, got 0',
    ]);
  });

  test('bad CIDR', () => {
    assert.deepEqual(problemsOf(yaml('trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]', ...LISTENERS, ...CLUSTERS)), [
      'muxgate.yaml:1 trusted_proxies[1]: expected an IP address or CIDR like "10.0.0.0/8" or "::1/128", got "10.0.0.0/33"',
    ]);
  });

  test('bad regex', () => {
    const problems = problemsOf(yaml(...LISTENERS, '        match: { path: { regex: "([a-z" } }', ...CLUSTERS));
    assert.equal(problems.length, 1);
    assert.match(
      problems[0] ?? '',
      /^muxgate\.yaml:6 listeners\[0\]\.routes\[0\]\.match\.path\.regex: expected a valid regular expression, got "\(\[a-z" \(Invalid regular expression/,
    );
  });

  test('ring_hash without hash_key', () => {
    assert.deepEqual(problemsOf(yaml(...LISTENERS, ...CLUSTERS, '    lb: ring_hash')), [
      'muxgate.yaml:7 clusters.api: missing required key "hash_key" (lb ring_hash needs one)',
    ]);
    assert.deepEqual(problemsOf(yaml(...LISTENERS, ...CLUSTERS, '    hash_key: { cookie: session }')), [
      'muxgate.yaml:10 clusters.api.hash_key: hash_key is only used by lb ring_hash or maglev, got lb round_robin',
    ]);
  });

  test('route to an unknown cluster', () => {
    const lines = [...LISTENERS.slice(0, 4), '      - cluster: apj', ...CLUSTERS];
    assert.deepEqual(problemsOf(yaml(...lines)), [
      'muxgate.yaml:5 listeners[0].routes[0].cluster: expected the name of a cluster (api), got "apj"',
    ]);
  });

  test('prefix_rewrite without a prefix match', () => {
    const lines = [...LISTENERS, '        match: { path: { exact: /a } }', '        prefix_rewrite: /b', ...CLUSTERS];
    assert.deepEqual(problemsOf(yaml(...lines)), [
      'muxgate.yaml:7 listeners[0].routes[0].prefix_rewrite: prefix_rewrite needs a match.path.prefix to replace, got match.path.exact',
    ]);
  });

  test('duplicate listener names and addresses', () => {
    const lines = [
      ...LISTENERS,
      '  - name: web', // 6
      '    address: 127.0.0.1:8080', // 7
      '    routes: [{ cluster: api }]', // 8
      '  - name: other', // 9
      '    address: 127.0.0.1:8080', // 10
      '    routes: [{ cluster: api }]', // 11
      '  - name: any-port', // 12
      '    address: 127.0.0.1:0', // 13: port 0 twice is fine
      '    routes: [{ cluster: api }]', // 14
      '  - name: admin-clash', // 15
      '    address: 127.0.0.1:9901', // 16: the admin API's default address
      '    routes: [{ cluster: api }]',
      ...CLUSTERS,
    ];
    assert.deepEqual(problemsOf(yaml(...lines)), [
      'muxgate.yaml:6 listeners[1].name: expected a unique listener name, got "web" again (first used by listeners[0])',
      'muxgate.yaml:10 listeners[2].address: expected a unique address, got "127.0.0.1:8080" again (already used by listener "web")',
      'muxgate.yaml:16 listeners[4].address: expected a unique address, got "127.0.0.1:9901" again (already used by admin)',
    ]);
  });

  test('YAML syntax error with its line', () => {
    const problems = problemsOf(yaml(...LISTENERS, 'clusters:', '  api: a: b', '  web: {}'));
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^muxgate\.yaml:7 invalid YAML: /);
    assert.match(
      problemsOf(yaml(...LISTENERS, ...CLUSTERS, 'listeners: []'))[0] ?? '',
      /^muxgate\.yaml:10 invalid YAML: .*unique/,
    );
  });

  test('every problem at once, in file order', () => {
    const problems = problemsOf(
      yaml(
        'workers: 0', // 1
        'via: "two words"', // 2
        'listeners:', // 3
        '  - name: Web', // 4
        '    address: localhost', // 5
        '    routes:', // 6
        '      - cluster: nowhere', // 7
        '        timeout: 5s', // 8
        'clusters:', // 9
        '  api:', // 10
        '    endpoints: []', // 11
        '    lb: fastest', // 12
      ),
    );
    assert.deepEqual(problems, [
      'muxgate.yaml:1 workers: expected an integer >= 1 or "auto", got 0',
      `muxgate.yaml:2 via: expected a token (letters, digits, !#$%&'*+.^_\`|~-) or false, got "two words"`,
      'muxgate.yaml:4 listeners[0].name: expected a name made of a-z, 0-9, _ and -, got "Web"',
      'muxgate.yaml:5 listeners[0].address: expected "host:port" or "[ipv6]:port", got "localhost"',
      'muxgate.yaml:7 listeners[0].routes[0].cluster: expected the name of a cluster (api), got "nowhere"',
      'muxgate.yaml:8 listeners[0].routes[0]: unknown key "timeout"; expected one of: name, match, cluster, host_rewrite, prefix_rewrite, response_timeout, upgrades, upgrade_idle_timeout, retry, rate_limit, cache, idempotency',
      'muxgate.yaml:11 clusters.api.endpoints: expected a list of endpoints (at least one), got an empty list',
      'muxgate.yaml:12 clusters.api.lb: expected one of round_robin, least_request, least_connections, random, ring_hash, maglev, got "fastest"',
    ]);
  });

  test('unreadable file names the file and the OS reason', () => {
    const missing = join(dir, 'nope.yaml');
    assert.throws(
      () => loadConfigFile(missing),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.code === 'config_invalid' &&
        err.message === `${missing}: cannot read the config file: no such file or directory (ENOENT)`,
    );
    assert.throws(() => loadConfigFile(dir), /cannot read the config file: .*\(EISDIR\)/);
  });

  test('empty file', () => {
    assert.deepEqual(problemsOf('# nothing yet\n'), [
      'muxgate.yaml:1 expected a map of settings, got an empty document',
    ]);
  });
});

describe('validating an in-memory config', () => {
  test('same schema and messages, labelled by source instead of file:line', () => {
    const input = {
      listeners: [{ name: 'proxy', address: '127.0.0.1:0', routes: [{ cluster: 'upstream' }] }],
      clusters: { upstream: { endpoints: ['127.0.0.1:9001'] } },
    };
    assert.equal(validateConfig(input, 'command line').clusters.upstream?.pool.max_connections, 100);
    const bad = { ...input, clusters: { upstream: { endpoints: ['nowhere'] } } };
    assert.throws(() => validateConfig(bad, 'command line'), {
      name: 'ConfigError',
      message: 'command line: clusters.upstream.endpoints[0]: expected "host:port" or "[ipv6]:port", got "nowhere"',
    });
  });
});

describe('JSON schema', () => {
  test('is JSON with the top-level properties, described for editors', () => {
    const schema = JSON.parse(JSON.stringify(configJsonSchema())) as {
      $schema: string;
      title: string;
      properties: Record<string, { description?: string; default?: unknown }>;
      required: string[];
      additionalProperties: boolean;
    };
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(schema.title, 'muxgate configuration');
    assert.deepEqual(Object.keys(schema.properties), [
      'log_level',
      'access_log',
      'workers',
      'drain_timeout',
      'memory_trim',
      'pid_file',
      'drain_idle_grace',
      'reuse_port',
      'direct_io',
      'trusted_proxies',
      'via',
      'admin',
      'listeners',
      'cache_zones',
      'clusters',
    ]);
    assert.deepEqual(schema.required.sort(), ['listeners']);
    assert.equal(schema.additionalProperties, false);
    // Input side: defaults as people write them.
    assert.equal(schema.properties.drain_timeout?.default, '30s');
    assert.ok(schema.properties.listeners?.description);
  });
});

describe('units and addresses', () => {
  test('durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('1m'), 60_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration(42), 42);
    assert.throws(() => parseDuration('5x'), { message: 'expected a duration like "5s" or "250ms", got "5x"' });
    assert.throws(() => parseDuration(-1), RangeError);
    // setTimeout would silently clamp anything longer to 1ms.
    assert.throws(() => parseDuration('1000h'), /at most 2147483647ms/);
  });

  test('sizes', () => {
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('10KB'), 10_000);
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('1MiB'), 1_048_576);
    assert.equal(parseSize(100), 100);
    assert.throws(() => parseSize('10kb'), { message: 'expected a size like "64KiB", "1MiB" or "512B", got "10kb"' });
  });

  test('host:port', () => {
    assert.deepEqual(parseHostPort('0.0.0.0:8080'), { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseHostPort('backend.internal:80'), { host: 'backend.internal', port: 80 });
    assert.throws(() => parseHostPort('::1:80'), /in brackets/);
    assert.throws(() => parseHostPort('host:0', { allowPortZero: false }), /port 1-65535/);
    assert.throws(() => parseHostPort('host:65536'), /port 0-65535/);
    assert.throws(() => parseHostPort('8080'), /expected "host:port"/);
  });
});

test('direct_io takes true or false, and nothing else', () => {
  assert.equal(parseConfigText(yaml('direct_io: false', ...LISTENERS, ...CLUSTERS), 'm.yaml').direct_io, false);
  assert.throws(
    () => parseConfigText(yaml('direct_io: maybe', ...LISTENERS, ...CLUSTERS), 'm.yaml'),
    /direct_io[\s\S]*true or false/,
  );
});
