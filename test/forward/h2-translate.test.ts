/** The HTTP/2 response head as HTTP/1.1 (h1ResponseHead) and the engine's content-length reading. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BODY_CHUNKED,
  BODY_CLOSE,
  BODY_LENGTH,
  BODY_NONE,
  connectionSpecific,
  h1ResponseHead,
} from '../../src/forward/h2-translate.ts';
import { contentLength } from '../../src/http2/message-fields.ts';

const lines = (text: string) => text.split('\r\n');

describe('h1ResponseHead', () => {
  test('status line, fields in order, pseudo and connection-specific fields left out', () => {
    const r = h1ResponseHead(
      [
        ':status',
        '200',
        'server',
        'x',
        'connection',
        'close',
        'keep-alive',
        'timeout=5',
        'content-type',
        'text/plain',
        'content-length',
        '12',
      ],
      200,
      null,
      false,
      false,
      false,
    );
    assert.ok(r !== null);
    assert.deepEqual(lines(r.text), [
      'HTTP/1.1 200 OK',
      'server: x',
      'content-type: text/plain',
      'content-length: 12',
      '',
      '',
    ]);
    assert.equal(r.framing, BODY_LENGTH);
    assert.equal(r.contentLength, 12);
    // an unknown status still gets a reason phrase
    assert.equal(
      lines(h1ResponseHead([':status', '299'], 299, null, false, false, false)!.text)[0],
      'HTTP/1.1 299 Unknown',
    );
  });

  test('content-length: digits only, a safe integer, repeats must agree; restated without leading zeros', () => {
    const head = (...values: string[]) =>
      h1ResponseHead(
        values.flatMap((v) => ['content-length', v]),
        200,
        null,
        false,
        false,
        false,
      );
    assert.equal(head('007')?.contentLength, 7);
    assert.ok(head('007')?.text.includes('content-length: 7\r\n'));
    assert.ok(head('0')?.text.includes('content-length: 0\r\n'));
    assert.equal(head('5', '5')?.contentLength, 5);
    assert.equal(head('5', '05')?.contentLength, 5);
    assert.equal(head('9007199254740991')?.contentLength, 9007199254740991);
    for (const bad of [[''], ['1a'], ['-1'], [' 1'], ['1.0'], ['9007199254740992'], ['5', '6']]) {
      assert.equal(head(...bad), null, JSON.stringify(bad));
    }
  });

  test('framing: HEAD/204/304 none (204 without content-length), chunked for 1.1, close for 1.0', () => {
    const cl = ['content-length', '3'];
    const head = h1ResponseHead(cl, 200, null, false, true, false)!;
    assert.equal(head.framing, BODY_NONE);
    assert.ok(head.text.includes('content-length: 3\r\n'));
    const noContent = h1ResponseHead(cl, 204, null, false, true, false)!;
    assert.ok(!noContent.text.includes('content-length'));
    const chunked = h1ResponseHead([], 200, null, false, false, false)!;
    assert.equal(chunked.framing, BODY_CHUNKED);
    assert.ok(chunked.text.includes('transfer-encoding: chunked\r\n'));
    const old = h1ResponseHead([], 200, null, true, false, false)!;
    assert.equal(old.framing, BODY_CLOSE);
    assert.ok(old.text.endsWith('connection: close\r\n\r\n'));
    assert.ok(h1ResponseHead(cl, 200, null, true, false, false)!.text.endsWith('connection: keep-alive\r\n\r\n'));
    assert.ok(h1ResponseHead(cl, 200, null, false, false, true)!.text.endsWith('connection: close\r\n\r\n'));
  });

  test('every byte: long values, latin1 above 0x7f, skipped fields between kept ones', () => {
    const long = 'v'.repeat(300);
    const r = h1ResponseHead(
      [
        ':status',
        '404',
        'x-long',
        long,
        'content-length',
        '0',
        'keep-alive',
        'timeout=5',
        'x-latin1',
        'caf\xe9',
        'via',
        '1.1 up',
        'set-cookie',
        'a=1',
      ],
      404,
      'muxgate',
      false,
      false,
      false,
    )!;
    assert.equal(
      r.text,
      `HTTP/1.1 404 Not Found\r\nx-long: ${long}\r\nx-latin1: caf\xe9\r\nset-cookie: a=1\r\n` +
        'via: 1.1 up, 2 muxgate\r\ncontent-length: 0\r\n\r\n',
    );
  });

  test('via: the upstream values joined, ours appended as protocol 2', () => {
    const r = h1ResponseHead(['via', '1.1 a', 'via', '1.0 b'], 200, 'muxgate', false, false, false)!;
    assert.ok(r.text.includes('via: 1.1 a, 1.0 b, 2 muxgate\r\n'));
    assert.ok(h1ResponseHead([], 200, 'muxgate', false, false, false)!.text.includes('via: 2 muxgate\r\n'));
  });
});

describe('the engine reading content-length (message-fields contentLength)', () => {
  test('digits only, up to 15 of them, repeats must agree; -1 otherwise', () => {
    assert.equal(contentLength(['content-length', '0']), 0);
    assert.equal(contentLength(['content-length', '123456789012345']), 123456789012345);
    assert.equal(contentLength(['content-length', '12', 'x', 'y', 'content-length', '12']), 12);
    assert.equal(contentLength(['x', 'y']), -1);
    for (const bad of ['', '1234567890123456', '1a', '+1', ' 1', '1 ']) {
      assert.equal(contentLength(['content-length', bad]), -1, JSON.stringify(bad));
    }
    assert.equal(contentLength(['content-length', '1', 'content-length', '2']), -1);
  });
});

describe('connectionSpecific', () => {
  test('names exactly the six connection-specific fields (RFC 9113 §8.2.2), not their neighbours by length', () => {
    const specific = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'];
    for (const name of specific) assert.equal(connectionSpecific(name), true, name);
    const others = [
      'te', // refused unless "trailers", checked apart
      'upgrader',
      'upgradE',
      'connectio',
      'connections',
      'keep-alivE',
      'x-connection', // 12
      'content-length', // 14, like http2-settings
      'accept-charset',
      'http2-settingz',
      'proxy-connectioN',
      'transfer-encodinG',
      'x-transfer-encoding',
      '',
      'via',
      'server',
    ];
    for (const name of others) assert.equal(connectionSpecific(name), false, name);
  });
});
