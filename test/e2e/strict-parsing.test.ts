/**
 * Request smuggling and strict parsing, end to end: exact bytes go to a running proxy, and every
 * malformed or ambiguous request must be answered by the proxy itself (status + `muxgate-error`),
 * end the downstream connection, and never reach the upstream.
 *
 * "Never reached the upstream" is checked precisely: after each rejected exchange, a valid control
 * request goes through the same proxy and is answered by the upstream; the upstream must then have
 * accepted exactly one connection carrying exactly that one request head, and nothing else.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import type net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts';
import { type Backend, httpBackend, rawBackend } from '../helpers/backend.ts';
import { type RawPart, rawExchange, statuses } from '../helpers/client.ts';
import { type ProxyOptions, startProxy, type TestProxy } from '../helpers/proxy.ts';

/** Exact bytes: strings in this file are byte strings (latin1), never UTF-8 encoded. */
const bin = (s: string) => Buffer.from(s, 'latin1');

const CONTROL = 'GET /control HTTP/1.1\r\nHost: control.test\r\nConnection: close\r\n\r\n';

/** Polls `cond` every 5 ms; rejects after `timeoutMs` naming what was awaited. */
async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface UpstreamConn {
  socket: net.Socket;
  bytes: Buffer[];
  /** The proxy ended or reset this connection. */
  closedByProxy: boolean;
  text(): string;
}

interface RecordingBackend extends Backend<net.Server> {
  conns: UpstreamConn[];
  /** Everything every connection received, in accept order. */
  text(): string;
}

/**
 * A raw upstream that records every byte per connection. It answers each bodiless request head with
 * a 200 and never answers a request announcing a body, so a request body can only end at the proxy.
 */
