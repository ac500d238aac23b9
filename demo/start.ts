/**
 * `npm start`: the demo backends (two HTTP/1.1, one HTTP/2 with RFC 8441 WebSockets) and muxgate on
 * examples/demo.yaml, in one process. SIGHUP reloads examples/demo.yaml.
 */
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/run.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { startDemoBackend, startDemoH2Backend } from './backends.ts';

const configPath = fileURLToPath(new URL('../examples/demo.yaml', import.meta.url));
const config = loadConfigFile(configPath);
try {
  await startDemoBackend('demo-a', 9101);
  await startDemoBackend('demo-b', 9102);
  await startDemoH2Backend('demo-h2', 9103);
} catch (err) {
  process.stderr.write(`demo: cannot start the demo backends on 127.0.0.1:9101-9103: ${(err as Error).message}\n`);
  process.exit(1);
}
const listener = config.listeners[0]!.address;
const admin = config.admin === false ? null : config.admin.address;
process.stderr.write(
  `\nmuxgate demo (config ${configPath})\n` +
    '  demo backends: http://127.0.0.1:9101 (demo-a), http://127.0.0.1:9102 (demo-b), h2c://127.0.0.1:9103 (demo-h2)\n' +
    `  try:   curl -i http://${listener.host}:${listener.port}/\n` +
    `         curl -i http://${listener.host}:${listener.port}/b/hello\n` +
    `         curl -i http://${listener.host}:${listener.port}/api/hello     (to demo-h2 over HTTP/2)\n` +
    (admin
      ? `  dashboard: http://${admin.host}:${admin.port}/   (stats: /stats, Prometheus: /metrics)\n` +
        `  then, in another terminal:  npm run demo:load\n` +
        '         (2,000 HTTP/1.1 clients and 2,000 WebSockets; the dashboard shows them on at most 4 upstream connections)\n'
      : '') +
    '  stop:  Ctrl-C\n\n',
);
process.exit(await run(config, configPath));
