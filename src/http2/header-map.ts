/**
 * Header fields by name, the shape HTTP/2 heads are translated through (src/forward/h2-translate.ts):
 * names lower-case, a repeated name as an array. The engine itself works on flat [name, value, ...]
 * lists; maps are only built where a head is rewritten.
 */
export type IncomingHttpHeaders = Record<string, string | string[] | undefined>;

/** Fields to send: values may be numbers (":status", "content-length"). */
export type OutgoingHttpHeaders = Record<string, string | number | string[] | undefined>;
