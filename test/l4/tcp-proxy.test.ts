import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Backend, blackhole, rawBackend } from '../helpers/backend.ts';
import { DEFAULT_EPHEMERAL_RANGE, ephemeralPortRange } from '../../src/core/sysctl.ts';
import { sliceOf } from '../../src/ports/port-allocator.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';
import { startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { closedPort, connect, SocketReader } from '../helpers/wire.ts';

type EchoBackend = Backend<net.Server> & { peers: { address: string; port: number }[] };

/**
 * Echoes every byte back (ending its side when the client ends) and records each peer's address and
 * port. With `name`, it first says which backend answered.
 */
async function echoBackend(name?: string): Promise<EchoBackend> {
  const peers: EchoBackend['peers'] = [];
  const b = await rawBackend((s) => {
    peers.push({ address: String(s.remoteAddress), port: Number(s.remotePort) });
    s.on('error', () => {});
    if (name !== undefined) s.write(`${name}\n`);
    s.pipe(s);
  });
  return Object.assign(b, { peers });
}

function connectFrom(port: number, localAddress: string): Promise<SocketReader> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(new SocketReader(s)));
    s.once('error', reject);
  });
}

describe('L4 TCP proxy', () => {
  let echo: Backend<net.Server>;
  before(async () => {
    echo = await echoBackend();
  });
  after(() => echo.close());

  test('pipes bytes both ways and logs one access line per connection with byte counts', async (t) => {
    const proxy = await startProxy({ upstreams: [echo.addr], tcp: {}, config: { access_log: { enabled: true } } });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    c.write('hello');
    assert.equal((await c.readExactly(5)).toString(), 'hello');
    c.write(' world, twice');
    assert.equal((await c.readExactly(13)).toString(), ' world, twice');
    assert.equal(proxy.server.snapshot().listeners[0]?.tunnels_by_kind.tcp, 1, 'counted while up');
    c.socket.end();
    assert.equal(await c.waitEnded(), true, 'the echo side ends after the client ends');
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    const line = proxy.accessLog[0] ?? {};
    assert.equal(line.listener, 'test');
    assert.equal(line.client, '127.0.0.1');
    assert.equal(line.upstream, echo.addr);
    assert.match(String(line.source), /^127\.0\.0\.1:\d+$/);
    assert.equal(line.bytes_in, 18);
    assert.equal(line.bytes_out, 18);
    assert.equal(line.closed_by, 'client');
    assert.equal(line.error, undefined);
    const s = proxy.server.snapshot().listeners[0];
    assert.equal(s?.protocol, 'tcp');
    assert.equal(s?.connections_total, 1);
    assert.equal(s?.connections_open, 0);
    assert.equal(s?.tunnels_by_kind.tcp, 0);
    assert.equal(s?.bytes_in, 18);
    assert.equal(s?.bytes_out, 18);
  });

  test('half-close: the client ends its side and still reads the whole answer', async (t) => {
    // Counts what it got until the client's FIN, then answers and ends.
    const backend = await rawBackend((s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`got ${n} bytes`));
      s.on('error', () => {});
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], tcp: {} });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    c.socket.end(Buffer.alloc(100_000, 1));
    assert.equal((await c.readToEnd()).toString(), 'got 100000 bytes');
  });

  test('half-close: the upstream ends first and still receives what the client sends after', async (t) => {
    let got = '';
    const done = Promise.withResolvers<string>();
    const backend = await rawBackend((s) => {
      s.end('bye\n'); // a server that speaks once and ends its side, but keeps reading
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('end', () => done.resolve(got));
      s.on('error', () => {});
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], tcp: {}, config: { access_log: { enabled: true } } });
    t.after(() => proxy.close());
    // A client that keeps writing after the peer's FIN (Node ends its side by default).
    const s = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
    t.after(() => s.destroy());
    const c = new SocketReader(s);
    assert.equal((await c.readUntil('\n')).toString(), 'bye\n');
    assert.equal(await c.waitEnded(), true, 'the client sees the upstream FIN');
    assert.equal(c.closed, false, 'the client side is still open for writing');
    c.socket.end('late words');
    assert.equal(await done.promise, 'late words');
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    assert.equal(proxy.accessLog[0]?.closed_by, 'upstream');
  });

  test('a reset on either side destroys the other', async (t) => {
    const upstreamSockets: net.Socket[] = [];
    const backend = await rawBackend((s) => {
      upstreamSockets.push(s);
      s.on('error', () => {});
    });
    t.after(() => backend.close());
    const proxy = await startProxy({ upstreams: [backend.addr], tcp: {} });
    t.after(() => proxy.close());

    const a = await connect(proxy.port, t);
    a.write('x');
    await waitUntil(() => upstreamSockets.length === 1, 'the upstream connection');
    const aReset = new Promise<string | undefined>((r) =>
      a.socket.once('error', (e: NodeJS.ErrnoException) => r(e.code)),
    );
    upstreamSockets[0]?.resetAndDestroy();
    assert.equal(await aReset, 'ECONNRESET', 'the upstream reset reaches the client as a reset');

    const b = await connect(proxy.port, t);
    b.write('y');
    await waitUntil(() => upstreamSockets.length === 2, 'the second upstream connection');
    const up = upstreamSockets[1];
    assert.ok(up);
    const upReset = new Promise<string | undefined>((r) => up.once('error', (e: NodeJS.ErrnoException) => r(e.code)));
    b.socket.resetAndDestroy();
    assert.equal(await upReset, 'ECONNRESET', 'the client reset reaches the upstream as a reset');
    await waitUntil(() => proxy.server.snapshot().listeners[0]?.connections_open === 0, 'no tunnel left');
  });

  test('a large transfer both ways with a slow reader arrives intact (backpressure)', async (t) => {
    const proxy = await startProxy({ upstreams: [echo.addr], tcp: {} });
    t.after(() => proxy.close());
    const payload = randomBytes(8 * 1024 * 1024);
    const s = net.connect(proxy.port, '127.0.0.1');
    t.after(() => s.destroy());
    const hash = createHash('sha256');
    let received = 0;
    s.pause();
    // Read slowly at first so the proxy has to hold back the echo side.
    const reading = new Promise<void>((resolve) => {
      setTimeout(() => {
        s.on('data', (c: Buffer) => {
          hash.update(c);
          received += c.length;
        });
        s.on('end', () => resolve());
        s.resume();
      }, 300);
    });
    s.end(payload);
    await reading;
    assert.equal(received, payload.length);
    assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'));
  });

  test('idle_timeout closes both sides of a quiet connection', async (t) => {
    const upstreamClosed = Promise.withResolvers<void>();
    const backend = await rawBackend((s) => {
      s.on('error', () => {});
      s.on('end', () => upstreamClosed.resolve()); // the proxy's FIN
      s.resume();
    });
    t.after(() => backend.close());
    // The pause between the two writes is far from IDLE_MS even on a loaded machine, and long enough
    // that a timer armed only at the first write would end the tunnel well before lastWrite + IDLE_MS.
    const IDLE_MS = 1000;
    const proxy = await startProxy({
      upstreams: [backend.addr],
      tcp: { idle_timeout: `${IDLE_MS}ms` },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    c.write('one byte now and then keeps it open');
    await new Promise((r) => setTimeout(r, 400));
    const lastWrite = performance.now();
    c.write('.');
    await waitUntil(() => c.closed, 'the idle connection is closed', { timeoutMs: IDLE_MS + 5000 });
    await upstreamClosed.promise;
    // The proxy saw the last byte after lastWrite, and closes no sooner than IDLE_MS after its last byte.
    const quiet = performance.now() - lastWrite;
    assert.ok(quiet >= IDLE_MS, `activity re-armed the idle timer: closed ${Math.round(quiet)} ms after the last byte`);
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    assert.equal(proxy.accessLog[0]?.error, 'idle_timeout');
  });

  test('a refused connect is retried on the next endpoint', async (t) => {
    const dead = await closedPort();
    const proxy = await startProxy({ upstreams: [`127.0.0.1:${dead}`, echo.addr], tcp: {} });
    t.after(() => proxy.close());
    for (let i = 0; i < 4; i++) {
      const c = await connect(proxy.port, t);
      c.write(`ping ${i}`);
      assert.equal((await c.readExactly(6)).toString(), `ping ${i}`);
      c.destroy();
    }
    const eps = proxy.server.snapshot().clusters[0]?.endpoints ?? [];
    assert.ok((eps.find((e) => e.key.endsWith(`:${dead}`))?.pool.connect_failures ?? 0) === 0);
  });

  test('a connect timeout is retried on the next endpoint', async (t) => {
    const hole = await blackhole();
    t.after(() => hole.close());
    if (!hole.hangs) {
      t.skip('this kernel answers connects to a full accept queue, so no connect can hang here');
      return;
    }
    const proxy = await startProxy({
      upstreams: [hole.addr, echo.addr],
      cluster: { pool: { connect_timeout: '200ms' } },
      tcp: {},
    });
    t.after(() => proxy.close());
    const results: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await connect(proxy.port, t);
      c.write('hi');
      results.push((await c.readExactly(2, 'the echo', 3000)).toString());
      c.destroy();
    }
    assert.deepEqual(results, ['hi', 'hi']);
  });

  test('when every endpoint fails, the client is closed without data and the error is counted', async (t) => {
    const dead1 = await closedPort();
    const dead2 = await closedPort();
    const proxy = await startProxy({
      upstreams: [`127.0.0.1:${dead1}`, `127.0.0.1:${dead2}`],
      tcp: {},
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    const data = await c.readToEnd();
    assert.equal(data.length, 0);
    await waitUntil(() => proxy.accessLog.length === 1, 'the access log line');
    assert.equal(proxy.accessLog[0]?.error, 'upstream_connect_failed');
    assert.equal(proxy.accessLog[0]?.detail, 'ECONNREFUSED');
    assert.equal(proxy.server.snapshot().listeners[0]?.error_codes.upstream_connect_failed, 1);
  });

  test('round robin spreads connections; ring_hash on source_ip pins a client address to one endpoint', async (t) => {
    const a = await echoBackend('a');
    const b = await echoBackend('b');
    t.after(() => a.close());
    t.after(() => b.close());
    const rr = await startProxy({ upstreams: [a.addr, b.addr], tcp: {} });
    t.after(() => rr.close());
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await connect(rr.port, t);
      names.push((await c.readUntil('\n')).toString().trim());
      c.destroy();
    }
    assert.deepEqual(names.sort(), ['a', 'a', 'a', 'b', 'b', 'b']);

    const rh = await startProxy({
      upstreams: [a.addr, b.addr],
      cluster: { lb: 'ring_hash', hash_key: { source_ip: true } },
      tcp: {},
    });
    t.after(() => rh.close());
    const byClient = new Map<string, Set<string>>();
    // 32 client addresses: the ring depends on the backends' (random) ports, and with 8 addresses all of
    // them landed on one endpoint now and then (2 × 2^-8 of runs); with 32 that is 2 × 2^-32.
    for (let i = 0; i < 64; i++) {
      const from = `127.0.0.${2 + (i % 32)}`;
      const c = await connectFrom(rh.port, from);
      const name = (await c.readUntil('\n')).toString().trim();
      c.destroy();
      const set = byClient.get(from) ?? new Set();
      set.add(name);
      byClient.set(from, set);
    }
    for (const [from, set] of byClient) assert.equal(set.size, 1, `${from} always lands on the same endpoint`);
    const used = new Set([...byClient.values()].flatMap((s) => [...s]));
    assert.equal(used.size, 2, '32 client addresses use both endpoints');
  });

  test('least_connections sends new connections to the endpoint with fewer open tunnels', async (t) => {
    const a = await echoBackend('a');
    const b = await echoBackend('b');
    t.after(() => a.close());
    t.after(() => b.close());
    const proxy = await startProxy({ upstreams: [a.addr, b.addr], cluster: { lb: 'least_connections' }, tcp: {} });
    t.after(() => proxy.close());
    // Hold 6 tunnels open: with two endpoints, each should carry about half.
    const open: SocketReader[] = [];
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await connect(proxy.port, t);
      open.push(c);
      names.push((await c.readUntil('\n')).toString().trim());
    }
    const countA = names.filter((n) => n === 'a').length;
    assert.ok(countA >= 2 && countA <= 4, `open tunnels are balanced: ${names.join('')}`);
    const eps = proxy.server.snapshot().clusters[0]?.endpoints ?? [];
    assert.deepEqual(eps.map((e) => e.active).sort(), [countA, 6 - countA].sort());
    for (const c of open) c.destroy();
  });

  test('max_connections holds connections beyond the limit unread, admits them in order, closes the overflow', async (t) => {
    const proxy = await startProxy({
      upstreams: [echo.addr],
      tcp: { max_connections: 2, accept_queue_size: 1, accept_queue_timeout: '30s' },
      config: { access_log: { enabled: true } },
    });
    t.after(() => proxy.close());
    const a = await connect(proxy.port, t);
    const b = await connect(proxy.port, t);
    a.write('a');
    b.write('b');
    await a.readExactly(1);
    await b.readExactly(1);
    // The third waits in the accept queue: what it sends is not read yet...
    const c = await connect(proxy.port, t);
    c.write('c');
    await waitUntil(() => proxy.server.snapshot().listeners[0]?.connections_held === 1, 'one connection held');
    // ...a fourth finds the queue full and is closed.
    const d = await connect(proxy.port, t);
    assert.equal((await d.readToEnd()).length, 0, 'the fourth connection is closed');
    // When one of the two closes, the held one is admitted and its bytes go through.
    a.socket.destroy();
    assert.equal((await c.readExactly(1)).toString(), 'c');
    const l = proxy.server.snapshot().listeners[0];
    assert.equal(l?.connections_held, 0);
    assert.equal(l?.connections_held_total, 1);
    assert.equal(l?.error_codes.too_many_connections, 1);
  });

  test('accept_queue_timeout closes a connection held too long; max_connections_per_client closes at once', async (t) => {
    const proxy = await startProxy({
      upstreams: [echo.addr],
      tcp: { max_connections: 1, accept_queue_timeout: '300ms', max_connections_per_client: 1 },
    });
    t.after(() => proxy.close());
    const a = await connect(proxy.port, t);
    a.write('a');
    await a.readExactly(1);
    // From another address: not over its own limit, so it waits for the listener's, and times out.
    const other = new SocketReader(
      await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ port: proxy.port, host: '127.0.0.1', localAddress: '127.0.0.9' });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
    );
    t.after(() => other.socket.destroy());
    assert.equal((await other.readToEnd()).length, 0, 'closed after the queue timeout');
    // From the same address as the open one: over max_connections_per_client, closed at once.
    const again = await connect(proxy.port, t);
    assert.equal((await again.readToEnd()).length, 0, 'closed at once');
    const codes = proxy.server.snapshot().listeners[0]?.error_codes ?? {};
    assert.equal(codes.too_many_connections, 1);
    assert.equal(codes.too_many_connections_per_client, 1);
  });
});

