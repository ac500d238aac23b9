/**
 * Header handling through the proxy: hop-by-hop fields (RFC 9110 §7.6.1) stripped both ways,
 * X-Forwarded-* / Forwarded (RFC 7239) / Via (RFC 9110 §7.6.3) with and without trusted peers, route
 * rewrites, and fields passed through byte for byte. Upstreams are scripted raw sockets so the exact
 * head the proxy sent is visible.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { startProxy, type ProxyOptions } from '../helpers/proxy.ts';
import {
  connect,
  field,
  fieldAll,
  fieldNames,
  rawHttpBackend,
  type SocketReader,
  type WireRequest,
} from '../helpers/wire.ts';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade'];

/** A raw upstream that records every request and answers `response` (default: 200 "ok"). */
async function recordingUpstream(t: TestContext, response?: (req: WireRequest, r: SocketReader) => void) {
  const requests: WireRequest[] = [];
  const b = await rawHttpBackend((req, r) => {
    requests.push(req);
    if (response) response(req, r);
    else r.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  t.after(() => b.close());
  return { backend: b, requests };
}

async function proxyTo(t: TestContext, addr: string, o: Omit<ProxyOptions, 'upstreams'> = {}) {
  const proxy = await startProxy({ upstreams: [addr], ...o });
  t.after(() => proxy.close());
  return proxy;
}

/** Whether this host can listen on ::1 (some containers have no IPv6 loopback). */
function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

/** Sends one request on a fresh connection and returns the response. */
async function exchange(t: TestContext, port: number, request: string, method?: string) {
  const c = await connect(port, t);
  c.write(request);
  return c.readResponse({ method });
}

describe('hop-by-hop fields', () => {
  it('strips them from requests, with every field the Connection header names', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr);
    const r = await exchange(
      t,
      proxy.port,
      'POST /h HTTP/1.1\r\nHost: app\r\n' +
        'Connection: keep-alive, X-Secret\r\nConnection: X-Other-Secret\r\n' +
        'Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n' +
        'X-Secret: s1\r\nx-other-secret: s2\r\nX-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '3\r\nabc\r\n0\r\n\r\n',
    );
    assert.equal(r.status, 200);
    const req = up.requests[0]!;
    const names = fieldNames(req);
    for (const h of [...HOP_BY_HOP, 'x-secret', 'x-other-secret']) assert.ok(!names.includes(h), `${h} was forwarded`);
    assert.equal(field(req, 'x-kept'), 'yes');
    assert.deepEqual(fieldAll(req, 'transfer-encoding'), ['chunked'], 'framing restated exactly once');
    assert.equal(field(req, 'content-length'), undefined);
    assert.equal(req.body.toString(), 'abc');
  });

  it('restates Content-Length once however the client repeated it', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr);
    const r = await exchange(
      t,
      proxy.port,
      'POST /h HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc',
    );
    assert.equal(r.status, 200);
    assert.deepEqual(fieldAll(up.requests[0]!, 'content-length'), ['3']);
    assert.equal(up.requests[0]!.body.toString(), 'abc');
  });

  it('strips them from responses, with every field the Connection header names', async (t) => {
    const up = await recordingUpstream(t, (req, r) => {
      if (req.target === '/second') return void r.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
      r.write(
        'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Resp-Secret\r\nKeep-Alive: timeout=5, max=100\r\n' +
          'Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Resp-Secret: s\r\nX-Kept: yes\r\n' +
          'Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n',
      );
    });
    const proxy = await proxyTo(t, up.backend.addr);
    const c = await connect(proxy.port, t);
    c.write('GET /first HTTP/1.1\r\nHost: app\r\n\r\n');
    const r = await c.readResponse();
    const names = fieldNames(r);
    for (const h of [...HOP_BY_HOP, 'x-resp-secret']) assert.ok(!names.includes(h), `${h} was relayed`);
    assert.equal(field(r, 'x-kept'), 'yes');
    assert.deepEqual(fieldAll(r, 'transfer-encoding'), ['chunked']);
    assert.equal(r.body.toString(), 'body');
    c.write('GET /second HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal((await c.readResponse()).body.toString(), 'second');
    assert.equal(up.backend.accepted, 1, 'upstream keep-alive honoured');
  });
});

