import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, parseConfigText } from '../../src/config/load.ts';

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));

test('the demo config that `npm start` runs is valid', () => {
  const c = loadConfigFile(root('examples/demo.yaml'));
  assert.equal(c.listeners[0]!.address.port, 8080);
  assert.deepEqual(Object.keys(c.clusters).sort(), ['demo', 'demo-b', 'demo-h2']);
  assert.equal(c.clusters['demo-h2']?.protocol, 'http2');
  assert.equal(c.clusters['demo-h2']?.websocket, 'h2');
  assert.deepEqual(Object.keys(c.cache_zones), ['demo']);
});

test("the README's config example is valid as written", () => {
  const readme = readFileSync(root('README.md'), 'utf8');
  const m = /## A config\n\n```yaml\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has a "## A config" yaml block');
  const c = parseConfigText(m[1]!, 'README.md');
  assert.equal(c.clusters.api?.lb, 'ring_hash');
  assert.deepEqual(c.clusters.api?.hash_key, { header: 'x-user-id' });
});
