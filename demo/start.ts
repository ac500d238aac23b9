/**
 * `npm start`: two demo backends and muxgate on examples/demo.yaml, in one process.
 */
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/run.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { startDemoBackend } from './backends.ts';

const configPath = fileURLToPath(new URL('../examples/demo.yaml', import.meta.url));
const config = loadConfigFile(configPath);
try {
  await startDemoBackend('demo-a', 9101);
  await startDemoBackend('demo-b', 9102);
} catch (err) {
  process.stderr.write(`demo: cannot start the demo backends on 127.0.0.1:9101/9102: ${(err as Error).message}\n`);
  process.exit(1);
}
const listener = config.listeners[0]!.address;
const admin = config.admin === false ? null : config.admin.address;
process.stderr.write(
  `\nmuxgate demo (config ${configPath})\n` +
    '  demo backends: http://127.0.0.1:9101 (demo-a), http://127.0.0.1:9102 (demo-b)\n' +
    `  try:   curl -i http://${listener.host}:${listener.port}/\n` +
    `         curl -i http://${listener.host}:${listener.port}/b/hello\n` +
    (admin ? `  admin: http://${admin.host}:${admin.port}/stats\n` : '') +
    '  stop:  Ctrl-C\n\n',
);
process.exit(await run(config));
