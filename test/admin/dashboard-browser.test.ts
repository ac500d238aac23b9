/**
 * The live dashboard in headless Chromium (playwright-core) against a real muxgate process: the page
 * loads without console errors, its figures match /stats within one refresh, a port budget's bar turns
 * amber past its warning ratio and red when the budget is gone, and a screenshot is saved as a test
 * artifact (test/artifacts/dashboard.png).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { echoBackend, httpBackend } from '../helpers/backend.ts';
import { chromiumMissing, launchChromium } from '../helpers/browser.ts';
import { tmpDir } from '../helpers/certs.ts';
import { portOf, startMuxgate } from '../helpers/cli.ts';

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** Ten source ports from 127.0.0.2 towards the echo backend; the bar turns amber at half of them. */
const PORT_RANGE = '20100-20109';

/** A TCP tunnel through the L4 listener, checked by an echo. */
function tunnel(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('ping\n'));
    c.once('data', () => resolve(c));
    c.once('error', reject);
  });
}

/**
 * The page's globals, as seen by functions Playwright runs in the page (functions, not strings: the
 * dashboard's CSP forbids eval). This file is type-checked without the DOM library; the casts are erased.
 */
interface PageGlobals {
  document: { body: { dataset: Record<string, string | undefined> } };
  getComputedStyle(e: unknown): { backgroundColor: string };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const v = await probe().catch((e: unknown) => {
      last = e;
      return undefined;
    });
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${String(last ?? '')})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dashboard', { skip: chromiumMissing() ?? false }, () => {
  it('shows live figures that match /stats, colours a budget by its warning ratio, screenshot saved', async () => {
    const api = await httpBackend((_req, res) => res.end('ok'));
    after(() => api.close());
    const echoBackendServer = await echoBackend();
    after(() => echoBackendServer.close());
    const echo = echoBackendServer.port;
    const file = `${tmpDir('muxgate-dash-')}/m.yaml`;
    writeFileSync(
      file,
      `access_log: { enabled: false }
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: web, address: 127.0.0.1:0, routes: [{ cluster: api }] }
  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: echo }
clusters:
  api: { endpoints: ["${api.addr}"], pool: { max_connections: 4 } }
  echo:
    endpoints: ["127.0.0.1:${echo}"]
    source_addresses: [127.0.0.2]
    source_port_range: "${PORT_RANGE}"
    budget_warn_ratio: 0.5
`,
    );
    const m = startMuxgate(['start', '-c', file]);
    after(() => m.stop());
    const admin = portOf(await m.waitFor((l) => l.msg === 'admin listening'));
    await m.waitFor((l) => l.msg === 'listening' && l.listener === 'db');
    const port = (name: string) => portOf(m.lines.find((l) => l.msg === 'listening' && l.listener === name)!);
    const stats = async () =>
      (await (await fetch(`http://127.0.0.1:${admin}/stats`)).json()) as {
        listeners: { name: string; connections_open: number }[];
      };

    const browser = await launchChromium();
    after(() => browser.close());
    const page: Page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const problems: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    await page.goto(`http://127.0.0.1:${admin}/`);
    await page.waitForFunction(
      () => Number((globalThis as unknown as PageGlobals).document.body.dataset.updates ?? 0) >= 2,
    );

    for (let i = 0; i < 5; i++) await (await fetch(`http://127.0.0.1:${port('web')}/`)).text();
    const tunnels: net.Socket[] = [];
    after(() => {
      for (const c of tunnels) c.destroy();
    });
    for (let i = 0; i < 3; i++) tunnels.push(await tunnel(port('db')));
    const budget = page.locator('[data-budget^="127.0.0.2>"] .bar');

    // The page's figures are /stats's within one refresh (1 s).
    const shown = (name: string) =>
      page.locator(`[data-listener="${name}"] [data-field="connections_open"]`).textContent();
    await waitFor('the db listener connections on the page to match /stats', async () => {
      const want = (await stats()).listeners.find((l) => l.name === 'db')!.connections_open;
      return want === 3 && (await shown('db')) === String(want) ? true : undefined;
    });
    assert.equal(await budget.getAttribute('data-level'), 'ok', '3 of 10 ports: under the 0.5 warning ratio');
    assert.equal(await page.locator('[data-listener="db"] [data-tunnel="tcp"]').textContent(), 'tcp 3 ');

    for (let i = 0; i < 3; i++) tunnels.push(await tunnel(port('db')));
    await waitFor('the budget bar to turn amber', async () =>
      (await budget.getAttribute('data-level')) === 'warn' ? true : undefined,
    );
    assert.match((await budget.getAttribute('class')) ?? '', /\bwarn\b/);
    const fill = await budget.evaluate(
      (e) => (globalThis as unknown as PageGlobals).getComputedStyle(e.querySelector('i')).backgroundColor,
    );
    assert.equal(fill, 'rgb(224, 165, 38)', 'amber');

    for (let i = 0; i < 4; i++) tunnels.push(await tunnel(port('db')));
    await waitFor('the budget bar to turn red', async () =>
      (await budget.getAttribute('data-level')) === 'bad' ? true : undefined,
    );
    await waitFor('a request rate above zero', async () => {
      await (await fetch(`http://127.0.0.1:${port('web')}/`)).text();
      const v = await page.locator('[data-figure="request_rate"]').textContent();
      return v !== null && v !== '–' && Number(v) > 0 ? true : undefined;
    });
    const endpoint = page.locator(`[data-endpoint="api/${api.addr}"] [data-field="connections"]`);
    assert.match((await endpoint.textContent()) ?? '', /^1 \/ 4$/);
    const echoEndpoint = page.locator(`[data-endpoint="echo/127.0.0.1:${echo}"] [data-field="active"]`);
    assert.equal(await echoEndpoint.textContent(), '10', 'the 10 tunnels, in flight on the echo endpoint');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true });
    assert.deepEqual(problems, []);
  });
});
