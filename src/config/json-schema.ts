/**
 * JSON Schema for muxgate.yaml, for editor completion and inline validation (e.g. the YAML language
 * server's `# yaml-language-server: $schema=...`). It describes the input side: what people write,
 * with defaults shown as they would be written ("30s", not 30000).
 */
import { z } from 'zod';
import { configSchema } from './schema.ts';

export function configJsonSchema(): Record<string, unknown> {
  // Cross-field rules (cluster names, hash_key vs lb...) have no JSON Schema form; parsing checks them.
  const schema = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' });
  return {
    ...schema,
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'muxgate configuration',
    description:
      'muxgate.yaml: listeners with their routes, and the clusters of upstream endpoints they send to. ' +
      'Durations are "250ms", "5s", "1m", "1h" or integer milliseconds; sizes "512B", "10KB", "64KiB", "1MiB" or integer bytes.',
  };
}
