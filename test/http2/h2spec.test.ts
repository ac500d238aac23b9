/**
 * HTTP/2 conformance with h2spec (github.com/summerwind/h2spec, see ../shared/tools/README.md) against
 * muxgate's listeners, each proxying to an HTTP/1.1 backend: h2c (`protocol: http2`), cleartext
 * `auto` (preface sniffing) and TLS with ALPN h2, in the default and the strict mode. Every case must
 * pass; a failure lists h2spec's failing cases. Skipped, saying why, where the binary is missing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { httpBackend } from '../helpers/backend.ts';
import { type CertPaths, makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { startProxy } from '../helpers/proxy.ts';

const H2SPEC = resolve(import.meta.dirname, '../../../shared/tools/h2spec');
/**
 * Per-case timeout in seconds (h2spec's default is 2): the machine is loaded while the suite runs. A
 * passing case ends on the server's answer, not on the timeout; each failing one costs this much.
 */
const CASE_TIMEOUT = 5;
const CASES = 146;
const STRICT_CASES = 147;

let certs: CertPaths | null = null;
function serverCert(): CertPaths {
  if (certs === null) {
    const dir = tmpDir('muxgate-h2spec-');
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    certs = makeCert(dir, makeCa(dir), ['localhost', '127.0.0.1']);
  }
  return certs;
}

interface H2specRun {
  code: number;
  output: string;
}

function h2spec(args: string[]): Promise<H2specRun> {
  return new Promise((resolveRun, reject) => {
    execFile(H2SPEC, args, { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(err);
        return;
      }
      resolveRun({ code: err === null ? 0 : (err.code as number), output: `${stdout}${stderr}` });
    });
  });
}

/** h2spec's output without its colour codes. */
const plain = (output: string) => output.replace(/\x1b\[[0-9;]*m/g, '');

/** h2spec's summary line, "146 tests, 146 passed, 0 skipped, 0 failed". */
function summary(output: string): { tests: number; passed: number; skipped: number; failed: number } | null {
  const m = /(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed/.exec(plain(output));
  if (m === null) return null;
  return { tests: Number(m[1]), passed: Number(m[2]), skipped: Number(m[3]), failed: Number(m[4]) };
}

/** The "Failures:" section of h2spec's output, or its last lines when there is none. */
function failures(output: string): string {
  const text = plain(output);
  const i = text.indexOf('Failures:');
  return i === -1 ? text.split('\n').slice(-40).join('\n') : text.slice(i);
}

const targets: { name: string; listener: () => Record<string, unknown>; tls: boolean }[] = [
  { name: 'h2c (protocol http2)', listener: () => ({ protocol: 'http2' }), tls: false },
  { name: 'cleartext auto (preface sniffing)', listener: () => ({ protocol: 'auto' }), tls: false },
  {
    name: 'TLS (protocol http2)',
    listener: () => {
      const c = serverCert();
      return { protocol: 'http2', tls: { cert: c.cert, key: c.key } };
    },
    tls: true,
  },
  {
    name: 'TLS (protocol auto, ALPN h2)',
    listener: () => {
      const c = serverCert();
      return { protocol: 'auto', tls: { cert: c.cert, key: c.key } };
    },
    tls: true,
  },
];

describe('h2spec conformance', () => {
  for (const target of targets) {
    for (const strict of [false, true]) {
      const expected = strict ? STRICT_CASES : CASES;
      const title = `${target.name}${strict ? ', strict mode' : ''}: ${expected}/${expected}`;
      // Failing cases each wait out CASE_TIMEOUT: more time than the suite's default per test.
      it(title, { timeout: 600_000 }, async (t: TestContext) => {
        if (!existsSync(H2SPEC)) {
          t.skip('h2spec not found at ../shared/tools/h2spec');
          return;
        }
        const up = await httpBackend((req, res) => {
          req.resume();
          req.on('end', () => res.end('hello from the backend\n'));
        });
        t.after(() => up.close());
        const p = await startProxy({ upstreams: [up.addr], listener: target.listener() });
        t.after(() => p.close());
        const args = ['-h', '127.0.0.1', '-p', String(p.port), '-o', String(CASE_TIMEOUT)];
        if (target.tls) args.push('-t', '-k');
        if (strict) args.push('-S');
        const run = await h2spec(args);
        const s = summary(run.output);
        assert.ok(s !== null, `no summary line in h2spec's output:\n${run.output.slice(-4000)}`);
        assert.equal(
          `${s.tests} tests, ${s.passed} passed`,
          `${expected} tests, ${expected} passed`,
          `h2spec ${args.join(' ')}:\n${failures(run.output)}`,
        );
        assert.equal(run.code, 0, `h2spec exit code ${run.code}`);
      });
    }
  }
});