async function recordingBackend(): Promise<RecordingBackend> {
  const conns: UpstreamConn[] = [];
  const b = await rawBackend((socket) => {
    const c: UpstreamConn = {
      socket,
      bytes: [],
      closedByProxy: false,
      text: () => Buffer.concat(c.bytes).toString('latin1'),
    };
    conns.push(c);
    let pending = '';
    let inBody = false; // after a head announcing a body, nothing more is parsed on this connection
    socket.on('data', (d: Buffer) => {
      c.bytes.push(d);
      if (inBody) return;
      pending += d.toString('latin1');
      for (let i = pending.indexOf('\r\n\r\n'); i !== -1; i = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, i + 4);
        pending = pending.slice(i + 4);
        if (/\r\n(content-length|transfer-encoding):/i.test(head)) {
          inBody = true;
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
    const closed = () => {
      c.closedByProxy = true;
      socket.destroy();
    };
    socket.on('end', closed);
    socket.on('error', closed);
  });
  return Object.assign(b, { conns, text: () => conns.map((c) => c.text()).join('') });
}

interface Rig {
  proxy: TestProxy;
  up: RecordingBackend;
}

/** A fresh upstream and proxy for one test, both closed when the test ends. */
async function rig(t: TestContext, listener: ProxyOptions['listener'] = {}): Promise<Rig> {
  const up = await recordingBackend();
  let proxy: TestProxy;
  try {
    proxy = await startProxy({ upstreams: [up.addr], listener });
  } catch (err) {
    await up.close();
    throw err;
  }
  t.after(async () => {
    await proxy.close();
    await up.close();
  });
  return { proxy, up };
}

function header(text: string, name: string): string | undefined {
  const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
  const m = new RegExp(`\r\n${name}: *([^\r]*)\r\n`, 'i').exec(head);
  return m?.[1];
}

/** The response is exactly one proxy error with this status and code, and the proxy closed the connection. */
function assertProxyError(res: { text: string; closed: boolean }, status: number, code: ErrorCode): void {
  assert.equal(ERRORS[code].status, status, `the error table maps ${code} to ${status}`);
  assert.deepEqual(statuses(res.text), [status], `exactly one response, ${status}; got ${JSON.stringify(res.text)}`);
  assert.equal(header(res.text, 'muxgate-error'), code);
  assert.equal(header(res.text, 'connection'), 'close');
  assert.equal(res.closed, true, 'the proxy closed the connection');
}

/**
 * Sends a valid request through the proxy and waits for the upstream's answer, then checks that the
 * upstream saw exactly that request and nothing else: no connection, byte or request from before.
 */
async function assertUpstreamSawOnlyControl(r: Rig): Promise<void> {
  const res = await rawExchange(r.proxy.port, bin(CONTROL));
  assert.deepEqual(statuses(res.text), [200], `the control request is answered by the upstream: ${res.text}`);
  assert.equal(r.up.accepted, 1, 'the upstream accepted only the control connection');
  const seen = r.up.text();
  assert.ok(seen.startsWith('GET /control HTTP/1.1\r\n'), `the upstream's first bytes are the control: ${seen}`);
  assert.equal(seen.indexOf('\r\n\r\n'), seen.length - 4, `the upstream received one head and nothing else: ${seen}`);
}

async function expectRejected(
  t: TestContext,
  send: string | RawPart[],
  status: number,
  code: ErrorCode,
  listener: ProxyOptions['listener'] = {},
): Promise<void> {
  const r = await rig(t, listener);
  const res = await rawExchange(r.proxy.port, typeof send === 'string' ? bin(send) : send);
  assertProxyError(res, status, code);
  await waitFor(
    () => r.proxy.accessLog.some((l) => l.error === code && l.status === status),
    `the access log records ${code}`,
  );
  await assertUpstreamSawOnlyControl(r);
}

interface Case {
  name: string;
  send: string;
  status: number;
  code: ErrorCode;
  listener?: ProxyOptions['listener'];
}

const H = 'Host: a.test\r\n';
const HIDDEN = 'GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n';
const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-F${i}: v\r\n`).join('');

const CASES: Record<string, Case[]> = {
  'message framing (Content-Length / Transfer-Encoding)': [
    {
      name: 'Content-Length followed by Transfer-Encoding: chunked',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      code: 'ambiguous_framing',
    },
    {
      name: 'Transfer-Encoding: chunked followed by Content-Length',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
      status: 400,
      code: 'ambiguous_framing',
    },
    {
      name: 'two Content-Length lines with different values',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
      status: 400,
      code: 'conflicting_content_length',
    },
    {
      name: 'a Content-Length list with different values ("5, 6")',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`,
      status: 400,
      code: 'conflicting_content_length',
    },
    {
      name: 'a non-numeric Content-Length',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: five\r\n\r\nhello`,
      status: 400,
      code: 'invalid_content_length',
    },
    {
      name: 'a negative Content-Length',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`,
      status: 400,
      code: 'invalid_content_length',
    },
    {
      name: 'a Content-Length too large to represent exactly (20 digits)',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: 18446744073709551621\r\n\r\nhello`,
      status: 400,
      code: 'invalid_content_length',
    },
    {
      name: 'Transfer-Encoding "gzip, chunked"',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
      status: 501,
      code: 'unsupported_transfer_encoding',
    },
    {
      name: 'Transfer-Encoding "chunked, identity"',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
      status: 501,
      code: 'unsupported_transfer_encoding',
    },
    {
      name: 'Transfer-Encoding "xchunked"',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
      status: 501,
      code: 'unsupported_transfer_encoding',
    },
    {
      name: 'Transfer-Encoding: chunked on two lines',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 501,
      code: 'unsupported_transfer_encoding',
    },
    {
      name: 'Transfer-Encoding in an HTTP/1.0 request',
      send: 'POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      status: 400,
      code: 'transfer_encoding_http10',
    },
  ],
  'field syntax': [
    {
      name: 'obs-fold: a header line starting with SP',
      send: `GET / HTTP/1.1\r\n${H}X-Long: part one\r\n part two\r\n\r\n`,
      status: 400,
      code: 'obs_fold',
    },
    {
      name: 'obs-fold: a header line starting with HTAB',
      send: `GET / HTTP/1.1\r\n${H}X-Long: part one\r\n\tpart two\r\n\r\n`,
      status: 400,
      code: 'obs_fold',
    },
    {
      name: 'whitespace between a header name and the colon',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'HTAB between a header name and the colon',
      send: `GET / HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a NUL in a header name',
      send: `GET / HTTP/1.1\r\n${H}X-\x00A: b\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a DEL in a header name',
      send: `GET / HTTP/1.1\r\n${H}X-A\x7f: b\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a NUL in a header value',
      send: `GET / HTTP/1.1\r\n${H}X-A: b\x00c\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a bare CR in a header value',
      send: `GET / HTTP/1.1\r\n${H}X-A: b\rX-Injected: c\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a DEL in a header value',
      send: `GET / HTTP/1.1\r\n${H}X-A: b\x7fc\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
    {
      name: 'a vertical tab before a Transfer-Encoding value',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\x0bchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`,
      status: 400,
      code: 'invalid_header',
    },
  ],
  'request line': [
    {
      name: 'a space inside the request target',
      send: `GET /a b HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a control character in the request target',
      send: `GET /a\x01b HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a raw non-ASCII byte in the request target',
      send: `GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a lower-case HTTP version',
      send: `GET / http/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a malformed HTTP version',
      send: `GET / HTTP/1.x\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a request line without a version',
      send: `GET /\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a double space between method and target',
      send: `GET  / HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
    {
      name: 'a double space between target and version',
      send: `GET /  HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_request_line',
    },
  ],
  'line endings': [
    {
      name: 'a bare LF ending the request line',
      send: `GET / HTTP/1.1\n${H}\r\n`,
      status: 400,
      code: 'bare_lf',
    },
    {
      name: 'a bare LF ending a header line',
      send: 'GET / HTTP/1.1\r\nHost: a.test\nX-A: b\r\n\r\n',
      status: 400,
      code: 'bare_lf',
    },
    {
      name: 'a head with LF-only line endings throughout',
      send: 'GET / HTTP/1.1\nHost: a.test\n\n',
      status: 400,
      code: 'bare_lf',
    },
    {
      name: 'a bare LF, answered before the rest of the head arrives',
      send: 'GET / HTTP/1.1\nHost: a.te',
      status: 400,
      code: 'bare_lf',
    },
  ],
  Host: [
    {
      name: 'an HTTP/1.1 request without Host',
      send: 'GET / HTTP/1.1\r\nX-A: b\r\n\r\n',
      status: 400,
      code: 'missing_host',
    },
    {
      name: 'two Host headers',
      send: 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n',
      status: 400,
      code: 'multiple_host',
    },
    {
      name: 'a Host with a character outside reg-name/IP-literal/port (space)',
      send: 'GET / HTTP/1.1\r\nHost: a.test b.test\r\n\r\n',
      status: 400,
      code: 'invalid_host',
    },
    {
      name: 'a Host with userinfo and a path (a@b/c)',
      send: 'GET / HTTP/1.1\r\nHost: user@a.test/evil\r\n\r\n',
      status: 400,
      code: 'invalid_host',
    },
  ],
  limits: [
    {
      name: 'a header section larger than max_header_bytes (1KiB)',
      send: `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(1100)}\r\n\r\n`,
      status: 431,
      code: 'header_too_large',
      listener: { max_header_bytes: '1KiB' },
    },
    {
      name: 'an unterminated header section growing past max_header_bytes (1KiB)',
      send: `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(1100)}`,
      status: 431,
      code: 'header_too_large',
      listener: { max_header_bytes: '1KiB' },
    },
    {
      name: 'more header fields than max_headers (10)',
      send: `GET / HTTP/1.1\r\n${H}${fields(10)}\r\n`,
      status: 431,
      code: 'too_many_headers',
      listener: { max_headers: 10 },
    },
    {
      name: 'more header fields than the default max_headers (100)',
      send: `GET / HTTP/1.1\r\n${H}${fields(100)}\r\n`,
      status: 431,
      code: 'too_many_headers',
    },
  ],
  'version, expectation and method': [
    {
      name: 'HTTP/2.0 on the request line',
      send: `GET / HTTP/2.0\r\n${H}\r\n`,
      status: 505,
      code: 'unsupported_version',
    },
    {
      name: 'an Expect other than 100-continue',
      send: `POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi`,
      status: 417,
      code: 'expectation_failed',
    },
    {
      name: 'CONNECT (authority-form)',
      send: 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n',
      status: 405,
      code: 'method_not_allowed',
    },
    {
      name: 'CONNECT with an origin-form target',
      send: `CONNECT / HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      code: 'invalid_connect',
    },
  ],
  'classic smuggling attempts (a second request hidden in the body)': [
    {
      name: 'CL.TE: Content-Length covers the hidden request, chunked framing ends before it',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: ${5 + HIDDEN.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
      status: 400,
      code: 'ambiguous_framing',
    },
    {
      name: 'TE.CL: the chunk carries the hidden request, Content-Length stops before it',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${HIDDEN.length.toString(16)}\r\n${HIDDEN}\r\n0\r\n\r\n`,
      status: 400,
      code: 'ambiguous_framing',
    },
    {
      name: 'TE.TE: a second, obfuscated Transfer-Encoding line next to Content-Length',
      send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-encoding: cow\r\nContent-Length: 4\r\n\r\n5c\r\n${HIDDEN}0\r\n\r\n`,
      status: 501,
      code: 'unsupported_transfer_encoding',
    },
    {
      name: 'CL.CL: two Content-Length values, the longer one covering the hidden request',
      send: `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
      status: 400,
      code: 'conflicting_content_length',
    },
  ],
};

