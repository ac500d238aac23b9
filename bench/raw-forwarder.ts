// A reference point for bench/analysis.md, not a proxy: each client connection gets its own upstream
// connection and bytes are copied both ways with no HTTP parsing at all. It shows what Node's net
// streams cost by themselves on this machine.
//
//   node bench/raw-forwarder.ts <listen port> <upstream port>
import net from 'node:net';

const port = Number(process.argv[2]);
const upstream = Number(process.argv[3]);
if (!Number.isInteger(port) || !Number.isInteger(upstream)) {
  console.error('usage: node bench/raw-forwarder.ts <listen port> <upstream port>');
  process.exit(2);
}
net
  .createServer({ noDelay: true }, (down) => {
    const up = net.connect({ port: upstream, host: '127.0.0.1', noDelay: true });
    down.on('data', (c: Buffer) => up.write(c));
    up.on('data', (c: Buffer) => down.write(c));
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => {});
    up.on('error', () => {});
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
