export const USAGE = `muxgate — a reverse proxy and load balancer that does not run out of upstream connections

Usage:
  muxgate start -c FILE            run with a config file
  muxgate check -c FILE            validate a config file and print what it resolves to
  muxgate reload -c FILE           check FILE, then have the muxgate running it re-read it
  muxgate status -c FILE           a one-screen summary of the muxgate running FILE
  muxgate proxy --listen ADDR:PORT --to HOST:PORT[,HOST:PORT...] [options]
                                   a reverse proxy from one line, no config file
  muxgate schema                   print the config JSON Schema (for editors)
  muxgate doctor [-c FILE] [--json]
                                   print the kernel limits on connections and, with a config,
                                   the upstream connections each cluster can reach within them
  muxgate --version | --help

proxy options:
  --mode http|tcp                  http (default): HTTP reverse proxy; tcp: L4 proxy (pipes bytes)
  --to URL                         host:port or http://host:port (HTTP/1.1), h2c://host:port (HTTP/2
                                   cleartext), https://host:port (TLS, ALPN picks h2 or http/1.1),
                                   h2://host:port (HTTP/2 over TLS)
  --protocol http1|http2|auto      what clients speak to the listener (default http1; auto = both)
  --tls-cert FILE --tls-key FILE   terminate TLS on the listener with this certificate
  --source IP[,IP...]              leave from these source addresses; muxgate picks each source port
                                   per destination, multiplying the connection budget
  --workers N|auto                 worker processes (default 1)
  --admin ADDR:PORT                serve /stats and /healthz there (off by default)
  --log-level LEVEL                trace|debug|info|warn|error|fatal|silent (default info)
  --no-access-log                  do not write the per-request access log
  --no-websocket                   do not pass WebSocket upgrades (passed by default; to an HTTP/2
                                   upstream each rides the session pool as an RFC 8441 stream)

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.
`;

const PROXY_OPTIONS = USAGE.slice(USAGE.indexOf('proxy options:'), USAGE.indexOf('\nExit codes:'));

/** `muxgate <command> --help`: that command's usage alone. */
export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  start: `Usage: muxgate start -c FILE

Runs muxgate with the config FILE (YAML or JSON; \`muxgate schema\` prints its JSON Schema).
SIGTERM or SIGINT drains: stop accepting, finish in-flight requests within drain_timeout, exit 0.
SIGHUP re-reads FILE (see \`muxgate reload\`).
Exit codes: 0 ok, 1 runtime failure (e.g. address in use), 2 bad config.
`,
  check: `Usage: muxgate check -c FILE

Validates the config FILE (and the TLS files it names) and prints the listeners, routes and clusters
it resolves to, defaults included. Exit codes: 0 valid, 2 invalid (each problem named with its path).
`,
  reload: `Usage: muxgate reload -c FILE

Checks FILE as \`muxgate check\` does, then asks the muxgate running it to re-read it: through its
admin API (POST /reload, with admin.token if set, or MUXGATE_ADMIN_TOKEN), or with the admin API off,
by sending SIGHUP to the pid in pid_file. Open connections, requests and tunnels are kept.
Prints what changed. Exit codes: 0 reloaded, 1 not reached or failed, 2 invalid config (refused).
`,
  status: `Usage: muxgate status -c FILE

Prints a one-screen summary of the muxgate running FILE, from its admin API: listeners, clusters and
endpoints with their connections, port budgets, tunnels, request and error counts.
`,
  proxy: `Usage: muxgate proxy --listen ADDR:PORT --to TARGET[,TARGET...] [options]

A reverse proxy from one line, no config file: one listener with one catch-all route, one
round-robin cluster, the same defaults and validation as a config file.

${PROXY_OPTIONS}`,
  schema: `Usage: muxgate schema

Prints the config JSON Schema (for editors and CI validation).
`,
  doctor: `Usage: muxgate doctor [-c FILE] [--json]

Prints this machine's limits on connections (ephemeral port range, file descriptors, conntrack) and,
with a config, the upstream connections each cluster can reach within them. --json: the same as JSON.
`,
};
