/** The TLS and HTTP/2 parts of the command line: file checks at load, and the one-line flags. */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeCa, makeCert, tmpDir } from '../helpers/certs.ts';
import { muxgate, startMuxgate } from '../helpers/cli.ts';
import { curl } from '../helpers/wire.ts';

const dir = tmpDir('muxgate-tlscli-');
after(() => rmSync(dir, { recursive: true, force: true }));
const ca = makeCa(dir);
const leaf = makeCert(dir, ca, ['localhost']);

function config(tls: string): string {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    `listeners:\n  - name: web\n    address: 127.0.0.1:0\n    protocol: auto\n    tls: ${tls}\n    routes: [{ cluster: up }]\n` +
      'clusters:\n  up:\n    endpoints: ["127.0.0.1:9"]\n',
  );
  return file;
}

describe('muxgate check with TLS files', () => {
  it('resolves certificate paths relative to the config file', async () => {
    const r = await muxgate(['check', '-c', config('{ cert: localhost.pem, key: localhost.key }')], { cwd: '/' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /web {2}127\.0\.0\.1:0 {2}auto tls\(1 cert, min TLSv1\.2\)/);
  });

  it('exits 2 naming a missing certificate file', async () => {
    const r = await muxgate(['check', '-c', config('{ cert: nope.pem, key: localhost.key }')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /listeners\[0\]\.tls: cannot read certificate file ".*\/nope\.pem": ENOENT/);
  });

  it('exits 2 when start is given a key that does not match', async () => {
    const other = makeCert(dir, ca, ['other'], { file: 'other' });
    const r = await muxgate(['start', '-c', config(`{ cert: localhost.pem, key: ${other.key} }`)]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does not match certificate/);
  });
});

describe('muxgate proxy --protocol --tls-cert --tls-key', () => {
  it('serves HTTP/2 and HTTP/1.1 over TLS from one line', async (t) => {
    const m = startMuxgate([
      'proxy',
      '--listen',
      '127.0.0.1:0',
      '--to',
      '127.0.0.1:9',
      '--protocol',
      'auto',
      '--tls-cert',
      leaf.cert,
      '--tls-key',
      leaf.key,
    ]);
    t.after(() => m.stop());
    const l = await m.waitFor((x) => x.msg === 'listening');
    const port = Number(String(l.address).split(':').pop());
    const base = ['-s', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', '--cacert', ca.cert];
    const url = `https://localhost:${port}/`;
    const resolve = ['--resolve', `localhost:${port}:127.0.0.1`];
    // Nothing listens on port 9: the 502 proves the request went through TLS, HTTP/2 and routing.
    assert.equal((await curl([...base, ...resolve, '--http2', url])).stdout.toString(), '2 502');
    assert.equal((await curl([...base, ...resolve, '--http1.1', url])).stdout.toString(), '1.1 502');
  });

  it('rejects a bad --protocol and a lone --tls-cert', async () => {
    const a = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:9', '--protocol', 'spdy']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--protocol must be http1, http2 or auto/);
    const b = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:9', '--tls-cert', leaf.cert]);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /--tls-cert and --tls-key go together/);
    const c = await muxgate(['proxy', '--listen', '127.0.0.1:0', '--to', 'ftp://127.0.0.1:9']);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /unknown scheme "ftp:\/\/"/);
  });
});
