import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config-error.ts';
import { parseConfigText } from '../../src/config/load.ts';

/** Lines joined with \n, so a test's line numbers are the array index + 1. */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

function problemsOf(text: string): readonly string[] {
  try {
    parseConfigText(text, 'muxgate.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected the config to be rejected');
}

const config = (route: string, zones: string[]) =>
  yaml(
    'listeners:', // 1
    '  - name: web', // 2
    '    address: 127.0.0.1:0', // 3
    '    routes:', // 4
    `      - { cluster: api, cache: ${route} }`, // 5
    'clusters:', // 6
    '  api: { endpoints: [127.0.0.1:8080] }', // 7
    ...zones, // 8...
  );

describe('config: cache', () => {
  test('zones and a route cache: defaults filled, sizes and durations parsed, names lower-cased', () => {
    const c = parseConfigText(
      config(
        '{ zone: pages, ttl_override: 5m, key: { sort_query: true, fields: [X-Tenant] }, bypass: [{ cookie: session }] }',
        ['cache_zones:', '  pages: { max_bytes: 64MiB }', '  files: { store: disk, path: /var/cache/muxgate }'],
      ),
      'muxgate.yaml',
    );
    assert.deepEqual(c.cache_zones, {
      pages: { store: 'memory', max_bytes: 64 * 1024 * 1024, max_object_bytes: 8 * 1024 * 1024 },
      files: {
        store: 'disk',
        path: '/var/cache/muxgate',
        max_bytes: 256 * 1024 * 1024,
        max_object_bytes: 8 * 1024 * 1024,
      },
    });
    const routes = c.listeners[0]!.protocol === 'tcp' ? [] : c.listeners[0]!.routes;
    assert.deepEqual(routes[0]?.cache, {
      zone: 'pages',
      key: { sort_query: true, fields: ['x-tenant'] },
      ignore_query: false,
      ttl_override: 300_000,
      bypass: [{ cookie: 'session' }],
      coalesce_timeout: 10_000,
    });
  });

  test('an unknown zone, a disk zone without a path, a bypass rule with both keys: each named where it is', () => {
    assert.deepEqual(
      problemsOf(
        config('{ zone: nowhere, bypass: [{ header: a, cookie: b }] }', ['cache_zones:', '  files: { store: disk }']),
      ),
      [
        'muxgate.yaml:5 listeners[0].routes[0].cache.bypass[0]: expected exactly one of header, cookie, got header and cookie',
        'muxgate.yaml:5 listeners[0].routes[0].cache.zone: expected the name of a cache zone (files), got "nowhere"',
        'muxgate.yaml:9 cache_zones.files.path: missing required key "path" (store disk needs one)',
      ],
    );
    assert.deepEqual(problemsOf(config('{ zone: a }', [])), [
      'muxgate.yaml:5 listeners[0].routes[0].cache.zone: expected the name of a cache zone (none defined in cache_zones), got "a"',
    ]);
  });
});
