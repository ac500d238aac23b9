export const USAGE = `muxgate — a reverse proxy and load balancer that does not run out of upstream connections

Usage:
  muxgate start -c FILE            run with a config file
  muxgate check -c FILE            validate a config file and print what it resolves to
  muxgate proxy --listen ADDR:PORT --to HOST:PORT[,HOST:PORT...] [options]
                                   a reverse proxy from one line, no config file
  muxgate schema                   print the config JSON Schema (for editors)
  muxgate --version | --help

proxy options:
  --mode http|tcp                  http (default); tcp arrives with the L4 proxy
  --workers N|auto                 worker processes (default 1)
  --admin ADDR:PORT                serve /stats and /healthz there (off by default)
  --log-level LEVEL                trace|debug|info|warn|error|fatal|silent (default info)
  --no-access-log                  do not write the per-request access log

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.
`;
