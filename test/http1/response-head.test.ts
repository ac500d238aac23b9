import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findHeadEnd } from '../../src/http1/head-end.ts';
import { renderHead } from '../../src/http1/field-scan.ts';
import { parseResponseHead, type ResponseHead, responseFields } from '../../src/http1/response-head.ts';

function parse(head: string, prefix = ''): ResponseHead | null {
  const buf = Buffer.from(prefix + head, 'latin1');
  const end = findHeadEnd(buf, prefix.length, prefix.length, buf.length);
  assert.ok(end > 0, `expected a complete head, findHeadEnd returned ${end}`);
  return parseResponseHead(buf, prefix.length, end);
}

function accept(head: string): ResponseHead {
  const r = parse(head);
  assert.ok(r !== null, `expected ${JSON.stringify(head)} to be accepted`);
  return r;
}

describe('parseResponseHead: accepted responses', () => {
  test('status, reason, fields in wire order, Content-Length, reusable HTTP/1.1', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n';
    const r = accept(text);
    assert.equal(r.status, 200);
    assert.equal(r.minor, 1);
    assert.equal(r.reason, 'OK');
    const f = responseFields(r);
    assert.deepEqual(f.names, ['Content-Type', 'Content-Length', 'X-A']);
    assert.deepEqual(f.lower, ['content-type', 'content-length', 'x-a']);
    assert.deepEqual(f.values, ['text/plain', '5', 'b']);
    assert.equal(r.contentLength, 5);
    assert.equal(r.chunked, false);
    assert.equal(r.connection, null);
    assert.equal(r.reusable, true);
    assert.equal(r.headBytes, text.length);
  });

  test('parses a head in the middle of a buffer', () => {
    const head = 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n';
    const r = parse(head, 'leftover body bytes');
    assert.ok(r !== null);
    assert.equal(r.status, 404);
    assert.equal(r.reason, 'Not Found');
    assert.equal(r.headBytes, head.length);
  });

  test('a reason phrase may contain spaces, HTAB and obs-text', () => {
    assert.equal(accept('HTTP/1.1 500 Very \tBad \xe9\r\n\r\n').reason, 'Very \tBad \xe9');
  });

  test('an empty reason is accepted with or without the SP before it', () => {
    assert.equal(accept('HTTP/1.1 204 \r\n\r\n').reason, '');
    assert.equal(accept('HTTP/1.1 204\r\n\r\n').reason, '');
  });

  test('interim responses parse like any other', () => {
    assert.equal(accept('HTTP/1.1 100 Continue\r\n\r\n').status, 100);
    assert.equal(accept('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n').status, 103);
  });

  test('chunked framing (any case) and no Content-Length', () => {
    const r = accept('HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n');
    assert.equal(r.chunked, true);
    assert.equal(r.contentLength, -1);
  });

  test('identical duplicate Content-Length values are one length', () => {
    assert.equal(accept('HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n').contentLength, 7);
    assert.equal(accept('HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n').contentLength, 7);
  });

  test('"Connection: close" makes an HTTP/1.1 connection non-reusable', () => {
    const r = accept('HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n');
    assert.deepEqual(r.connection, ['close']);
    assert.equal(r.reusable, false);
  });

  test('HTTP/1.0 is not reusable unless it says keep-alive', () => {
    assert.equal(accept('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').reusable, false);
    const r = accept('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n');
    assert.equal(r.minor, 0);
    assert.equal(r.reusable, true);
  });

  test('a close-delimited response has neither length nor chunked', () => {
    const r = accept('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    assert.equal(r.contentLength, -1);
    assert.equal(r.chunked, false);
  });
});

describe('parseResponseHead: responses that break the protocol are refused (null)', () => {
  const cases: [string, string][] = [
    ['an HTTP/2 status line', 'HTTP/2 200 OK\r\n\r\n'],
    ['HTTP/1.2', 'HTTP/1.2 200 OK\r\n\r\n'],
    ['a lower-case protocol name', 'http/1.1 200 OK\r\n\r\n'],
    ['a missing SP after the version', 'HTTP/1.1200 OK\r\n\r\n'],
    ['two spaces before the status', 'HTTP/1.1  200 OK\r\n\r\n'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n'],
    ['a status below 100', 'HTTP/1.1 099 Odd\r\n\r\n'],
    ['a status of 600', 'HTTP/1.1 600 Odd\r\n\r\n'],
    ['a non-numeric status', 'HTTP/1.1 2x0 OK\r\n\r\n'],
    ['a truncated status line', 'HTTP/1.1 20\r\n\r\n'],
    ['a control character in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n'],
    ['a DEL in the reason', 'HTTP/1.1 200 OK\x7f\r\n\r\n'],
    ['a bare CR in the reason', 'HTTP/1.1 200 O\rK\r\n\r\n'],
    [
      'Content-Length and Transfer-Encoding together',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    [
      'Transfer-Encoding then Content-Length',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n',
    ],
    ['differing Content-Length lines', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n'],
    ['a differing Content-Length list', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n'],
    ['a non-numeric Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n'],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n'],
    ['a Transfer-Encoding other than chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'],
    ['"chunked" twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n'],
    ['whitespace between field name and colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n'],
    ['a NUL in a field value', 'HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n'],
    ['a field line without a colon', 'HTTP/1.1 200 OK\r\nBroken\r\n\r\n'],
  ];
  for (const [name, text] of cases) {
    test(`refuses ${name}`, () => {
      assert.equal(parse(text), null);
    });
  }

  test('refuses more than 1000 header fields', () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    assert.notEqual(parse(`HTTP/1.1 200 OK\r\n${fields(1000)}\r\n`), null);
    assert.equal(parse(`HTTP/1.1 200 OK\r\n${fields(1001)}\r\n`), null);
  });
});

describe('relayed field lines', () => {
  test('hop-by-hop, framing, Via and Connection-listed fields are dropped; the rest are kept byte for byte', () => {
    const r = accept(
      'HTTP/1.1 200 OK\r\nX-Keep: a  b\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n' +
        'x-secret: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nVia: 1.1 a\r\n' +
        'Content-Length: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n',
    );
    const out = renderHead('HTTP/1.1 200 OK\r\n', r.buf, r.fields, 'via: x\r\n');
    assert.equal(
      out.toString('latin1'),
      'HTTP/1.1 200 OK\r\nX-Keep: a  b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nvia: x\r\n\r\n',
    );
    assert.equal(r.via, '1.1 a');
    assert.deepEqual(r.connection, ['keep-alive', 'x-secret']);
  });

  test('a chunked response drops its Transfer-Encoding line (the proxy restates framing)', () => {
    const r = accept('HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\nX-A: 1\r\n\r\n');
    assert.equal(r.chunked, true);
    assert.equal(renderHead('', r.buf, r.fields, '').toString('latin1'), 'X-A: 1\r\n\r\n');
  });
});
