/**
 * The one-line proxy as a new user tries it: a WebSocket through `muxgate proxy --listen … --to …`
 * opens and echoes, to an HTTP/1.1 backend (an Upgrade) and to an h2c backend (an RFC 8441 stream on
 * the session pool); with `--no-websocket` it is not upgraded (forwarded as a plain request). And each command
 * answers `--help` with its own usage.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { muxgate, portOf, startMuxgate } from '../helpers/cli.ts';
import { nextMessage, type WsBackend, wsBackend, wsConnect } from '../helpers/ws.ts';

const run = promisify(execFile);
let h1: WsBackend;
let h2: WsBackend;
before(async () => {
  h1 = await wsBackend();
  h2 = await wsBackend({ h2: true });
});
after(async () => {
  await h1.close();
  await h2.close();
});

async function echoThrough(to: string): Promise<void> {
  const m = startMuxgate(['proxy', '--listen', '127.0.0.1:0', '--to', to, '--no-access-log', '--admin', '127.0.0.1:0']);
  try {
    const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
    const admin = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
    const w = await wsConnect(`ws://127.0.0.1:${port}/chat`);
    const reply = nextMessage(w);
    w.send('hello through one line');
    assert.equal((await reply).data.toString(), 'hello through one line');
    // While it is open: counted as a WebSocket tunnel in /stats and /metrics.
    const stats = JSON.parse((await run('curl', ['-sS', `http://127.0.0.1:${admin}/stats`])).stdout);
    assert.deepEqual(stats.listeners[0].tunnels_by_kind, {
      websocket: 1,
      upgrade: 0,
      connect: 0,
      connect_udp: 0,
      tcp: 0,
    });
    const metrics = (await run('curl', ['-sS', `http://127.0.0.1:${admin}/metrics`])).stdout;
    assert.match(metrics, /^muxgate_tunnels\{listener="proxy",kind="websocket"\} 1$/m);
    w.close();
  } finally {
    assert.equal(await m.stop('SIGTERM'), 0);
  }
}

describe('muxgate proxy: WebSockets by default', () => {
  it('passes a WebSocket to an HTTP/1.1 backend as an Upgrade', async () => {
    const before = h1.h1Upgrades;
    await echoThrough(h1.addr);
    assert.equal(h1.h1Upgrades, before + 1);
  });

  it('passes a WebSocket to an h2c backend as an RFC 8441 stream', async () => {
    const before = h2.h2Streams;
    await echoThrough(`h2c://${h2.addr}`);
    assert.equal(h2.h2Streams, before + 1, 'an extended CONNECT stream, not an HTTP/1.1 Upgrade');
  });

  it('does not upgrade with --no-websocket: the backend answers a plain GET', async () => {
    const m = startMuxgate(['proxy', '--listen', '127.0.0.1:0', '--to', h1.addr, '--no-access-log', '--no-websocket']);
    try {
      const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
      const before = h1.h1Upgrades;
      // The Upgrade is dropped (hop-by-hop) and the request goes on as plain HTTP: 200, no 101.
      await assert.rejects(wsConnect(`ws://127.0.0.1:${port}/chat`), /status 200/);
      assert.equal(h1.h1Upgrades, before);
    } finally {
      assert.equal(await m.stop('SIGTERM'), 0);
    }
  });
});

describe('muxgate <command> --help', () => {
  for (const [cmd, first] of [
    ['start', 'Usage: muxgate start -c FILE'],
    ['check', 'Usage: muxgate check -c FILE'],
    ['proxy', 'Usage: muxgate proxy --listen ADDR:PORT'],
    ['schema', 'Usage: muxgate schema'],
    ['doctor', 'Usage: muxgate doctor'],
  ] as const) {
    it(`${cmd} --help prints its own usage and exits 0`, async () => {
      for (const flag of ['--help', '-h']) {
        const r = await muxgate([cmd, flag]);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.stdout.startsWith(first), r.stdout);
        assert.equal(r.stderr, '');
      }
    });
  }

  it('proxy --help lists every proxy option, --no-websocket included', async () => {
    const r = await muxgate(['proxy', '--help']);
    for (const opt of [
      '--listen',
      '--to',
      '--mode',
      '--protocol',
      '--source',
      '--workers',
      '--admin',
      '--no-websocket',
    ])
      assert.ok(r.stdout.includes(opt), opt);
  });
});
