import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config-error.ts';
import { parseConfigText } from '../../src/config/load.ts';

const config = (healthCheck: string) =>
  `listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: api }] }
clusters:
  api:
    endpoints: ["127.0.0.1:9000"]
${healthCheck}`;

function problems(text: string): string[] {
  try {
    parseConfigText(text, 'muxgate.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('health_check', () => {
  test('absent by default; `health_check: {}` fills every default', () => {
    assert.equal(parseConfigText(config(''), 'muxgate.yaml').clusters.api?.health_check, undefined);
    const c = parseConfigText(config('    health_check: {}\n'), 'muxgate.yaml');
    assert.deepEqual(c.clusters.api?.health_check, {
      type: 'http',
      path: '/',
      expected_statuses: ['200-399'],
      interval: 5000,
      jitter: 500,
      timeout: 2000,
      healthy_threshold: 2,
      unhealthy_threshold: 3,
    });
    const codes = parseConfigText(config('    health_check: { expected_statuses: [200, 204, "300-302"] }\n'), 'm.yaml');
    assert.deepEqual(codes.clusters.api?.health_check?.expected_statuses, ['200', '204', '300-302']);
  });

  test('bad statuses, paths and thresholds are named', () => {
    const p = problems(
      config(
        '    health_check: { type: udp, path: healthz, expected_statuses: [200, "500-400", "abc"], unhealthy_threshold: 0 }\n',
      ),
    );
    assert.equal(p.length, 5, p.join('\n'));
    assert.match(p.join('\n'), /health_check\.type: expected one of http, tcp/);
    assert.match(p.join('\n'), /health_check\.path: expected a path starting with \//);
    assert.match(
      p.join('\n'),
      /health_check\.expected_statuses\[1\]: expected a range whose end is not below its start/,
    );
    assert.match(p.join('\n'), /health_check\.expected_statuses\[2\]: expected a status or a range/);
    assert.match(p.join('\n'), /health_check\.unhealthy_threshold/);
  });
});
