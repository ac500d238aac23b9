/**
 * Header fields by name, the shape an HTTP/2 upstream's response head is read through
 * (src/forward/h2-translate.ts): names lower-case, a repeated name as an array. Everything sent is a
 * flat [name, value, ...] list, which is what the HPACK encoder takes.
 */
export type IncomingHttpHeaders = Record<string, string | string[] | undefined>;