describe('source addresses (on loopback: 127.0.0.0/8 is all local)', () => {
  let echo: EchoBackend;
  before(async () => {
    echo = await echoBackend();
  });
  after(() => echo.close());

  test('tunnels leave from the source addresses, on ports from source_port_range, counted in the budget', async (t) => {
    echo.peers.length = 0;
    const proxy = await startProxy({
      upstreams: [echo.addr],
      cluster: { source_addresses: ['127.0.0.2', '127.0.0.3'], source_port_range: '21100-21149' },
      tcp: {},
    });
    t.after(() => proxy.close());
    const open: SocketReader[] = [];
    for (let i = 0; i < 10; i++) {
      const c = await connect(proxy.port, t);
      c.write('x');
      await c.readExactly(1);
      open.push(c);
    }
    const sources = new Map<string, number>();
    for (const { address, port } of echo.peers) {
      assert.ok(port >= 21100 && port <= 21149, `port ${port} in range`);
      sources.set(address, (sources.get(address) ?? 0) + 1);
    }
    // The source with the most free ports goes first: the two alternate.
    assert.deepEqual(Object.fromEntries(sources), { '127.0.0.2': 5, '127.0.0.3': 5 });
    const budgets = proxy.server.snapshot().ports.budgets;
    assert.deepEqual(budgets.map((b) => [b.source, b.destination, b.range, b.size, b.in_use, b.free]).sort(), [
      ['127.0.0.2', echo.addr, '21100-21149', 50, 5, 45],
      ['127.0.0.3', echo.addr, '21100-21149', 50, 5, 45],
    ]);
    for (const c of open) c.destroy();
    await waitUntil(
      () => proxy.server.snapshot().ports.budgets.every((b) => b.in_use === 0),
      'closed tunnels give their ports back',
    );
  });

  test('an exhausted budget closes new clients, logs once with the figures, and recovers when ports free up', async (t) => {
    // The upstream closes first (it keeps the TIME_WAIT), so a port is free again the moment a tunnel ends.
    const ups: net.Socket[] = [];
    const backend = await rawBackend((s) => {
      ups.push(s);
      s.on('error', () => {});
      s.pipe(s);
    });
    t.after(() => backend.close());
    const proxy = await startProxy({
      upstreams: [backend.addr],
      cluster: { source_addresses: ['127.0.0.4'], source_port_range: '21200-21204' },
      tcp: {},
    });
    t.after(() => proxy.close());
    const open: SocketReader[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await connect(proxy.port, t);
      c.write('x');
      await c.readExactly(1);
      open.push(c);
    }
    for (let i = 0; i < 3; i++) {
      const c = await connect(proxy.port, t);
      assert.equal((await c.readToEnd()).length, 0, 'a client beyond the budget is closed');
    }
    const logs = proxy.eventLog.filter((l) => l.msg === 'upstream ports exhausted');
    assert.equal(logs.length, 1, 'logged once per interval, not once per attempt');
    const figures = ((logs[0]?.sources ?? []) as Record<string, unknown>[])[0];
    assert.deepEqual(figures, {
      source: '127.0.0.4',
      destination: backend.addr,
      range: '21200-21204',
      size: 5,
      in_use: 5,
      cooling: 0,
      free: 0,
      warn_ratio: 0.8,
    });
    assert.ok(
      proxy.eventLog.some((l) => l.msg === 'source port budget running low'),
      'the warn ratio (0.8) was crossed',
    );
    assert.equal(proxy.server.snapshot().listeners[0]?.error_codes.upstream_ports_exhausted, 3);
    assert.equal(proxy.server.snapshot().clusters[0]?.endpoints[0]?.healthy, true, 'exhaustion is not ill health');

    ups[0]?.end(); // the upstream closes one tunnel first
    await waitUntil(() => open[0]?.closed === true || open[0]?.ended === true, 'the first tunnel ends');
    open[0]?.socket.end();
    await waitUntil(() => proxy.server.snapshot().ports.budgets[0]?.in_use === 4, 'its port is free');
    const again = await connect(proxy.port, t);
    again.write('back');
    assert.equal((await again.readExactly(4)).toString(), 'back', 'service resumes once a port is free');
  });

  test('a port the kernel refuses (EADDRINUSE) cools, another is used, and it comes back after port_cooling', async (t) => {
    // Something else listens on 127.0.0.5:21300, the first port muxgate would pick.
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(21300, '127.0.0.5', r));
    const proxy = await startProxy({
      upstreams: [echo.addr],
      cluster: { source_addresses: ['127.0.0.5'], source_port_range: '21300-21302', port_cooling: '300ms' },
      tcp: {},
    });
    t.after(() => proxy.close());
    const c = await connect(proxy.port, t);
    c.write('x');
    assert.equal((await c.readExactly(1)).toString(), 'x');
    let b = proxy.server.snapshot().ports.budgets[0];
    assert.deepEqual([b?.in_use, b?.cooling, b?.free], [1, 1, 1], 'the refused port cools; the next one serves');
    assert.equal(echo.peers.at(-1)?.port, 21301, 'left from the next port');
    await new Promise<void>((r) => blocker.close(() => r()));
    await new Promise((r) => setTimeout(r, 350));
    b = proxy.server.snapshot().ports.budgets[0];
    assert.deepEqual([b?.in_use, b?.cooling, b?.free], [1, 0, 2], 'after port_cooling the port is free again');
    c.destroy();
  });
});

