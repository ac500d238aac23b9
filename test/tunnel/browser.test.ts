/**
 * A real browser through muxgate: headless Chromium loads a page over TLS + HTTP/2 (ALPN h2 on an
 * `auto` listener), and the page's script opens `wss://<same origin>/ws`. Chromium sends that as an
 * RFC 8441 extended CONNECT on the HTTP/2 connection the page came over (it only does so on an existing
 * h2 session to the origin whose SETTINGS advertise ENABLE_CONNECT_PROTOCOL), so the access log's
 * tunnel line says HTTP/2. Upstream it becomes an HTTP/1.1 Upgrade (case A) or an RFC 8441 stream to
 * an h2c backend (case B). The page echoes a message, then asks the backend to close with a code that
 * must reach the browser's `onclose`.
 *
 * Skipped, with the reason, where Chromium cannot run (see test/helpers/browser.ts).
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { chromiumMissing, launchChromium } from '../helpers/browser.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { wsBackend } from '../helpers/ws.ts';

const MESSAGE = 'hello from chromium';
const CLOSE_CODE = 4321;
const CLOSE_REASON = 'page asked';

// The page's script: echo one message, then ask the backend to close with CLOSE_CODE; everything the
// browser saw lands in window.out for the test to read.
const PAGE = `<!doctype html><title>loading</title><script>
const out = { opened: false, messages: [], error: false, close: null, extensions: null };
window.out = out;
const ws = new WebSocket('wss://' + location.host + '/ws/echo');
ws.onopen = () => { out.opened = true; out.extensions = ws.extensions; ws.send(${JSON.stringify(MESSAGE)}); };
ws.onmessage = (e) => {
  out.messages.push(String(e.data));
  document.title = 'echo:' + e.data;
  ws.send(${JSON.stringify(`close ${CLOSE_CODE} ${CLOSE_REASON}`)});
};
ws.onerror = () => { out.error = true; };
ws.onclose = (e) => { out.close = { code: e.code, reason: e.reason, wasClean: e.wasClean }; };
</script>`;

interface PageOut {
  opened: boolean;
  messages: string[];
  error: boolean;
  close: { code: number; reason: string; wasClean: boolean } | null;
  extensions: string | null;
}

interface PageBackend {
  addr: string;
  /** GET / answered with the page. */
  pages: number;
  /** WebSockets opened by HTTP/1.1 Upgrade, and the headers of the last handshake. */
  h1Upgrades: number;
  lastUpgrade: http.IncomingHttpHeaders | null;
  /** Close codes the backend sent on request ("close <code> <reason>"). */
  closesSent: number[];
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 backend: the page at `/` (404 elsewhere, e.g. /favicon.ico) and a `ws` echo for HTTP/1.1
 * Upgrades with permessage-deflate on, so the negotiated extension must come back to the browser. Like
 * test/helpers/ws.ts, the text "close <code> <reason>" makes it close with that code and reason.
 */
