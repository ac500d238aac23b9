import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ErrorCode } from '../../src/core/errors.ts';
import { BARE_LF, findHeadEnd, NEED_MORE, resumeFrom } from '../../src/http1/head-end.ts';
import {
  CL_CONFLICT,
  ownHeadBytes,
  parseContentLength,
  parseRequestHead,
  type RequestHead,
  requestFields,
} from '../../src/http1/request-head.ts';

const bytes = (s: string) => Buffer.from(s, 'latin1');

/** Finds the head end the way the session does, then parses; fails the test if the head is incomplete. */
function parse(head: string, maxHeaders = 100, prefix = ''): RequestHead | ErrorCode {
  const buf = bytes(prefix + head);
  const end = findHeadEnd(buf, prefix.length, prefix.length, buf.length);
  assert.ok(end > 0, `expected a complete head, findHeadEnd returned ${end}`);
  return parseRequestHead(buf, prefix.length, end, { maxHeaders });
}

function accept(head: string, maxHeaders = 100): RequestHead {
  const r = parse(head, maxHeaders);
  assert.equal(typeof r, 'object', `expected the head to be accepted, got ${String(r)}`);
  return r as RequestHead;
}

/** Bypasses findHeadEnd (which would catch some of these first) to test the parser's own defences. */
function parseOnly(head: string): RequestHead | ErrorCode {
  const buf = bytes(head);
  const end = buf.indexOf('\r\n\r\n') + 4;
  assert.ok(end >= 4);
  return parseRequestHead(buf, 0, end, { maxHeaders: 100 });
}

describe('findHeadEnd', () => {
  test('returns the index just past CRLFCRLF, ignoring bytes that follow', () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    const buf = bytes(`${head}POST /next HTTP/1.1\r\n`);
    assert.equal(findHeadEnd(buf, 0, 0, buf.length), head.length);
  });

  test('a head with no header fields ends at the CRLF after the request line', () => {
    const buf = bytes('GET / HTTP/1.0\r\n\r\n');
    assert.equal(findHeadEnd(buf, 0, 0, buf.length), buf.length);
  });

  test('reports NEED_MORE until the empty line has fully arrived', () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    for (let n = 0; n < head.length; n++) {
      const buf = bytes(head.slice(0, n));
      assert.equal(findHeadEnd(buf, 0, 0, buf.length), NEED_MORE, `prefix of ${n} bytes`);
    }
  });

  test('looks only inside [start, end)', () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    const buf = bytes(`junk\r\n\r\n${head}`);
    assert.equal(findHeadEnd(buf, 8, 8, buf.length), buf.length);
    assert.equal(findHeadEnd(buf, 8, 8, buf.length - 1), NEED_MORE);
  });

  test('resumed scans (the session feeding it piece by piece) find the same end at every split point', () => {
    const head = 'GET /a HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n';
    const prefix = 'PREV';
    const whole = bytes(prefix + head);
    for (let cut = prefix.length; cut <= whole.length; cut++) {
      const first = findHeadEnd(whole, prefix.length, prefix.length, cut);
      if (cut < whole.length) assert.equal(first, NEED_MORE, `cut at ${cut}`);
      const again = findHeadEnd(whole, prefix.length, resumeFrom(prefix.length, cut), whole.length);
      assert.equal(again, whole.length, `resumed after a cut at ${cut}`);
    }
  });

  for (const [name, text] of [
    ['a bare LF ending the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n'],
    ['a bare LF ending a header line', 'GET / HTTP/1.1\r\nHost: a\n\r\n'],
    ['a bare LF as the empty line', 'GET / HTTP/1.1\r\nHost: a\r\n\n'],
    ['LF LF as the whole terminator', 'GET / HTTP/1.1\nHost: a\n\n'],
    ['a bare LF inside a header value', 'GET / HTTP/1.1\r\nX: a\nb\r\nHost: a\r\n\r\n'],
    ['an LF at the very start', '\nGET / HTTP/1.1\r\n\r\n'],
  ] as const) {
    test(`reports BARE_LF for ${name}`, () => {
      const buf = bytes(text);
      assert.equal(findHeadEnd(buf, 0, 0, buf.length), BARE_LF);
    });
  }

  test('reports BARE_LF as soon as the bare LF arrives, without waiting for the rest of the head', () => {
    const buf = bytes('GET / HTTP/1.1\nHo');
    assert.equal(findHeadEnd(buf, 0, 0, buf.length), BARE_LF);
  });

  // Lines are scanned byte by byte for their first 128 bytes and with indexOf past that: every length
  // around the switch must give the same answers.
  test('finds the end, a bare LF and NEED_MORE for lines of every length around 128 bytes', () => {
    for (let n = 100; n <= 300; n++) {
      const line = `X-Long: ${'v'.repeat(n)}`;
      const head = `GET / HTTP/1.1\r\n${line}\r\nHost: a\r\n\r\n`;
      const buf = bytes(`${head}body`);
      assert.equal(findHeadEnd(buf, 0, 0, buf.length), head.length, `line of ${line.length}`);
      assert.equal(
        findHeadEnd(buf, 0, 0, head.length - 1),
        NEED_MORE,
        `cut before the last LF, line of ${line.length}`,
      );
      const bare = bytes(`GET / HTTP/1.1\r\n${line}\nHost: a\r\n\r\n`);
      assert.equal(findHeadEnd(bare, 0, 0, bare.length), BARE_LF, `bare LF after a line of ${line.length}`);
      // An LF beyond `end` is not seen.
      const open = bytes(`GET / HTTP/1.1\r\n${line}`);
      const withLf = Buffer.concat([open, bytes('\r\n\r\n')]);
      assert.equal(findHeadEnd(withLf, 0, 0, open.length + 1), NEED_MORE);
    }
  });
});

