import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Logger } from '../core/log.ts';

/** One certificate of a TLS listener: PEM files (the cert file may carry the chain after the leaf). */
export interface CertFile {
  cert: string;
  key: string;
  /** Names this certificate answers for; default: its subjectAltName DNS entries, else its CN. */
  serverNames?: string[] | undefined;
  /** Served to clients without SNI or with a name no certificate claims; default: the first entry. */
  default?: boolean | undefined;
}

export interface CertStoreOptions {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** ALPN protocols in the listener's order of preference; empty = no ALPN. */
  alpn: string[];
  /** How often attached stores re-read their files; 0 = never. */
  reloadIntervalMs: number;
}

/** A certificate or key that cannot be used; `file` is the offending path. */
export class CertStoreError extends Error {
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CertStoreError';
    this.file = file;
  }
}

/** The bytes last read for an entry, or why reading failed. */
type Snapshot = { cert: Buffer; key: Buffer } | CertStoreError;

interface Loaded {
  pem: { cert: Buffer; key: Buffer };
  /** Lower-cased; "*.x" entries are wildcards. */
  names: string[];
  context: tls.SecureContext;
}

interface Entry {
  readonly file: CertFile;
  current: Loaded;
  /** What the last poll saw, loadable or not, so one bad write is reported once rather than every poll. */
  seen: Snapshot;
}

interface Index {
  exact: Map<string, tls.SecureContext>;
  /** Keyed by the part after "*.". */
  wildcard: Map<string, tls.SecureContext>;
  fallback: tls.SecureContext;
}

/**
 * The certificates of one TLS listener, chosen per connection by SNI and reloaded from disk when their
 * files change. When two entries claim the same name, the earlier entry wins. Each entry reloads on its
 * own: a file that fails to load is logged and its previous certificate stays in service.
 * Writers should replace files by rename: a poll that catches a half-written file counts as a failed
 * reload (and the next poll picks up the finished file).
 */
export class CertStore {
  private readonly entries: Entry[];
  private readonly defaultEntry: Entry;
  private readonly opts: CertStoreOptions;
  private readonly log: Logger;
  private index: Index;
  private readonly servers = new Set<tls.Server>();
  private timer: NodeJS.Timeout | undefined;
  private reloadCount = 0;
  private failureCount = 0;

  private constructor(entries: Entry[], opts: CertStoreOptions, log: Logger) {
    this.entries = entries;
    this.defaultEntry = entries.find((e) => e.file.default === true) ?? entries[0]!;
    this.opts = opts;
    this.log = log;
    this.index = this.buildIndex();
  }

  /** Reads and validates every file now; throws CertStoreError naming the first bad one. */
  static load(files: CertFile[], opts: CertStoreOptions, log: Logger): CertStore {
    if (files.length === 0) throw new Error('a TLS listener needs at least one certificate');
    const entries = files.map((file): Entry => {
      const seen = readSnapshot(file);
      if (seen instanceof CertStoreError) throw seen;
      return { file, current: build(file, seen, opts.minVersion), seen };
    });
    return new CertStore(entries, opts, log);
  }

  /** Successful certificate reloads so far (one per entry reloaded). */
  get reloads(): number {
    return this.reloadCount;
  }

  /** Changes that could not be loaded so far. */
  get reloadFailures(): number {
    return this.failureCount;
  }

  /**
   * Options for tls.createServer. Pass them unchanged and call attach() right after: a reload of the
   * default certificate rebuilds the server's context from these same settings.
   */
  serverOptions(): tls.TlsOptions {
    return {
      ...this.defaultContextOptions(),
      SNICallback: (servername, cb) => cb(null, this.contextFor(servername)),
      // Node picks the first of the server's protocols that the client offers, so this order is the
      // listener's preference whatever order the client sends.
      ALPNProtocols: this.opts.alpn.length > 0 ? [...this.opts.alpn] : undefined,
    };
  }

