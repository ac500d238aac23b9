/**
 * The TLS and HTTP/2 parts of the schema: a listener's `tls` (termination) and `http2` (ingress
 * limits and flood guards of muxgate's HTTP/2 engine), a cluster's `tls` (origination) and `http2`
 * (upstream connection settings). Defaults are safe for an edge: bounded concurrent streams, header
 * lists and tables, and windows large enough (1 MiB) that 64 KiB round trips do not throttle bodies.
 */
import { z } from 'zod';
import { bool, expected, int, list, map, oneOf, text } from './schema-builders.ts';
import { durationMs, sizeBytes } from './units.ts';

export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const filePath = (what: string) => text(`a path to ${what}`);

// ---------------------------------------------------------------------------------------------
// Listener TLS (termination)

const certificate = map('a certificate map with cert and key', {
  cert: filePath('a PEM certificate (chain) file').describe('PEM certificate, leaf first, then intermediates.'),
  key: filePath('a PEM private key file').describe('PEM private key of the certificate.'),
  server_names: list(
    text('a server name or "*.example.com"', /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/),
    'a list of server names',
    1,
  )
    .optional()
    .describe(
      'SNI names served with this certificate (exact or "*.example.com"); default: the certificate\'s DNS names.',
    ),
  default: bool()
    .optional()
    .describe('Served to clients that send no SNI or an unknown name; default: the first certificate.'),
});