for (const [group, cases] of Object.entries(CASES)) {
  describe(`strict parsing, ${group}: rejected by the proxy, connection closed, nothing forwarded`, () => {
    for (const c of cases) {
      test(`${c.name} -> ${c.status} ${c.code}`, (t) => expectRejected(t, c.send, c.status, c.code, c.listener));
    }
  });
}

describe('strict parsing: the limits are not off by one', () => {
  test('a head of exactly max_header_bytes is forwarded', async (t) => {
    const r = await rig(t, { max_header_bytes: '1KiB' });
    const base = 'GET /exact HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nX-Pad: \r\n\r\n';
    const head = base.replace('X-Pad: ', `X-Pad: ${'p'.repeat(1024 - base.length)}`);
    assert.equal(head.length, 1024);
    const res = await rawExchange(r.proxy.port, bin(head));
    assert.deepEqual(statuses(res.text), [200]);
    assert.match(r.up.text(), /^GET \/exact HTTP\/1\.1\r\n/);
  });

  test('exactly max_headers fields are forwarded', async (t) => {
    const r = await rig(t, { max_headers: 10 });
    const res = await rawExchange(r.proxy.port, bin(`GET /ten HTTP/1.1\r\n${H}Connection: close\r\n${fields(8)}\r\n`));
    assert.deepEqual(statuses(res.text), [200]);
    assert.match(r.up.text(), /^GET \/ten HTTP\/1\.1\r\n/);
  });
});

