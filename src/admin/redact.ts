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
  // A URL's credentials (a Redis store's password): the rest of it is kept, it says where the store is.
  if (typeof value === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/@]*@/i.test(value))
    return value.replace(/\/\/[^/@]*@/, '//<redacted>@');
  return value;
}