async function pageBackend(): Promise<PageBackend> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  const sockets = new Set<WebSocket>();
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      b.pages++;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    b.h1Upgrades++;
    b.lastUpgrade = req.headers;
    wss.handleUpgrade(req, socket, head, (w) => {
      sockets.add(w);
      w.on('close', () => sockets.delete(w));
      w.on('error', () => {});
      w.on('message', (data: Buffer, isBinary: boolean) => {
        const m = isBinary ? null : /^close (\d+) ?(.*)$/.exec(data.toString());
        if (m !== null) {
          b.closesSent.push(Number(m[1]));
          w.close(Number(m[1]), m[2]);
          return;
        }
        w.send(data, { binary: isBinary });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const b: PageBackend = {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    pages: 0,
    h1Upgrades: 0,
    lastUpgrade: null,
    closesSent: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const w of sockets) w.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return b;
}

/** Base64 SHA-256 of the certificate's SubjectPublicKeyInfo, for --ignore-certificate-errors-spki-list. */
function spkiHash(certFile: string): string {
  const spki = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

const skip = chromiumMissing();

describe('a browser WebSocket through muxgate over TLS + HTTP/2 (RFC 8441)', { skip: skip ?? false }, () => {
  let dir = '';
  let leaf: CertPaths = { cert: '', key: '' };
  let browser: Browser | null = null;

  before(async () => {
    dir = tmpDir('muxgate-browser-');
    leaf = makeCert(dir, makeCa(dir), ['127.0.0.1', 'localhost']);
    // Trusting the leaf by its key rather than with a context's ignoreHTTPSErrors, which costs an aborted
    // handshake per connection.
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(leaf.cert)}`]);
  });

  after(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Loads the page from the proxy and waits (bounded) until the socket has closed; returns what the page saw. */
  async function runPage(t: TestContext, p: TestProxy): Promise<PageOut> {
    assert.ok(browser !== null, 'Chromium launched');
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    const res = await page.goto(`https://127.0.0.1:${p.port}/`, { timeout: 10_000 });
    assert.equal(res?.status(), 200);
    try {
      await page.waitForFunction('window.out !== undefined && window.out.close !== null', undefined, {
        timeout: 10_000,
      });
    } catch (err) {
      const out = await page.evaluate('window.out').catch(() => undefined);
      throw new Error(
        `the page's WebSocket did not close in time: ${JSON.stringify(out)}; console: ${JSON.stringify(logs)}; ` +
          `access log: ${JSON.stringify(p.accessLog)}`,
        { cause: err },
      );
    }
    const out = (await page.evaluate('window.out')) as PageOut;
    assert.equal(await page.title(), `echo:${MESSAGE}`);
    return out;
  }

  /** The page's own GET went over HTTP/2, and the WebSocket came as an RFC 8441 tunnel on HTTP/2. */
  async function tunnelLine(p: TestProxy): Promise<Record<string, unknown>> {
    await waitUntil(() => p.accessLog.some((l) => l.tunnel === 'websocket'), 'a websocket tunnel access-log line');
    const get = p.accessLog.find((l) => l.method === 'GET' && l.path === '/');
    assert.equal(get?.protocol, 'HTTP/2', `page request: ${JSON.stringify(get)}`);
    assert.equal(get?.status, 200);
    const tunnels = p.accessLog.filter((l) => l.tunnel === 'websocket');
    assert.equal(tunnels.length, 1, JSON.stringify(tunnels));
    const line = tunnels[0]!;
    assert.equal(line.protocol, 'HTTP/2', 'the browser used RFC 8441');
    assert.equal(line.status, 200, 'RFC 8441 answers with 200, not 101');
    assert.equal(line.path, '/ws/echo');
    assert.ok((line.bytes_in as number) > 0 && (line.bytes_out as number) > 0, JSON.stringify(line));
    const snap = p.server.snapshot().listeners[0];
    assert.equal(snap?.tls, true);
    assert.equal(snap?.connections_total, 1, 'page and WebSocket on one TLS connection');
    assert.equal(snap?.tunnels_total, 1);
    assert.equal(snap?.tunnels_open, 0);
    return line;
  }

  it('case A: RFC 8441 from Chromium to an HTTP/1.1 Upgrade at the backend', async (t) => {
    const b = await pageBackend();
    const p = await startProxy({
      upstreams: [b.addr],
      routes: [{ cluster: 'up', upgrades: ['websocket'] }],
      listener: { protocol: 'auto', tls: { cert: leaf.cert, key: leaf.key } },
      config: { access_log: { enabled: true } },
    });
    t.after(async () => {
      await p.close();
      await b.close();
    });

    const out = await runPage(t, p);
    assert.equal(out.opened, true);
    assert.equal(out.error, false);
    assert.deepEqual(out.messages, [MESSAGE]);
    assert.deepEqual(out.close, { code: CLOSE_CODE, reason: CLOSE_REASON, wasClean: true });
    // Chromium offered permessage-deflate on its CONNECT; the backend accepted it in its 101, and muxgate
    // carried the answer back in the 200 (frames are compressed end to end, muxgate does not touch them).
    assert.match(out.extensions ?? '', /^permessage-deflate/);

    assert.equal(b.pages, 1);
    assert.equal(b.h1Upgrades, 1);
    assert.deepEqual(b.closesSent, [CLOSE_CODE]);
    const h = b.lastUpgrade as Record<string, string>;
    assert.equal(h.upgrade, 'websocket');
    assert.match(h['sec-websocket-key'] ?? '', /^[A-Za-z0-9+/]{22}==$/, 'muxgate made a key for the HTTP/1.1 leg');
    assert.match(h['sec-websocket-extensions'] ?? '', /permessage-deflate/);

    const line = await tunnelLine(p);
    assert.equal(line.upstream_protocol, 'HTTP/1.1');
    assert.equal(line.upstream, b.addr);
  });

  it('case B: RFC 8441 from Chromium to an RFC 8441 stream at an h2c backend', async (t) => {
    const pages = await pageBackend();
    const ws = await wsBackend({ h2: true });
    const p = await startProxy({
      clusters: {
        page: { endpoints: [pages.addr] },
        ws: { endpoints: [ws.addr], protocol: 'http2', websocket: 'h2' },
      },
      routes: [{ match: { path: { prefix: '/ws' } }, cluster: 'ws', upgrades: ['websocket'] }, { cluster: 'page' }],
      listener: { protocol: 'auto', tls: { cert: leaf.cert, key: leaf.key } },
      config: { access_log: { enabled: true } },
    });
    t.after(async () => {
      await p.close();
      await ws.close();
      await pages.close();
    });

    const out = await runPage(t, p);
    assert.equal(out.opened, true);
    assert.equal(out.error, false);
    assert.deepEqual(out.messages, [MESSAGE]);
    assert.deepEqual(out.close, { code: CLOSE_CODE, reason: CLOSE_REASON, wasClean: true });

    assert.equal(pages.pages, 1);
    assert.equal(pages.h1Upgrades, 0);
    assert.equal(ws.h2Streams, 1);
    assert.equal(ws.h1Upgrades, 0);
    assert.equal(ws.accepted, 1);
    const h = ws.lastHeaders as Record<string, string>;
    assert.equal(h[':method'], 'CONNECT');
    assert.equal(h[':protocol'], 'websocket');
    assert.equal(h[':path'], '/ws/echo');
    assert.equal(h['sec-websocket-key'], undefined);
    await waitUntil(() => ws.closeCodes.includes(CLOSE_CODE), 'ws.closeCodes.includes(CLOSE_CODE)');

    const line = await tunnelLine(p);
    assert.equal(line.upstream_protocol, 'HTTP/2');
    assert.equal(line.upstream, ws.addr);
  });
});
