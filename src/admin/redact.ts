/** Keys whose values are secrets: shown as "<redacted>" by GET /config. */
const SECRET_KEYS = new Set(['password', 'token']);

/** A deep copy of the config with every secret replaced, safe to show to anyone who can read the admin API. */
export function redactConfig(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactConfig);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = SECRET_KEYS.has(k) && v !== undefined ? '<redacted>' : redactConfig(v);
    return out;
  }
  return value;
}