export const listenerTls = map('a tls map', {
  cert: filePath('a PEM certificate file').optional().describe('Shorthand for one certificate: its file.'),
  key: filePath('a PEM private key file').optional().describe('Shorthand for one certificate: its key.'),
  certificates: list(certificate, 'a list of certificates (at least one)', 1)
    .optional()
    .describe('Certificates chosen by SNI: exact names, then wildcards, then the default.'),
  min_version: oneOf(TLS_VERSIONS).default('TLSv1.2').describe('Oldest TLS version accepted (TLS 1.3 is preferred).'),
  reload_interval: durationMs({ min: 10 })
    .prefault('5s')
    .describe('How often certificate files are checked; changed files are loaded without dropping connections.'),
})
  .superRefine((t, ctx) => {
    const single = t.cert !== undefined || t.key !== undefined;
    if (single && t.certificates !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected either cert + key or certificates, got both', input: t });
    } else if (!single && t.certificates === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected cert + key or a certificates list, got neither', input: t });
    } else if (single && (t.cert === undefined || t.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected both cert and key, got only ${t.cert === undefined ? 'key' : 'cert'}`,
        input: t,
      });
    }
  })
  .transform((t) => ({
    certificates: (t.certificates ?? [{ cert: t.cert ?? '', key: t.key ?? '' }]).map((c) => ({
      cert: c.cert,
      key: c.key,
      server_names: c.server_names,
      default: c.default,
    })),
    min_version: t.min_version,
    reload_interval: t.reload_interval,
  }));

export type ListenerTlsConfig = z.output<typeof listenerTls>;

// ---------------------------------------------------------------------------------------------
// Listener HTTP/2 (ingress limits)

const rapidReset = map('a rapid_reset map', {
  max_resets: int(1)
    .default(200)
    .describe('Streams a client may reset (or have refused) within `interval` before GOAWAY ENHANCE_YOUR_CALM.'),
  interval: durationMs({ min: 1 }).prefault('10s').describe('The window max_resets is counted over.'),
});

const floods = map('a floods map', {
  interval: durationMs({ min: 1 }).prefault('10s').describe('The window each limit below is counted over.'),
  max_settings: int(1).default(100).describe('SETTINGS frames per interval (each costs an ACK).'),
  max_pings: int(1).default(100).describe('PING frames per interval (each costs an answer).'),
  max_empty_frames: int(1)
    .default(100)
    .describe('DATA frames with no payload and no END_STREAM, and empty header fragments, per interval.'),
  max_window_updates: int(1)
    .default(10000)
    .describe('WINDOW_UPDATE frames per interval beyond two for each DATA frame muxgate sent.'),
  max_priority: int(1).default(1000).describe('PRIORITY frames per interval (validated, otherwise ignored).'),
});

/** The largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1). */
const MAX_WINDOW = 2 ** 31 - 1;

export const listenerHttp2 = map('an http2 map', {
  max_concurrent_streams: int(1, 2 ** 31 - 1)
    .default(100)
    .describe('Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).'),
  initial_window_size: sizeBytes({ min: 65535 })
    .refine((v) => v <= MAX_WINDOW, { error: expected('at most 2147483647 bytes (2^31-1)') })
    .prefault('1MiB')
    .describe('Per-stream receive window advertised to clients (64 KiB windows throttle uploads).'),
  connection_window_size: sizeBytes({ min: 65535 })
    .refine((v) => v <= MAX_WINDOW, { error: expected('at most 2147483647 bytes (2^31-1)') })
    .prefault('8MiB')
    .describe('Receive window of a whole connection.'),
  max_header_list_size: sizeBytes({ min: 1024 })
    .prefault('64KiB')
    .describe('Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE); larger: 431.'),
  max_header_block_size: sizeBytes({ min: 1024 })
    .prefault('128KiB')
    .describe(
      'Largest encoded header block (HEADERS + CONTINUATION); larger closes the connection (CONTINUATION flood).',
    ),
  header_table_size: sizeBytes({ min: 0 })
    .refine((v) => v <= 2 ** 24, { error: expected('at most 16MiB') })
    .prefault('4KiB')
    .describe('HPACK dynamic table the client may use (SETTINGS_HEADER_TABLE_SIZE; bounds an HPACK bomb).'),
  settings_timeout: durationMs({ min: 1 })
    .prefault('10s')
    .describe('A client that does not acknowledge our SETTINGS within this gets SETTINGS_TIMEOUT.'),
  stall_timeout: durationMs({ min: 1 })
    .prefault('30s')
    .describe("A response that cannot progress this long because the client's window stays at 0 is reset."),
  rapid_reset: rapidReset.prefault({}).describe('Guard against stream floods (CVE-2023-44487, rapid reset).'),
  floods: floods.prefault({}).describe('Limits on frames that cost muxgate work and the client nothing.'),
});

export type ListenerHttp2Config = z.output<typeof listenerHttp2>;

// ---------------------------------------------------------------------------------------------
// Cluster TLS (origination)

const clusterTlsMap = map('a tls map', {
  server_name: text('a server name')
    .optional()
    .describe("SNI sent and name the certificate must carry; default: the endpoint's host name."),
  ca: filePath('a PEM CA bundle').optional().describe('CA certificates to trust; default: the system store.'),
  cert: filePath('a PEM client certificate').optional().describe('Client certificate for mutual TLS.'),
  key: filePath('a PEM client key').optional().describe('Key of the client certificate.'),
  min_version: oneOf(TLS_VERSIONS).default('TLSv1.2').describe('Oldest TLS version offered.'),
  insecure_skip_verify: bool()
    .default(false)
    .describe('Do not verify the upstream certificate (test setups only; warned loudly at start).'),
}).superRefine((t, ctx) => {
  if ((t.cert === undefined) !== (t.key === undefined)) {
    ctx.addIssue({
      code: 'custom',
      message: `expected both cert and key for mutual TLS, got only ${t.cert === undefined ? 'key' : 'cert'}`,
      input: t,
    });
  }
});

/** `tls: true` is `tls: {}`: verify against the system store, SNI from the endpoint name. */
export const clusterTls = z.preprocess((v) => (v === true ? {} : v), clusterTlsMap);
export type ClusterTlsConfig = z.output<typeof clusterTlsMap>;

// ---------------------------------------------------------------------------------------------
// Cluster HTTP/2 (upstream sessions)

export const clusterHttp2 = map('an http2 map', {
  max_concurrent_streams: int(1, 2 ** 31 - 1)
    .default(100)
    .describe("Streams per upstream connection (also capped by the upstream's SETTINGS_MAX_CONCURRENT_STREAMS)."),
  initial_window_size: sizeBytes({ min: 65535 })
    .refine((v) => v <= MAX_WINDOW, { error: expected('at most 2147483647 bytes (2^31-1)') })
    .prefault('1MiB')
    .describe('Per-stream receive window.'),
  connection_window_size: sizeBytes({ min: 65535 })
    .refine((v) => v <= MAX_WINDOW, { error: expected('at most 2147483647 bytes (2^31-1)') })
    .prefault('16MiB')
    .describe('Receive window per connection.'),
  max_header_list_size: sizeBytes({ min: 1024 })
    .prefault('256KiB')
    .describe('Largest decoded response header list accepted from the upstream (larger: upstream_protocol_error).'),
  stall_timeout: durationMs({ min: 1 })
    .prefault('30s')
    .describe("A request body that cannot progress this long because the upstream's window stays at 0 is reset."),
  ping_interval: z
    .union([z.literal(0), durationMs({ min: 1 })], { error: expected('a duration or 0') })
    .prefault('30s')
    .describe('PING a connection silent this long; 0 disables keepalive pings.'),
  ping_timeout: durationMs({ min: 1 }).prefault('10s').describe('No PING answer within this: the connection is dead.'),
});

export type ClusterHttp2Config = z.output<typeof clusterHttp2>;

export const UPSTREAM_PROTOCOLS = ['http1', 'http2', 'auto'] as const;
export const upstreamProtocol = oneOf(UPSTREAM_PROTOCOLS);