describe('forwarding headers', () => {
  const forged =
    'GET /f HTTP/1.1\r\nHost: app.example:8080\r\n' +
    'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n' +
    'X-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6;proto=https\r\nVia: 1.1 evil-proxy\r\n\r\n';

  function forwardingFields(req: WireRequest) {
    return {
      xff: fieldAll(req, 'x-forwarded-for'),
      xfp: fieldAll(req, 'x-forwarded-proto'),
      xfh: fieldAll(req, 'x-forwarded-host'),
      forwarded: fieldAll(req, 'forwarded'),
      via: fieldAll(req, 'via'),
    };
  }

  const ours = 'for=127.0.0.1;host="app.example:8080";proto=http';

  it('replaces forged values from an untrusted client (Via is a trace: appended to)', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr);
    await exchange(t, proxy.port, forged);
    assert.deepEqual(forwardingFields(up.requests[0]!), {
      xff: ['127.0.0.1'],
      xfp: ['http'],
      xfh: ['app.example:8080'],
      forwarded: [ours],
      via: ['1.1 evil-proxy, 1.1 muxgate'],
    });
  });

  it('adds them to a request that carries none', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr);
    await exchange(t, proxy.port, 'GET / HTTP/1.1\r\nHost: plain\r\n\r\n');
    assert.deepEqual(forwardingFields(up.requests[0]!), {
      xff: ['127.0.0.1'],
      xfp: ['http'],
      xfh: ['plain'],
      forwarded: ['for=127.0.0.1;host=plain;proto=http'],
      via: ['1.1 muxgate'],
    });
  });

  const trustedExpected = {
    xff: ['6.6.6.6, 7.7.7.7, 127.0.0.1'],
    xfp: ['https'],
    xfh: ['evil.example'],
    forwarded: [`for=6.6.6.6;proto=https, ${ours}`],
    via: ['1.1 evil-proxy, 1.1 muxgate'],
  };

  it('keeps the values of a trusted peer (listener trusted_proxies) and appends ours', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr, { listener: { trusted_proxies: ['127.0.0.1/32'] } });
    await exchange(t, proxy.port, forged);
    assert.deepEqual(forwardingFields(up.requests[0]!), trustedExpected);
  });

  it('keeps the values of a trusted peer (top-level trusted_proxies) and appends ours', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr, { config: { trusted_proxies: ['127.0.0.1/32'] } });
    await exchange(t, proxy.port, forged);
    assert.deepEqual(forwardingFields(up.requests[0]!), trustedExpected);
  });

  it('does not trust a peer outside the ranges, and a listener list overrides the top-level one', async (t) => {
    const up = await recordingUpstream(t);
    const other = await proxyTo(t, up.backend.addr, { config: { trusted_proxies: ['10.0.0.0/8', '::1'] } });
    await exchange(t, other.port, forged);
    const overridden = await proxyTo(t, up.backend.addr, {
      config: { trusted_proxies: ['127.0.0.1/32'] },
      listener: { trusted_proxies: [] },
    });
    await exchange(t, overridden.port, forged);
    assert.equal(up.requests.length, 2);
    for (const req of up.requests) {
      assert.deepEqual(forwardingFields(req), {
        xff: ['127.0.0.1'],
        xfp: ['http'],
        xfh: ['app.example:8080'],
        forwarded: [ours],
        via: ['1.1 evil-proxy, 1.1 muxgate'],
      });
    }
  });

  it('brackets and quotes an IPv6 client address in Forwarded (RFC 7239 §6)', async (t) => {
    if (!(await ipv6Loopback())) {
      t.skip('no IPv6 loopback on this host');
      return;
    }
    const up = await recordingUpstream(t);
    for (const trusted of [[], ['::1/128']]) {
      const proxy = await proxyTo(t, up.backend.addr, { listener: { address: '[::1]:0', trusted_proxies: trusted } });
      const c = await connect(proxy.port, t, '::1');
      c.write('GET / HTTP/1.1\r\nHost: [::1]\r\nX-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.1\r\n\r\n');
      assert.equal((await c.readResponse()).status, 200);
    }
    assert.deepEqual(
      up.requests.map((r) => [field(r, 'x-forwarded-for'), field(r, 'forwarded')]),
      [
        ['::1', 'for="[::1]";host="[::1]";proto=http'],
        ['192.0.2.1, ::1', 'for=192.0.2.1, for="[::1]";host="[::1]";proto=http'],
      ],
    );
  });

  it('appends Via to responses with the protocol version each message arrived in', async (t) => {
    const up = await recordingUpstream(t, (req, r) => {
      if (req.target === '/cached') r.write('HTTP/1.1 200 OK\r\nVia: 1.0 origin-cache\r\nContent-Length: 1\r\n\r\nc');
      else if (req.target === '/old') r.write('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\no');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\np');
    });
    const proxy = await proxyTo(t, up.backend.addr);
    const plain = await exchange(t, proxy.port, 'GET /plain HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(plain, 'via'), ['1.1 muxgate']);
    const cached = await exchange(t, proxy.port, 'GET /cached HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(cached, 'via'), ['1.0 origin-cache, 1.1 muxgate']);
    const old = await exchange(t, proxy.port, 'GET /old HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(old, 'via'), ['1.0 muxgate'], 'the upstream answered in HTTP/1.0');
    // An HTTP/1.0 request is recorded as such in the Via sent upstream.
    await exchange(t, proxy.port, 'GET /plain HTTP/1.0\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(up.requests.at(-1)!, 'via'), ['1.0 muxgate']);
  });

  it('uses the configured Via pseudonym', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr, { config: { via: 'edge-7' } });
    const r = await exchange(t, proxy.port, 'GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(r, 'via'), ['1.1 edge-7']);
    assert.deepEqual(fieldAll(up.requests[0]!, 'via'), ['1.1 edge-7']);
  });

  it('via: false adds no Via either way, and leaves existing ones alone', async (t) => {
    const up = await recordingUpstream(t, (req, r) => {
      if (req.target === '/cached') r.write('HTTP/1.1 200 OK\r\nVia: 1.0 origin-cache\r\nContent-Length: 1\r\n\r\nc');
      else r.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\np');
    });
    const proxy = await proxyTo(t, up.backend.addr, { config: { via: false } });
    const plain = await exchange(t, proxy.port, 'GET /plain HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(plain, 'via'), []);
    assert.deepEqual(fieldAll(up.requests[0]!, 'via'), []);
    const cached = await exchange(t, proxy.port, 'GET /cached HTTP/1.1\r\nHost: app\r\nVia: 1.1 client-side\r\n\r\n');
    assert.deepEqual(fieldAll(cached, 'via'), ['1.0 origin-cache']);
    assert.deepEqual(fieldAll(up.requests[1]!, 'via'), ['1.1 client-side']);
    // The X-Forwarded-* / Forwarded fields are still added.
    assert.equal(field(up.requests[0]!, 'x-forwarded-for'), '127.0.0.1');
  });
});

describe('route rewrites', () => {
  it('host_rewrite replaces Host, prefix_rewrite replaces the matched prefix, the query string is kept', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await startProxy({
      upstreams: [up.backend.addr],
      routes: [
        {
          match: { path: { prefix: '/api/' } },
          cluster: 'up',
          host_rewrite: 'internal.svc:8080',
          prefix_rewrite: '/v2/',
        },
        { match: { path: { prefix: '/strip' } }, cluster: 'up', prefix_rewrite: '' },
        { cluster: 'up' },
      ],
    });
    t.after(() => proxy.close());
    const send = (target: string) => exchange(t, proxy.port, `GET ${target} HTTP/1.1\r\nHost: public.example\r\n\r\n`);

    await send('/api/users/7?id=1&q=a%20b&next=/api/x');
    await send('/strip/deep/path?y=1');
    await send('/strip?y=2');
    await send('/untouched/api/?z=3');
    const seen = up.requests.map((r) => ({
      target: r.target,
      host: fieldAll(r, 'host'),
      xfh: field(r, 'x-forwarded-host'),
    }));
    assert.deepEqual(seen, [
      { target: '/v2/users/7?id=1&q=a%20b&next=/api/x', host: ['internal.svc:8080'], xfh: 'public.example' },
      { target: '/deep/path?y=1', host: ['public.example'], xfh: 'public.example' },
      { target: '/?y=2', host: ['public.example'], xfh: 'public.example' },
      { target: '/untouched/api/?z=3', host: ['public.example'], xfh: 'public.example' },
    ]);
  });
});

describe('fields passed through unchanged', () => {
  // Legal but unusual: every tchar in a name, mixed case, obs-text (bytes 0x80-0xff), HTAB and runs
  // of spaces inside values, quotes, commas, colons, an empty value, and OWS around a value.
  const lines = [
    "X-Tchar!#$%&'*+-.^_`|~09AZaz: v1",
    'X-MiXeD-CaSe: Value  With \t Inner\tWhitespace',
    'X-Obs-Text: caf\xe9 \xff\x80\xa0end',
    'X-Quote: "quoted, with comma"; a=b, c="d\\"e"',
    'X-Colon: a:b::c http://x/y?z',
    'X-Multi: one',
    'X-Multi: two',
  ];

  function assertLines(head: string) {
    for (const l of lines)
      assert.ok(head.includes(`\r\n${l}\r\n`), `missing ${JSON.stringify(l)} in ${JSON.stringify(head)}`);
    assert.ok(head.indexOf('X-Multi: one') < head.indexOf('X-Multi: two'), 'repeated fields keep their order');
  }

  it('in requests', async (t) => {
    const up = await recordingUpstream(t);
    const proxy = await proxyTo(t, up.backend.addr);
    const r = await exchange(
      t,
      proxy.port,
      `GET / HTTP/1.1\r\nHost: app\r\n${lines.join('\r\n')}\r\nX-Empty:\r\nX-Padded: \t padded \t \r\n\r\n`,
    );
    assert.equal(r.status, 200);
    const req = up.requests[0]!;
    assertLines(req.head);
    assert.equal(field(req, 'x-empty'), '');
    assert.equal(field(req, 'x-padded'), 'padded');
  });

  it('in responses, with the reason phrase', async (t) => {
    const up = await recordingUpstream(t, (_req, r) => {
      r.write(`HTTP/1.1 299 Odd But Fine \xe9\r\n${lines.join('\r\n')}\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n`);
    });
    const proxy = await proxyTo(t, up.backend.addr);
    const r = await exchange(t, proxy.port, 'GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.equal(r.startLine, 'HTTP/1.1 299 Odd But Fine \xe9');
    assertLines(r.head);
    assert.equal(field(r, 'x-empty'), '');
  });

  it('keeps multiple Set-Cookie response fields as separate lines', async (t) => {
    const cookies = ['a=1; Path=/', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly', 'c=3; SameSite=Lax'];
    const up = await httpBackend((_req, res) => {
      res.setHeader('set-cookie', cookies);
      res.end('ok');
    });
    t.after(() => up.close());
    const proxy = await proxyTo(t, up.addr);
    const raw = await exchange(t, proxy.port, 'GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    assert.deepEqual(fieldAll(raw, 'set-cookie'), cookies);
    const res = await fetch(`${proxy.url}/`);
    assert.deepEqual(res.headers.getSetCookie(), cookies);
    await res.text();
  });
});
