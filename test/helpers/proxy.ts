import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { validateConfig } from '../../src/config/load.ts';
import { AccessLog } from '../../src/core/access-log.ts';
import type { LineSink } from '../../src/core/log-file.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { MuxgateServer } from '../../src/runtime/server.ts';

export interface TestProxy {
  server: MuxgateServer;
  port: number;
  url: string;
  /** Access log lines written so far, parsed. */
  accessLog: Record<string, unknown>[];
  /** Event log lines (warn and above by default). */
  eventLog: Record<string, unknown>[];
  close(): Promise<void>;
}

function collector(into: Record<string, unknown>[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') into.push(JSON.parse(line));
      cb();
    },
  });
}

/** An access-log destination that parses each line as it is written (the real formatter, no file). */
export function lineCollector(into: Record<string, unknown>[]): LineSink {
  const stats = { linesWritten: 0, linesLost: 0, writeErrors: 0, writes: 0 };
  return {
    stats,
    write(lines, count) {
      for (const line of lines.split('\n')) if (line !== '') into.push(JSON.parse(line));
      stats.linesWritten += count;
    },
    flush: () => Promise.resolve(),
    closeSync() {},
  };
}

export interface ProxyOptions {
  /** Upstream endpoints ("127.0.0.1:PORT"), used when `clusters` is not given. */
  upstreams?: string[];
  listener?: Partial<NonNullable<ConfigInput['listeners']>[number]>;
  cluster?: Record<string, unknown>;
  clusters?: ConfigInput['clusters'];
  routes?: unknown[];
  config?: Partial<ConfigInput>;
  /** An L4 listener (protocol tcp, cluster "up") instead of an HTTP one; the keys are merged in. */
  tcp?: Record<string, unknown>;
}

/** Starts muxgate in-process on 127.0.0.1 port 0 with a one-cluster config, logs captured. */
export async function startProxy(o: ProxyOptions): Promise<TestProxy> {
  const input = {
    log_level: 'warn',
    admin: false,
    access_log: { enabled: false },
    ...o.config,
    listeners: [
      o.tcp !== undefined
        ? { name: 'test', address: '127.0.0.1:0', protocol: 'tcp', cluster: 'up', ...o.tcp }
        : {
            name: 'test',
            address: '127.0.0.1:0',
            routes: o.routes ?? [{ cluster: 'up' }],
            ...o.listener,
          },
    ],
    clusters: o.clusters ?? { up: { endpoints: o.upstreams ?? [], ...o.cluster } },
  };
  const config = validateConfig(input, 'test');
  const accessLog: Record<string, unknown>[] = [];
  const eventLog: Record<string, unknown>[] = [];
  const server = new MuxgateServer(config, {
    log: pino({ level: config.log_level }, collector(eventLog)),
    accessLog: new AccessLog(lineCollector(accessLog), {
      errorsOnly: config.access_log.errors_only,
      sample: config.access_log.sample,
    }),
  });
  await server.start();
  const port = (server.address('test') as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    accessLog,
    eventLog,
    close: async () => {
      server.close();
    },
  };
}

/**
 * A forward proxy for tunnel tests: `listener` (its `connect` policy, protocol…), no routes, the
 * access log on so tests can read the tunnel lines; closed when the test ends.
 */
export async function startForwardProxy(
  t: { after(fn: () => unknown): void },
  listener: Record<string, unknown>,
): Promise<TestProxy> {
  const p = await startProxy({
    upstreams: ['127.0.0.1:1'],
    routes: [],
    listener,
    config: { access_log: { enabled: true } },
  });
  t.after(() => p.close());
  return p;
}
