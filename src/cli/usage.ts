export const USAGE = `muxgate — a reverse proxy and load balancer that does not run out of upstream connections

Usage:
  muxgate start -c FILE            run with a config file
  muxgate check -c FILE            validate a config file and print what it resolves to
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

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.
`;
