import type net from 'node:net';
import type { HealthCheckConfig } from '../config/schema.ts';
import type { Logger } from '../core/log.ts';
import type { Dial, Dialer } from '../ports/dialer.ts';
import { secureUpstream } from '../pool/upstream-tls.ts';
import type { UpstreamTls } from '../pool/upstream-tls.ts';
import type { Endpoint } from './endpoint.ts';
import { probeH2 } from './h2-health-probe.ts';

/** The longest check answer read: a status line and headers fit; a body is not read. */
const MAX_ANSWER = 16 * 1024;
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})[ \r]/;

/** What the checker needs from its cluster: the endpoints of the moment, and how to reach them. */
export interface CheckTarget {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly dialer: Dialer;
  readonly tls: UpstreamTls | null;
  /** What the cluster speaks to its endpoints: checks speak it too unless health_check.protocol says otherwise. */
  readonly checkProtocol: 'http1' | 'http2' | 'auto';
}

/**
 * Active health checks of one cluster (`health_check:`): every interval (plus up to `jitter`, so that
 * many muxgates do not check in step), each endpoint gets a GET over HTTP/1.1 or HTTP/2 (the cluster's
 * protocol unless `protocol` is set; over TLS when the cluster uses TLS, where `auto` lets ALPN choose)
 * or a TCP connect, through the cluster's dialer: the same source addresses and port budget
 * as traffic. `unhealthy_threshold` failures in a row take an endpoint out of selection,
 * `healthy_threshold` passes in a row bring it back; each change is logged once.
 */
export class HealthChecker {
  private readonly target: CheckTarget;
  private readonly cfg: HealthCheckConfig;
  private readonly log: Logger;
  private readonly ranges: [number, number][];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Checks in flight, so that stop() can cut them. */
  private readonly running = new Set<Dial>();

  constructor(target: CheckTarget, cfg: HealthCheckConfig, log: Logger) {
    this.target = target;
    this.cfg = cfg;
    this.log = log;
    this.ranges = cfg.expected_statuses.map((s) => {
      const [a, b] = s.split('-');
      return [Number(a), Number(b ?? a)];
    });
  }

  /** The first round now, then one per interval. */
  start(): void {
    this.round();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const d of this.running) d.cancel();
    this.running.clear();
  }

  private round(): void {
    if (this.stopped) return;
    for (const e of this.target.endpoints) this.check(e);
    const delay = this.cfg.interval + Math.floor(Math.random() * (this.cfg.jitter + 1));
    this.timer = setTimeout(() => this.round(), delay);
    this.timer.unref();
  }

  private check(e: Endpoint): void {
    let done = false;
    let socket: net.Socket | null = null;
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timeout);
      this.running.delete(dial);
      socket?.destroy();
      if (!this.stopped) this.record(e, error);
    };
    const timeout = setTimeout(() => finish(`no answer within ${this.cfg.timeout} ms`), this.cfg.timeout);
    timeout.unref();
    const dial = this.target.dialer.dial(
      e.address,
      e.port,
      { noDelay: true },
      {
        onDialFailed: (_code, detail) => finish(`connect: ${detail}`),
        onDialConnected: (s) => {
          socket = s;
          s.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
          if (this.cfg.type === 'tcp') {
            finish(null);
            return;
          }
          const tls = this.target.tls;
          const protocol = this.cfg.protocol ?? this.target.checkProtocol;
          if (tls === null) {
            if (protocol === 'http2') this.requestH2(s, 'http', e, finish);
            else this.request(s, e, finish);
            return;
          }
          const alpn = protocol === 'http2' ? ['h2'] : protocol === 'http1' ? ['http/1.1'] : ['h2', 'http/1.1'];
          socket = secureUpstream(s, tls, e.host, alpn, (err, secure) => {
            if (err !== null) finish(`tls: ${err.message}`);
            else if ((secure as { alpnProtocol?: string | false }).alpnProtocol === 'h2') {
              this.requestH2(secure, 'https', e, finish);
            } else if (protocol === 'http2') finish('tls: the endpoint did not agree to h2 (ALPN)');
            else this.request(secure, e, finish);
          });
        },
      },
    );
    this.running.add(dial);
  }

  private hostOf(e: Endpoint): string {
    return this.cfg.host ?? (e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`);
  }

  private passes(status: number): boolean {
    return this.ranges.some(([a, b]) => status >= a && status <= b);
  }

  /** GET path over HTTP/2 (muxgate's engine); passes when the final :status is expected. */
  private requestH2(
    s: net.Socket,
    scheme: 'http' | 'https',
    e: Endpoint,
    finish: (error: string | null) => void,
  ): void {
    probeH2(s, scheme, this.hostOf(e), this.cfg.path, (status, error) => {
      if (status === null) finish(error ?? 'no answer');
      else finish(this.passes(status) ? null : `status ${status}`);
    });
  }

  /** GET path over HTTP/1.1; passes when the status line names an expected status. */
  private request(s: net.Socket, e: Endpoint, finish: (error: string | null) => void): void {
    const host = this.hostOf(e);
    s.write(
      `GET ${this.cfg.path} HTTP/1.1\r\nhost: ${host}\r\nuser-agent: muxgate-health-check\r\nconnection: close\r\n\r\n`,
    );
    let head = '';
    s.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n')) {
        if (head.length > MAX_ANSWER) finish('no status line');
        return;
      }
      const m = STATUS_LINE.exec(head);
      if (m === null) {
        finish('not an HTTP/1.1 status line');
        return;
      }
      const status = Number(m[1]);
      finish(this.passes(status) ? null : `status ${status}`);
    });
    s.on('end', () => finish('closed before a status line'));
  }

  private record(e: Endpoint, error: string | null): void {
    e.checksTotal++;
    if (error === null) {
      e.checkFailures = 0;
      e.checkPasses++;
      if (!e.checkedHealthy && e.checkPasses >= this.cfg.healthy_threshold) {
        e.checkedHealthy = true;
        e.lastCheckError = null;
        this.log.info({ cluster: this.target.name, endpoint: e.key, passes: e.checkPasses }, 'endpoint healthy again');
      }
      return;
    }
    e.checkPasses = 0;
    e.checkFailures++;
    e.lastCheckError = error;
    if (e.checkedHealthy && e.checkFailures >= this.cfg.unhealthy_threshold) {
      e.checkedHealthy = false;
      this.log.warn(
        { cluster: this.target.name, endpoint: e.key, failures: e.checkFailures, error },
        'endpoint failed its health checks: out of selection',
      );
    }
  }
}
