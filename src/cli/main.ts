import { readFileSync } from 'node:fs';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { ConfigError } from '../config/config-error.ts';
import { configJsonSchema } from '../config/json-schema.ts';
import { loadConfigFile, validateConfig } from '../config/load.ts';
import { oneLineConfig } from '../config/one-line.ts';
import { checkTlsFiles } from '../config/tls-files.ts';
import type { Config } from '../config/schema.ts';
import { describeConfig } from './describe.ts';
import { diagnose, formatDoctor, readMachineFacts } from './doctor.ts';
import { reloadCommand } from './reload-command.ts';
import { run } from './run.ts';
import { statusCommand } from './status-command.ts';
import { COMMAND_USAGE, USAGE } from './usage.ts';

export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

class UsageError extends Error {}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Entry point of the `muxgate` command. Resolves to the exit code (run() resolves only on shutdown). */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`muxgate: ${err.message}\nRun 'muxgate --help' for usage.\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`muxgate: ${(err as Error).message ?? String(err)}\n`);
    return EXIT_RUNTIME;
  }
}

async function dispatch(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    process.stdout.write(`muxgate ${version()}\n`);
    return EXIT_OK;
  }
  const help = COMMAND_USAGE[cmd];
  if (help !== undefined && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(help);
    return EXIT_OK;
  }
  switch (cmd) {
    case 'start': {
      const path = configPath(rest);
      return run(checked(loadConfigFile(path)), path);
    }
    case 'check': {
      const config = checked(loadConfigFile(configPath(rest)));
      process.stdout.write(describeConfig(config));
      return EXIT_OK;
    }
    case 'reload':
      return reloadCommand(checked(loadConfigFile(configPath(rest))), process.stdout, process.stderr);
    case 'status':
      return statusCommand(loadConfigFile(configPath(rest)), process.stdout, process.stderr);
    case 'schema':
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return EXIT_OK;
    case 'proxy':
      return run(checked(proxyConfig(rest)));
    case 'doctor': {
      const { values } = parse(rest, { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } });
      const config = typeof values.config === 'string' ? loadConfigFile(values.config) : null;
      const report = diagnose(readMachineFacts(), config);
      process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
      return EXIT_OK;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

function parse(args: string[], options: ParseArgsOptionsConfig) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false, allowNegative: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function configPath(args: string[]): string {
  const { values } = parse(args, { config: { type: 'string', short: 'c' } });
  const c = values.config;
  if (typeof c !== 'string') throw new UsageError('missing -c FILE');
  return c;
}

/** The config, once every TLS file it names was loaded (a bad one is a config error: exit 2). */
function checked(config: Config): Config {
  checkTlsFiles(config);
  return config;
}

function proxyConfig(args: string[]): Config {
  const { values } = parse(args, {
    listen: { type: 'string' },
    to: { type: 'string' },
    mode: { type: 'string', default: 'http' },
    source: { type: 'string' },
    workers: { type: 'string' },
    admin: { type: 'string' },
    'log-level': { type: 'string' },
    'access-log': { type: 'boolean', default: true },
    protocol: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    websocket: { type: 'boolean', default: true },
  });
  if (typeof values.listen !== 'string') throw new UsageError('missing --listen ADDR:PORT');
  if (typeof values.to !== 'string') throw new UsageError('missing --to HOST:PORT[,HOST:PORT...]');
  if (values.mode !== 'http' && values.mode !== 'tcp')
    throw new UsageError(`--mode must be http or tcp, got "${String(values.mode)}"`);
  const protocol = values.protocol;
  if (protocol !== undefined && protocol !== 'http1' && protocol !== 'http2' && protocol !== 'auto')
    throw new UsageError(`--protocol must be http1, http2 or auto, got "${String(protocol)}"`);
  if ((typeof values['tls-cert'] === 'string') !== (typeof values['tls-key'] === 'string'))
    throw new UsageError('--tls-cert and --tls-key go together');
  let workers: number | 'auto' | undefined;
  if (typeof values.workers === 'string') {
    workers = values.workers === 'auto' ? 'auto' : Number(values.workers);
    if (workers !== 'auto' && (!Number.isInteger(workers) || workers < 1)) {
      throw new UsageError(`--workers must be an integer >= 1 or "auto", got "${values.workers}"`);
    }
  }
  let input: ReturnType<typeof oneLineConfig>;
  try {
    input = oneLineConfig({
      listen: values.listen,
      to: values.to.split(',').map((s: string) => s.trim()),
      workers,
      admin: typeof values.admin === 'string' ? values.admin : undefined,
      logLevel: typeof values['log-level'] === 'string' ? values['log-level'] : undefined,
      accessLog: values['access-log'] === true,
      mode: values.mode,
      sources: typeof values.source === 'string' ? values.source.split(',').map((s: string) => s.trim()) : undefined,
      protocol,
      tlsCert: typeof values['tls-cert'] === 'string' ? values['tls-cert'] : undefined,
      tlsKey: typeof values['tls-key'] === 'string' ? values['tls-key'] : undefined,
      websocket: values.websocket === true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return validateConfig(input, 'command line');
}
