import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its private key, as file paths. */
export interface CertPaths {
  cert: string;
  key: string;
}

/** A fresh directory under the OS temp dir; the caller removes it. */
export function tmpDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

// EC P-256: key generation is instant, where RSA 2048 costs tens of milliseconds per certificate.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A self-signed CA certificate (EC P-256) written as `ca.pem` / `ca.key` in `dir`. */
export function makeCa(dir: string, name = 'muxgate test CA'): CertPaths {
  const cert = join(dir, 'ca.pem');
  const key = join(dir, 'ca.key');
  // biome-ignore format: flags and their values read best in pairs
  openssl([
    'req', '-x509', ...EC_KEY, '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/**
 * A leaf certificate signed by `ca` for `names` (DNS names, or IP literals which become IP SANs), usable
 * for both server and client auth. Files are `<file>.pem` / `<file>.key` in `dir`, `file` defaulting to
 * the first name made filesystem-safe; calling again with the same file overwrites it with a new
 * certificate (new key, new random serial). With no names, the certificate has no subjectAltName.
 */
export function makeCert(
  dir: string,
  ca: CertPaths,
  names: string[],
  opts: { file?: string; days?: number; cn?: string } = {},
): CertPaths {
  const first = names[0] ?? opts.cn ?? 'cert';
  const base = join(dir, opts.file ?? first.replace(/[^A-Za-z0-9.-]/g, '_'));
  const cert = `${base}.pem`;
  const key = `${base}.key`;
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      ...(san === '' ? [] : [`subjectAltName=${san}`]),
      '',
    ].join('\n'),
  );
  // `req` then `x509 -req` rather than `req -x509 -CA`: OpenSSL 3.0's `req -x509` also applies the
  // config file's CA extensions (CA:TRUE), which a leaf certificate must not carry.
  openssl(['req', '-new', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${opts.cn ?? first}`]);
  // biome-ignore format: flags and their values read best in pairs
  openssl([
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-out', cert, '-extfile', ext,
    '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-days', String(opts.days ?? 30),
  ]);
  return { cert, key };
}