describe('one-line form', () => {
  test('muxgate proxy --mode tcp --source pipes through the source address', async (t) => {
    const backend = await echoBackend();
    t.after(() => backend.close());
    const m = startMuxgate([
      'proxy',
      '--mode',
      'tcp',
      '--listen',
      '127.0.0.1:0',
      '--to',
      backend.addr,
      '--source',
      '127.0.0.6,127.0.0.7',
    ]);
    t.after(() => m.stop());
    const port = portOf(await m.waitFor((l) => l.msg === 'listening'));
    // Four at once: the source with the most free ports goes first, so the two alternate.
    for (let i = 0; i < 4; i++) {
      const c = await connect(port, t);
      c.write(`line ${i}`);
      assert.equal((await c.readExactly(6)).toString(), `line ${i}`);
    }
    assert.deepEqual(backend.peers.map((p) => p.address).sort(), ['127.0.0.6', '127.0.0.6', '127.0.0.7', '127.0.0.7']);
  });

  test('--workers 2: each worker hands out its own half of the port range; /stats sums the budget', async (t) => {
    const backend = await echoBackend();
    t.after(() => backend.close());
    const peers = () => backend.peers.map((p) => p.port);
    const m = startMuxgate([
      'proxy',
      '--mode',
      'tcp',
      '--listen',
      '127.0.0.1:0',
      '--to',
      backend.addr,
      '--source',
      '127.0.0.9',
      '--workers',
      '2',
      '--admin',
      '127.0.0.1:0',
      '--no-access-log',
    ]);
    t.after(() => m.stop());
    await m.waitFor((l) => l.msg === 'all workers listening');
    const port = portOf(m.lines.find((l) => l.msg === 'listening') ?? {});
    const adminPort = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
    const open: SocketReader[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await connect(port, t);
      c.write('.');
      await c.readExactly(1);
      open.push(c);
    }
    const stats = (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as {
      ports: { budgets: { source: string; range: string; size: number; in_use: number }[] };
    };
    const kernel = ephemeralPortRange() ?? DEFAULT_EPHEMERAL_RANGE;
    const budgets = stats.ports.budgets.filter((b) => b.source === '127.0.0.9');
    assert.equal(budgets.length, 1, 'the workers report one budget for (source, destination)');
    assert.equal(budgets[0]?.in_use, 20);
    assert.equal(budgets[0]?.size, kernel.last - kernel.first + 1, 'the two halves add up to the whole range');
    assert.equal(budgets[0]?.range, `${kernel.first}-${kernel.last}`);
    assert.equal(new Set(peers()).size, 20, 'no port handed out twice');
    const w0 = sliceOf(kernel, 0, 2);
    const w1 = sliceOf(kernel, 1, 2);
    for (const p of peers()) assert.ok((p >= w0.first && p <= w0.last) || (p >= w1.first && p <= w1.last));
    for (const c of open) c.destroy();
  });
});