  /** Exact name, then a wildcard covering exactly one more label, then the default. Case-insensitive. */
  contextFor(servername: string): tls.SecureContext {
    // Some clients send the absolute form "example.com."; it names the same host.
    const name = servername.toLowerCase().replace(/\.$/, '');
    const exact = this.index.exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.index.wildcard.get(name.slice(dot + 1));
      if (wild !== undefined) return wild;
    }
    return this.index.fallback;
  }

  /** Keeps `server`'s certificates current: polls the files and swaps contexts for new connections only. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    if (this.timer !== undefined || this.opts.reloadIntervalMs <= 0) return;
    this.timer = setInterval(() => this.poll(), this.opts.reloadIntervalMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.servers.clear();
  }

  private poll(): void {
    let changed = false;
    for (const entry of this.entries) {
      const now = readSnapshot(entry.file);
      if (sameSnapshot(now, entry.seen)) continue;
      entry.seen = now;
      try {
        if (now instanceof CertStoreError) throw now;
        entry.current = build(entry.file, now, this.opts.minVersion);
      } catch (err) {
        if (!(err instanceof CertStoreError)) throw err;
        this.failureCount++;
        this.log.error(
          { file: err.file, reason: err.message },
          'certificate reload failed, still serving the previous one',
        );
        continue;
      }
      changed = true;
      this.reloadCount++;
      this.log.info({ cert: entry.file.cert, names: entry.current.names }, 'certificate reloaded');
      // Clients without SNI never reach SNICallback: they get the server's own context.
      if (entry === this.defaultEntry) {
        for (const server of this.servers) {
          // Keeping the ticket keys keeps tickets issued before the reload valid for resumption.
          server.setSecureContext({ ...this.defaultContextOptions(), ticketKeys: server.getTicketKeys() });
        }
      }
    }
    if (changed) this.index = this.buildIndex();
  }

  private defaultContextOptions(): tls.SecureContextOptions {
    // setSecureContext resets every context setting it is not given, minVersion included.
    const { pem } = this.defaultEntry.current;
    return { cert: pem.cert, key: pem.key, minVersion: this.opts.minVersion };
  }

  private buildIndex(): Index {
    const index: Index = { exact: new Map(), wildcard: new Map(), fallback: this.defaultEntry.current.context };
    for (const { current } of this.entries) {
      for (const name of current.names) {
        const [map, key] = name.startsWith('*.') ? [index.wildcard, name.slice(2)] : [index.exact, name];
        if (!map.has(key)) map.set(key, current.context);
      }
    }
    return index;
  }
}

function readSnapshot(file: CertFile): Snapshot {
  const read = (path: string, what: string): Buffer | CertStoreError => {
    try {
      return readFileSync(path);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return new CertStoreError(path, `cannot read ${what} file "${path}": ${reason}`, { cause: err });
    }
  };
  const cert = read(file.cert, 'certificate');
  if (cert instanceof CertStoreError) return cert;
  const key = read(file.key, 'key');
  if (key instanceof CertStoreError) return key;
  return { cert, key };
}

function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  if (a instanceof CertStoreError || b instanceof CertStoreError) {
    return a instanceof CertStoreError && b instanceof CertStoreError && a.message === b.message;
  }
  return a.cert.equals(b.cert) && a.key.equals(b.key);
}

/** Validates one certificate and key, naming the file at fault, and builds its context. */
function build(file: CertFile, pem: { cert: Buffer; key: Buffer }, minVersion: tls.SecureVersion): Loaded {
  const fail = (path: string, message: string, cause?: unknown): CertStoreError =>
    new CertStoreError(path, cause === undefined ? message : `${message}: ${(cause as Error).message}`, { cause });
  // X509Certificate also takes DER, which the TLS context would reject later with a vaguer message.
  if (!pem.cert.includes('-----BEGIN CERTIFICATE-----'))
    throw fail(file.cert, `"${file.cert}" is not a PEM certificate`);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem.cert);
  } catch (err) {
    throw fail(file.cert, `"${file.cert}" is not a PEM certificate`, err);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem.key);
  } catch (err) {
    throw fail(file.key, `"${file.key}" is not a PEM private key`, err);
  }
  if (!x509.checkPrivateKey(key)) throw fail(file.key, `"${file.key}" does not match certificate "${file.cert}"`);
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert: pem.cert, key: pem.key, minVersion });
  } catch (err) {
    throw fail(file.cert, `cannot use certificate "${file.cert}" with key "${file.key}"`, err);
  }
  const names = (file.serverNames ?? namesOf(x509)).map((n) => n.toLowerCase());
  return { pem, names, context };
}

function namesOf(x509: X509Certificate): string[] {
  const dns = (x509.subjectAltName ?? '')
    .split(', ')
    .filter((san) => san.startsWith('DNS:'))
    .map((san) => san.slice(4));
  if (dns.length > 0) return dns;
  const cn = /^CN=(.+)$/m.exec(x509.subject)?.[1];
  return cn === undefined ? [] : [cn];
}
