/**
 * Every error muxgate answers or logs has a stable code. The code is what operators grep for and what
 * clients read from the `muxgate-error` response header; the text is only for humans.
 * `source` says which side caused it, `status` is the HTTP status sent downstream when a response can
 * still be sent.
 */
export type ErrorSource = 'downstream' | 'upstream' | 'internal';

/**
 * Whether a request that failed with an error may be sent again, to another endpoint: `unsent` when
 * nothing of it left muxgate (any method may go again), `idempotent` when it may have reached the
 * upstream (only idempotent methods may), `never` (the default) otherwise. Callers read this column
 * instead of testing codes (Pingora's RetryType is the model).
 */
export type RetryWhen = 'never' | 'unsent' | 'idempotent';

export interface ErrorInfo {
  readonly status: number;
  readonly source: ErrorSource;
  readonly text: string;
  readonly retry?: RetryWhen;
}

export const ERRORS = {
  // Malformed or ambiguous requests: rejected, never forwarded, connection closed.
  invalid_request_line: { status: 400, source: 'downstream', text: 'Malformed request line' },
  invalid_header: { status: 400, source: 'downstream', text: 'Malformed header field' },
  obs_fold: { status: 400, source: 'downstream', text: 'Obsolete line folding is not allowed' },
  bare_lf: { status: 400, source: 'downstream', text: 'Lines must end with CRLF' },
  missing_host: { status: 400, source: 'downstream', text: 'Missing Host header' },
  multiple_host: { status: 400, source: 'downstream', text: 'More than one Host header' },
  invalid_host: { status: 400, source: 'downstream', text: 'Invalid Host header' },
  invalid_content_length: { status: 400, source: 'downstream', text: 'Invalid Content-Length' },
  conflicting_content_length: { status: 400, source: 'downstream', text: 'Conflicting Content-Length values' },
  ambiguous_framing: { status: 400, source: 'downstream', text: 'Both Content-Length and Transfer-Encoding' },
  transfer_encoding_http10: { status: 400, source: 'downstream', text: 'Transfer-Encoding is not allowed in HTTP/1.0' },
  unsupported_transfer_encoding: {
    status: 501,
    source: 'downstream',
    text: 'Only Transfer-Encoding: chunked is supported',
  },
  invalid_chunk: { status: 400, source: 'downstream', text: 'Malformed chunked body' },
  header_too_large: { status: 431, source: 'downstream', text: 'Request header section too large' },
  too_many_headers: { status: 431, source: 'downstream', text: 'Too many header fields' },
  unsupported_version: { status: 505, source: 'downstream', text: 'HTTP version not supported' },
  expectation_failed: { status: 417, source: 'downstream', text: 'Unsupported expectation' },
  method_not_allowed: { status: 405, source: 'downstream', text: 'Method not allowed here' },
  header_timeout: { status: 408, source: 'downstream', text: 'Request header timeout' },
  no_route: { status: 404, source: 'downstream', text: 'No route matches this request' },
  downstream_closed: { status: 499, source: 'downstream', text: 'Client closed the connection' },
  // Tunnels: WebSocket / Upgrade, CONNECT, CONNECT-UDP.
  invalid_connect: { status: 400, source: 'downstream', text: 'Malformed CONNECT request' },
  invalid_upgrade: { status: 400, source: 'downstream', text: 'Malformed protocol upgrade request' },
  connect_denied: { status: 403, source: 'downstream', text: 'The CONNECT target is not allowed' },
  connect_client_denied: { status: 403, source: 'downstream', text: 'This client may not use the forward proxy' },
  proxy_auth_required: { status: 407, source: 'downstream', text: 'Proxy authentication required' },
  malformed_capsule: { status: 400, source: 'downstream', text: 'Malformed capsule on a CONNECT-UDP stream' },
  capsule_too_large: { status: 400, source: 'downstream', text: 'Capsule larger than the configured limit' },
  // Upstream failures.
  upstream_connect_failed: {
    status: 502,
    source: 'upstream',
    text: 'Could not connect to the upstream',
    retry: 'unsent',
  },
  upstream_reset: {
    status: 502,
    source: 'upstream',
    text: 'Upstream closed the connection early',
    retry: 'idempotent',
  },
  upstream_protocol_error: { status: 502, source: 'upstream', text: 'Upstream sent an invalid response' },
  connect_resolve_failed: { status: 502, source: 'upstream', text: 'Could not resolve the CONNECT target' },
  websocket_handshake_failed: {
    status: 502,
    source: 'upstream',
    text: 'The upstream answered the WebSocket handshake wrongly',
  },
  upstream_timeout: { status: 504, source: 'upstream', text: 'Upstream did not answer in time' },
  // RFC 9111 §5.2.1.7: the client asked for a stored answer only, and there is none fresh enough.
  cache_only_if_cached: {
    status: 504,
    source: 'downstream',
    text: 'Not in the cache, and the request said only-if-cached',
  },
  no_healthy_endpoint: { status: 503, source: 'upstream', text: 'No healthy upstream endpoint' },
  pool_queue_full: { status: 503, source: 'upstream', text: 'Upstream connection pool queue is full' },
  circuit_open: {
    status: 503,
    source: 'upstream',
    text: "The cluster's circuit breaker is open (too many requests in flight or waiting)",
  },
  pool_queue_timeout: { status: 503, source: 'upstream', text: 'Timed out waiting for an upstream connection' },
  upstream_ports_exhausted: {
    status: 503,
    source: 'upstream',
    retry: 'unsent',
    text: 'No free source port to reach the upstream (see the port budget in /stats)',
  },
  idle_timeout: { status: 408, source: 'downstream', text: 'Connection idle too long' },
  rapid_reset: {
    status: 429,
    source: 'downstream',
    text: 'HTTP/2 stream reset flood (GOAWAY ENHANCE_YOUR_CALM)',
  },
  // Admission: rate limits and Idempotency-Key (a route's rate_limit: and idempotency:).
  rate_limited: { status: 429, source: 'downstream', text: 'Rate limit exceeded; see Retry-After' },
  invalid_idempotency_key: {
    status: 400,
    source: 'downstream',
    text: 'Idempotency-Key must be 1-255 visible characters (optionally a quoted string)',
  },
  idempotency_in_flight: {
    status: 409,
    source: 'downstream',
    text: 'A request with this Idempotency-Key is still being processed',
  },
  idempotency_key_reused: {
    status: 422,
    source: 'downstream',
    text: 'This Idempotency-Key was used for a different request',
  },
  idempotency_body_too_large: {
    status: 413,
    source: 'downstream',
    text: 'Request body larger than idempotency.max_request_bytes',
  },
  idempotency_store_unavailable: {
    status: 503,
    source: 'internal',
    text: 'The Idempotency-Key store is unavailable (on_store_error: fail_closed)',
  },
  rate_limit_store_unavailable: {
    status: 503,
    source: 'internal',
    text: 'The rate-limit store is unavailable (on_store_error: fail_closed)',
  },
  // Ours.
  internal_error: { status: 500, source: 'internal', text: 'Internal proxy error' },
  shutting_down: { status: 503, source: 'internal', text: 'Proxy is shutting down' },
  too_many_connections: { status: 503, source: 'internal', text: 'The listener has max_connections open' },
  too_many_connections_per_client: {
    status: 503,
    source: 'downstream',
    text: 'This client has max_connections_per_client open',
  },
  // The L4 edge (a connection closed before any upstream work; no response can be sent).
  proxy_protocol_untrusted: {
    status: 400,
    source: 'downstream',
    text: 'A PROXY header is expected, but the peer is not in proxy_protocol.trusted',
  },
  proxy_protocol_missing: {
    status: 400,
    source: 'downstream',
    text: 'The connection does not start with a PROXY header',
  },
  proxy_protocol_malformed: { status: 400, source: 'downstream', text: 'Malformed PROXY header' },
  proxy_protocol_too_large: { status: 400, source: 'downstream', text: 'PROXY v2 header larger than allowed' },
  proxy_protocol_timeout: {
    status: 408,
    source: 'downstream',
    text: 'No complete PROXY header within proxy_protocol.timeout',
  },
  tls_not_tls: { status: 400, source: 'downstream', text: 'Not a TLS connection (sni_routes)' },
  client_hello_malformed: { status: 400, source: 'downstream', text: 'Malformed TLS ClientHello' },
  client_hello_too_large: {
    status: 400,
    source: 'downstream',
    text: 'TLS ClientHello larger than max_client_hello_bytes',
  },
  sni_invalid: { status: 400, source: 'downstream', text: 'The ClientHello server name is not a DNS host name' },
  sni_timeout: { status: 408, source: 'downstream', text: 'No complete ClientHello within sni_timeout' },
  sni_no_route: {
    status: 404,
    source: 'downstream',
    text: 'No sni route for this server name and ALPN, and no default cluster',
  },
} as const satisfies Record<string, ErrorInfo>;

export type ErrorCode = keyof typeof ERRORS;

/** The retry column of an error (absent: never). */
export function retryWhen(code: ErrorCode): RetryWhen {
  return (ERRORS[code] as ErrorInfo).retry ?? 'never';
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  417: 'Expectation Failed',
  429: 'Too Many Requests',
  422: 'Unprocessable Content',
  431: 'Request Header Fields Too Large',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Error';
}
