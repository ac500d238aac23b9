// The static table of RFC 7541 Appendix A. Index 0 is unused so that array positions are the
// wire indices (1-61).
export const STATIC_NAMES: readonly string[] = [
  '',
  ':authority',
  ':method',
  ':method',
  ':path',
  ':path',
  ':scheme',
  ':scheme',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  ':status',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'accept',
  'access-control-allow-origin',
  'age',
  'allow',
  'authorization',
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-range',
  'content-type',
  'cookie',
  'date',
  'etag',
  'expect',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'link',
  'location',
  'max-forwards',
  'proxy-authenticate',
  'proxy-authorization',
  'range',
  'referer',
  'refresh',
  'retry-after',
  'server',
  'set-cookie',
  'strict-transport-security',
  'transfer-encoding',
  'user-agent',
  'vary',
  'via',
  'www-authenticate',
];

const VALUED: Record<number, string> = {
  2: 'GET',
  3: 'POST',
  4: '/',
  5: '/index.html',
  6: 'http',
  7: 'https',
  8: '200',
  9: '204',
  10: '206',
  11: '304',
  12: '400',
  13: '404',
  14: '500',
  16: 'gzip, deflate',
};

export const STATIC_VALUES: readonly string[] = STATIC_NAMES.map((_, i) => VALUED[i] ?? '');

/** Number of static entries; wire indices above it address the dynamic table. */
export const STATIC_COUNT = STATIC_NAMES.length - 1;

const byName = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) {
  // Walking backwards leaves the lowest index for names that repeat (:method, :status...).
  byName.set(STATIC_NAMES[i]!, i);
}

/** Lowest static index whose name is `name`, or 0. */
export function staticNameIndex(name: string): number {
  return byName.get(name) ?? 0;
}

/**
 * Static index of the entry (name, value), or 0. Entries sharing a name are adjacent, so the
 * values are compared from the name's first index on: no key string is built per look-up.
 */
export function staticFieldIndex(name: string, value: string): number {
  let i = byName.get(name);
  if (i === undefined) return 0;
  for (; i <= STATIC_COUNT && STATIC_NAMES[i] === name; i++) if (STATIC_VALUES[i] === value) return i;
  return 0;
}