describe('parseRequestHead: accepted forms', () => {
  test('origin-form: method, target with query, version, fields in wire order with values trimmed', () => {
    const text =
      'GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case:  v1 \t\r\nx-empty:\r\nAccept: */*\r\n\r\n';
    const h = accept(text);
    assert.equal(h.method, 'GET');
    assert.equal(h.target, '/a/b?c=d');
    assert.equal(h.minor, 1);
    assert.equal(h.host, 'example.com');
    const f = requestFields(h);
    assert.deepEqual(f.names, ['Host', 'X-Mixed-Case', 'x-empty', 'Accept']);
    assert.deepEqual(f.lower, ['host', 'x-mixed-case', 'x-empty', 'accept']);
    assert.deepEqual(f.values, ['example.com', 'v1', '', '*/*']);
    assert.equal(h.contentLength, -1);
    assert.equal(h.chunked, false);
    assert.equal(h.connection, null);
    assert.equal(h.keepAlive, true);
    assert.equal(h.expectContinue, false);
    assert.equal(h.headBytes, text.length);
  });

  test('parses a head that starts in the middle of a buffer and reports its own size', () => {
    const head = 'PUT /x HTTP/1.1\r\nHost: h\r\n\r\n';
    const r = parse(head, 100, 'GET / HTTP/1.1\r\nHost: earlier\r\n\r\n');
    assert.equal(typeof r, 'object');
    const h = r as RequestHead;
    assert.equal(h.method, 'PUT');
    assert.equal(h.host, 'h');
    assert.equal(h.headBytes, head.length);
  });

  test('lineBytes: the request line can go upstream as it came only for HTTP/1.1 origin-form and "*"', () => {
    assert.equal(accept('GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n').lineBytes, 'GET /a?b HTTP/1.1\r\n'.length);
    assert.equal(accept('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n').lineBytes, 'OPTIONS * HTTP/1.1\r\n'.length);
    assert.equal(accept('GET http://h/a HTTP/1.1\r\n\r\n').lineBytes, 0);
    assert.equal(accept('GET /a HTTP/1.0\r\n\r\n').lineBytes, 0);
    assert.equal(accept('CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n').lineBytes, 0);
  });

  test('methods: the common ones and any other token, case kept', () => {
    for (const m of ['GET', 'POST', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'PURGE', 'get', 'GETX', 'POS', 'M-SEARCH']) {
      assert.equal(accept(`${m} / HTTP/1.1\r\nHost: h\r\n\r\n`).method, m);
    }
  });

  test('ownHeadBytes: the head keeps its fields when the buffer it was parsed from is overwritten', () => {
    const prefix = 'GET / HTTP/1.1\r\nHost: earlier\r\n\r\n';
    const head = 'PUT /x HTTP/1.1\r\nHost: h\r\nX-A: one\r\nX-B:  two \r\n\r\n';
    const buf = bytes(prefix + head);
    const end = findHeadEnd(buf, prefix.length, prefix.length, buf.length);
    const h = parseRequestHead(buf, prefix.length, end, { maxHeaders: 100 }) as RequestHead;
    const before = requestFields(h);
    ownHeadBytes(h);
    buf.fill(0x5a);
    assert.equal(h.start, 0);
    assert.equal(h.buf.length, head.length);
    assert.deepEqual(requestFields(h), before);
    assert.deepEqual(before.values, ['h', 'one', 'two']);
  });

  test('absolute-form: the authority replaces the Host header and the target becomes origin-form', () => {
    const h = accept('GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n');
    assert.equal(h.host, 'example.com:8080');
    assert.equal(h.target, '/p?q=1');
  });

  test('absolute-form needs no Host header, and an empty path becomes "/"', () => {
    assert.equal(accept('GET http://example.com HTTP/1.1\r\n\r\n').target, '/');
    const h = accept('GET HTTPS://Example.com?x=1 HTTP/1.1\r\n\r\n');
    assert.equal(h.host, 'Example.com');
    assert.equal(h.target, '/?x=1');
  });

  test('asterisk-form is accepted for OPTIONS *', () => {
    const h = accept('OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(h.method, 'OPTIONS');
    assert.equal(h.target, '*');
  });

  test('HTTP/1.0 without Host is accepted, with an empty host and no keep-alive by default', () => {
    const h = accept('GET / HTTP/1.0\r\n\r\n');
    assert.equal(h.minor, 0);
    assert.equal(h.host, '');
    assert.equal(h.keepAlive, false);
  });

  test('HTTP/1.0 with "Connection: keep-alive" keeps the connection', () => {
    assert.equal(accept('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n').keepAlive, true);
  });

  test('"Connection: close" on HTTP/1.1 ends keep-alive; tokens are lower-cased across lines', () => {
    const h = accept('GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, Close\r\nConnection: ,te\r\n\r\n');
    assert.deepEqual(h.connection, ['x-foo', 'close', 'te']);
    assert.equal(h.keepAlive, false);
  });

  test('identical duplicate Content-Length values ("5, 5" and two equal lines) are one length', () => {
    assert.equal(accept('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n').contentLength, 5);
    assert.equal(accept('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5,\t5\r\n\r\n').contentLength, 5);
    assert.equal(
      accept('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n').contentLength,
      5,
    );
  });

  test('Content-Length 0 and a 15-digit Content-Length are accepted', () => {
    assert.equal(accept('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n').contentLength, 0);
    assert.equal(
      accept('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999\r\n\r\n').contentLength,
      999_999_999_999_999,
    );
  });

  test('a lone "Transfer-Encoding: chunked" (any case) frames the body as chunked', () => {
    for (const v of ['chunked', 'Chunked', 'CHUNKED']) {
      const h = accept(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${v}\r\n\r\n`);
      assert.equal(h.chunked, true, v);
      assert.equal(h.contentLength, -1, v);
    }
  });

  test('"Expect: 100-continue" (any case) is recognised', () => {
    assert.equal(accept('POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n').expectContinue, true);
  });

  test('IPv6 literal hosts with a port are valid', () => {
    assert.equal(accept('GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n').host, '[::1]:8080');
  });

  test('field values may contain HTAB inside and obs-text bytes', () => {
    const h = accept('GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xe9\xff\r\n\r\n');
    assert.equal(requestFields(h).values[1], 'a\tb \xe9\xff');
  });

  test('exactly max_headers fields are accepted', () => {
    const fields = Array.from({ length: 5 }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    assert.equal(accept(`GET / HTTP/1.1\r\nHost: a\r\n${fields}\r\n`, 6).fields.length / 6, 6);
  });
});

describe('parseRequestHead: rejections', () => {
  const cases: [string, string, ErrorCode][] = [
    // request line
    ['an empty method', ' / HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['two spaces between method and target', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['two spaces between target and version', 'GET /  HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a trailing space after the version', 'GET / HTTP/1.1 \r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a missing version', 'GET /\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a request line that is only a method', 'GET\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a lower-case version', 'GET / http/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a version without minor', 'GET / HTTP/1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a version with two-digit major', 'GET / HTTP/11.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a space inside the target', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['HTAB as the separator', 'GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a control character in the target', 'GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a fragment in the target', 'GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a NUL in the target', 'GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a bare CR in the target', 'GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a DEL in the target', 'GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a raw non-ASCII byte in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a bare CR ending the request line', 'GET / HTTP/1.1\r\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a non-token character in the method', 'GE(T / HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a non-ASCII byte in the method', 'G\xc9T / HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['asterisk-form with a method other than OPTIONS', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['a relative target not starting with "/"', 'GET a/b HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    ['absolute-form with a non-http scheme', 'GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_request_line'],
    [
      'absolute-form whose path is only a fragment',
      'GET http://a#f HTTP/1.1\r\nHost: a\r\n\r\n',
      'invalid_request_line',
    ],
    // version
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 'unsupported_version'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 'unsupported_version'],
    ['HTTP/0.9', 'GET / HTTP/0.9\r\nHost: a\r\n\r\n', 'unsupported_version'],
    // method
    // CONNECT takes only authority-form (RFC 9112 §3.2.3); whether a listener serves it is decided later.
    ['CONNECT with an origin-form target', 'CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_connect'],
    ['CONNECT without a port', 'CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n', 'invalid_connect'],
    ['CONNECT to port 0', 'CONNECT example.com:0 HTTP/1.1\r\nHost: example.com\r\n\r\n', 'invalid_connect'],
    // field lines
    ['obs-fold: a line starting with SP', 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n', 'obs_fold'],
    ['obs-fold: a line starting with HTAB', 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n', 'obs_fold'],
    ['obs-fold right after the request line', 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', 'obs_fold'],
    ['SP between field name and colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 'invalid_header'],
    ['HTAB between field name and colon', 'GET / HTTP/1.1\r\nHost\t: a\r\n\r\n', 'invalid_header'],
    ['a field line without a colon', 'GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n', 'invalid_header'],
    ['an empty field name', 'GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n', 'invalid_header'],
    ['a NUL in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: v\r\n\r\n', 'invalid_header'],
    ['a DEL in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX\x7f: v\r\n\r\n', 'invalid_header'],
    ['a non-token character in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n', 'invalid_header'],
    ['a non-ASCII byte in a field name', 'GET / HTTP/1.1\r\nHost: a\r\nX\xe9: v\r\n\r\n', 'invalid_header'],
    ['a NUL in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n', 'invalid_header'],
    ['a bare CR in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', 'invalid_header'],
    ['a DEL in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n', 'invalid_header'],
    ['an ESC in a field value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n', 'invalid_header'],
    ['a bare CR ending a field line', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n', 'invalid_header'],
    // Host
    ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\nX: a\r\n\r\n', 'missing_host'],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 'multiple_host'],
    ['two identical Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 'multiple_host'],
    [
      'two Host headers next to an absolute-form target',
      'GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'multiple_host',
    ],
    ['a space inside Host', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 'invalid_host'],
    ['a slash in Host', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', 'invalid_host'],
    ['userinfo in Host', 'GET / HTTP/1.1\r\nHost: user@a\r\n\r\n', 'invalid_host'],
    ['a non-ASCII byte in Host', 'GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n', 'invalid_host'],
    ['HTAB inside Host', 'GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n', 'invalid_host'],
    ['userinfo in an absolute-form authority', 'GET http://u@a/ HTTP/1.1\r\n\r\n', 'invalid_host'],
    ['an invalid Host on HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a"b\r\n\r\n', 'invalid_host'],
    ['an empty Host header', 'GET / HTTP/1.1\r\nHost:\r\n\r\n', 'invalid_host'],
    ['an absolute-form target with an empty host', 'GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_host'],
    ['an absolute-form target with only a port', 'GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n', 'invalid_host'],
    // Content-Length
    [
      'a non-numeric Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n',
      'invalid_content_length',
    ],
    ['a negative Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 'invalid_content_length'],
    [
      'a Content-Length with a plus sign',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'a hexadecimal Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'a fractional Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1.5\r\n\r\n',
      'invalid_content_length',
    ],
    ['an empty Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n', 'invalid_content_length'],
    [
      'a Content-Length of two space-separated numbers',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'a 16-digit Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'a huge Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'a Content-Length list with differing values "5, 6"',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n',
      'conflicting_content_length',
    ],
    [
      'a Content-Length list with an empty element',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n',
      'invalid_content_length',
    ],
    [
      'two differing Content-Length lines',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
      'conflicting_content_length',
    ],
    [
      'a Content-Length list and a differing line',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 6\r\n\r\n',
      'conflicting_content_length',
    ],
    // Transfer-Encoding
    [
      'Content-Length then Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
      'ambiguous_framing',
    ],
    [
      'Transfer-Encoding then Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n',
      'ambiguous_framing',
    ],
    [
      'Transfer-Encoding with Content-Length 0',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n',
      'ambiguous_framing',
    ],
    [
      'Transfer-Encoding in an HTTP/1.0 request',
      'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n',
      'transfer_encoding_http10',
    ],
    [
      '"gzip, chunked"',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      '"chunked, identity"',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      '"chunked, chunked"',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      '"xchunked"',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      '"identity"',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      'an empty Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      '"chunked" on two lines',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      'a non-chunked Transfer-Encoding in HTTP/1.0',
      'POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    [
      'a bogus TE next to Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n',
      'unsupported_transfer_encoding',
    ],
    // Expect
    ['an Expect other than 100-continue', 'POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n', 'expectation_failed'],
    [
      'an Expect with extra parameters',
      'POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue; x=1\r\n\r\n',
      'expectation_failed',
    ],
  ];
  for (const [name, text, code] of cases) {
    test(`rejects ${name} with ${code}`, () => {
      assert.equal(parse(text), code);
    });
  }

  test('rejects one field more than max_headers with too_many_headers', () => {
    const fields = Array.from({ length: 6 }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    assert.equal(parse(`GET / HTTP/1.1\r\nHost: a\r\n${fields}\r\n`, 6), 'too_many_headers');
  });

  test('rejects a bare LF inside a field value even when called without findHeadEnd', () => {
    assert.equal(parseOnly('GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n'), 'invalid_header');
  });

  test('checks every Host, however often a valid one came before (the parser remembers the last good one)', () => {
    for (let round = 0; round < 3; round++) {
      assert.equal(accept('GET / HTTP/1.1\r\nHost: good.example:8080\r\n\r\n').host, 'good.example:8080');
      assert.equal(accept('GET / HTTP/1.1\r\nHost: good.example:8080\r\n\r\n').host, 'good.example:8080');
      // same length as the good one, one byte different; then a prefix of it
      assert.equal(parse('GET / HTTP/1.1\r\nHost: good.example:80 0\r\n\r\n'), 'invalid_host');
      assert.equal(parse('GET / HTTP/1.1\r\nHost: good/example:8080\r\n\r\n'), 'invalid_host');
      assert.equal(parse('GET http://good.exam@ple/ HTTP/1.1\r\nHost: good.example:8080\r\n\r\n'), 'invalid_host');
    }
  });
});

describe('parseContentLength', () => {
  test('returns the number for 1*DIGIT and for lists of identical values', () => {
    assert.equal(parseContentLength('0'), 0);
    assert.equal(parseContentLength('007'), 7);
    assert.equal(parseContentLength('42'), 42);
    assert.equal(parseContentLength('42,42'), 42);
    assert.equal(parseContentLength('42, \t42,42'), 42);
  });

  test('returns -1 for anything else', () => {
    for (const v of ['', ' ', 'a', '-0', '4 2', '42 ', ' 42', '42,', ',42', '42,,42', '1e3', '9'.repeat(16)]) {
      assert.equal(parseContentLength(v), -1, JSON.stringify(v));
    }
  });

  test('returns CL_CONFLICT for a list of differing values', () => {
    for (const v of ['4,2', '5, 6', '1, 1, 2']) assert.equal(parseContentLength(v), CL_CONFLICT, JSON.stringify(v));
  });
});
