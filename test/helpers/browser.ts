import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { Browser } from 'playwright-core';
import { chromium } from 'playwright-core';

/** Debian's chromium package (installed by .ci/run): a launcher script that execs /usr/lib/chromium/chromium. */
export const CHROMIUM = '/usr/bin/chromium';

let missing: string | null | undefined;

/**
 * Null when Chromium can run here, else why not (for t.skip / describe skip messages). Checks that the
 * executable is there and answers `--version`; the answer is cached for the process.
 */
export function chromiumMissing(): string | null {
  if (missing !== undefined) return missing;
  missing = probe();
  return missing;
}

function probe(): string | null {
  if (process.platform !== 'linux') return `Chromium tests run on Linux only (${CHROMIUM})`;
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    return `${CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)`;
  }
  const run = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (run.error !== undefined) return `${CHROMIUM} --version failed: ${run.error.message}`;
  if (run.status !== 0 || !/Chromium \d/.test(run.stdout)) {
    return `${CHROMIUM} --version failed (exit ${run.status}): ${`${run.stdout}${run.stderr}`.trim().slice(0, 200)}`;
  }
  return null;
}

/**
 * Headless Chromium from CHROMIUM. As root, Chromium's own sandbox cannot start (it refuses to run
 * without --no-sandbox), so it is off; Playwright adds --no-sandbox too unless chromiumSandbox is true,
 * and says so here so the launch does not depend on that default. `args` are extra Chromium switches,
 * e.g. `--ignore-certificate-errors-spki-list=<base64 SHA-256 of the server key's SPKI>` to trust a test
 * certificate without a context's ignoreHTTPSErrors. The caller closes the browser.
 */
export async function launchChromium(args: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    headless: true,
    executablePath: CHROMIUM,
    chromiumSandbox: false,
    args: ['--no-sandbox', ...args],
  });
}