// --- chunked request bodies --------------------------------------------------------------------

const CHUNKED_HEAD = `POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
const FIRST_CHUNK = '5\r\nhello\r\n';

/** What the upstream received after the request head on its only connection. */
function upstreamBody(r: Rig): string {
  assert.equal(r.up.conns.length, 1, 'one upstream connection');
  const text = r.up.conns[0]!.text();
  const i = text.indexOf('\r\n\r\n');
  assert.ok(i > 0, `the upstream received a head: ${text}`);
  const head = text.slice(0, i + 4);
  assert.match(head, /^POST \/upload HTTP\/1\.1\r\n/);
  assert.match(head, /\r\ntransfer-encoding: chunked\r\n/);
  return text.slice(i + 4);
}

const BAD_CHUNKS: [string, string][] = [
  ['a non-hex chunk size', 'zz\r\nhello\r\n0\r\n\r\n'],
  ['a chunk size of 14 hex digits (overflow)', '10000000000000\r\nhello\r\n0\r\n\r\n'],
  ['a negative chunk size', '-5\r\nhello\r\n0\r\n\r\n'],
  ['data longer than its chunk size (no CRLF after the data)', '3\r\nhello\r\n0\r\n\r\n'],
  ['an LF-only chunk-size line', '5\nhello\r\n0\r\n\r\n'],
  ['a control character in a chunk extension', '5;x=\x01\r\nhello\r\n0\r\n\r\n'],
  ['obs-fold in the trailer section', '0\r\nX-T: a\r\n b\r\n\r\n'],
  ['a chunk hiding a request behind a short size', `2\r\nok${HIDDEN}\r\n0\r\n\r\n`],
];

describe('strict parsing: malformed chunked request bodies (the head was valid and forwarded)', () => {
  for (const [name, bad] of BAD_CHUNKS) {
    test(`${name} -> 400 invalid_chunk; the upstream gets none of the malformed bytes and its connection is closed`, async (t) => {
      const r = await rig(t);
      const res = await rawExchange(r.proxy.port, [
        bin(CHUNKED_HEAD + FIRST_CHUNK),
        () =>
          waitFor(() => r.up.text().endsWith(`\r\n\r\n${FIRST_CHUNK}`), 'the upstream has the head and first chunk'),
        bin(bad),
      ]);
      assertProxyError(res, 400, 'invalid_chunk');
      await waitFor(() => r.up.conns[0]?.closedByProxy === true, 'the proxy closes the upstream connection');
      assert.equal(upstreamBody(r), FIRST_CHUNK, 'only the valid first chunk reached the upstream');

      // The upstream connection is not reused: the next request needs a new one.
      const next = await rawExchange(r.proxy.port, bin(CONTROL));
      assert.deepEqual(statuses(next.text), [200]);
      assert.equal(r.up.accepted, 2);
      assert.match(r.up.conns[1]!.text(), /^GET \/control HTTP\/1\.1\r\n/);
      assert.ok(r.up.conns[0]!.text().endsWith(`\r\n\r\n${FIRST_CHUNK}`), 'the first connection got nothing more');
    });
  }

  test('a chunked body malformed in the same packet as the head -> 400 invalid_chunk, no upstream connection at all', async (t) => {
    const r = await rig(t);
    const res = await rawExchange(r.proxy.port, bin(`${CHUNKED_HEAD}zz\r\nhello\r\n0\r\n\r\n`));
    assertProxyError(res, 400, 'invalid_chunk');
    await assertUpstreamSawOnlyControl(r);
  });

  test('a valid chunked body with extensions and trailers is forwarded byte for byte (control)', async (t) => {
    const r = await rig(t);
    const body = '5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n';
    const res = await rawExchange(r.proxy.port, [
      bin(CHUNKED_HEAD + FIRST_CHUNK),
      () => waitFor(() => r.up.text().endsWith(FIRST_CHUNK), 'the upstream has the first chunk'),
      bin(body),
      () => waitFor(() => r.up.text().endsWith(body), 'the upstream has the whole body'),
    ]);
    assert.equal(res.text, '', 'the upstream never answered, so neither did the proxy');
    assert.equal(res.closed, false, 'the connection stays open while the exchange is pending');
    assert.equal(upstreamBody(r), FIRST_CHUNK + body);
  });
});

// --- a rejected request ends the connection ------------------------------------------------------

const FOLLOW_UP = 'GET /follow-up HTTP/1.1\r\nHost: a.test\r\n\r\n';

const FIRST_REJECTED: [string, string, number, ErrorCode][] = [
  ['an invalid request line', 'GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n', 400, 'invalid_request_line'],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: a.test\r\nX: 1\r\n 2\r\n\r\n', 400, 'obs_fold'],
  ['a bare LF', 'GET / HTTP/1.1\nHost: a.test\r\n\r\n', 400, 'bare_lf'],
  [
    'ambiguous framing',
    'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
    'ambiguous_framing',
  ],
  [
    'an unsupported Transfer-Encoding',
    'POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n',
    501,
    'unsupported_transfer_encoding',
  ],
  ['a missing Host', 'GET / HTTP/1.1\r\n\r\n', 400, 'missing_host'],
  ['an unsupported version', 'GET / HTTP/2.0\r\nHost: a.test\r\n\r\n', 505, 'unsupported_version'],
  ['an unsupported expectation', 'GET / HTTP/1.1\r\nHost: a.test\r\nExpect: nope\r\n\r\n', 417, 'expectation_failed'],
  ['CONNECT', 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n', 405, 'method_not_allowed'],
];

describe('strict parsing: a valid request after a rejected one on the same connection is never processed', () => {
  test('control: two valid pipelined requests on one connection are both forwarded and answered', async (t) => {
    const r = await rig(t);
    const res = await rawExchange(r.proxy.port, bin(`GET /first HTTP/1.1\r\n${H}\r\n${FOLLOW_UP}`));
    assert.deepEqual(statuses(res.text), [200, 200]);
    assert.match(r.up.text(), /^GET \/first HTTP\/1\.1\r\n[\s\S]*\r\n\r\nGET \/follow-up HTTP\/1\.1\r\n/);
  });

  for (const [name, bad, status, code] of FIRST_REJECTED) {
    test(`after ${name} (same packet) the follow-up request gets no response and never reaches the upstream`, async (t) => {
      const r = await rig(t);
      const res = await rawExchange(r.proxy.port, bin(bad + FOLLOW_UP));
      assertProxyError(res, status, code);
      await assertUpstreamSawOnlyControl(r);
    });
  }

  test('after a rejection, a follow-up written separately gets no response and never reaches the upstream', async (t) => {
    const r = await rig(t);
    const bad = 'GET / HTTP/1.1\r\nHost: a.test\r\nX: 1\r\n 2\r\n\r\n';
    const res = await rawExchange(r.proxy.port, [bin(bad), bin(FOLLOW_UP), bin(FOLLOW_UP)]);
    assertProxyError(res, 400, 'obs_fold');
    await assertUpstreamSawOnlyControl(r);
  });

  test('after a 431 header_too_large, the follow-up is not processed', async (t) => {
    const r = await rig(t, { max_header_bytes: '1KiB' });
    const big = `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(1100)}\r\n\r\n`;
    const res = await rawExchange(r.proxy.port, bin(big + FOLLOW_UP));
    assertProxyError(res, 431, 'header_too_large');
    await assertUpstreamSawOnlyControl(r);
  });

  test('after a malformed chunked body, the follow-up is not processed and the upstream gets nothing more', async (t) => {
    const r = await rig(t);
    const res = await rawExchange(r.proxy.port, [
      bin(CHUNKED_HEAD + FIRST_CHUNK),
      () => waitFor(() => r.up.text().endsWith(FIRST_CHUNK), 'the upstream has the first chunk'),
      bin(`zz\r\n\r\n${FOLLOW_UP}`),
    ]);
    assertProxyError(res, 400, 'invalid_chunk');
    await waitFor(() => r.up.conns[0]?.closedByProxy === true, 'the proxy closes the upstream connection');
    assert.equal(upstreamBody(r), FIRST_CHUNK);
    assert.equal(r.up.accepted, 1);
  });
});

// --- smuggling inside a well-framed body: forwarded as body, never as a request ----------------

interface Seen {
  method: string;
  url: string;
  body: string;
}

async function nodeUpstream(t: TestContext): Promise<{ proxy: TestProxy; seen: Seen[] }> {
  const seen: Seen[] = [];
  const up = await httpBackend((req: http.IncomingMessage, res: http.ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(parts).toString('latin1') });
      res.end('ok');
    });
  });
  let proxy: TestProxy;
  try {
    proxy = await startProxy({ upstreams: [up.addr] });
  } catch (err) {
    await up.close();
    throw err;
  }
  t.after(async () => {
    await proxy.close();
    await up.close();
  });
  return { proxy, seen };
}

describe('strict parsing: a request hidden in a well-framed body stays body', () => {
  test('Content-Length body containing a request: the upstream (node:http) sees one request whose body is those bytes', async (t) => {
    const { proxy, seen } = await nodeUpstream(t);
    const req = `POST /outer HTTP/1.1\r\n${H}Content-Length: ${HIDDEN.length}\r\nConnection: close\r\n\r\n${HIDDEN}`;
    const res = await rawExchange(proxy.port, bin(req));
    assert.deepEqual(statuses(res.text), [200]);
    assert.equal(res.closed, true);
    assert.deepEqual(seen, [{ method: 'POST', url: '/outer', body: HIDDEN }]);
  });

  test('chunked body containing a fake last-chunk and a request: the upstream sees one request with that payload', async (t) => {
    const { proxy, seen } = await nodeUpstream(t);
    const payload = `0\r\n\r\n${HIDDEN}`;
    const req = `POST /outer HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${payload.length.toString(16)}\r\n${payload}\r\n0\r\n\r\n`;
    const res = await rawExchange(proxy.port, bin(req));
    assert.deepEqual(statuses(res.text), [200]);
    assert.equal(res.closed, true);
    assert.deepEqual(seen, [{ method: 'POST', url: '/outer', body: payload }]);
  });
});
