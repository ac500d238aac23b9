/**
 * The Idempotency-Key store shared by several proxy processes, in Redis (node-redis v6). One key per
 * scope, `<key_prefix><scope key>`, holding a lock or a response (layout in redis-scripts.ts); every
 * operation is one script, one round trip.
 *
 * Redis must never stall a request: commands are not queued while disconnected
 * (`disableOfflineQueue`), and each one gives up after `command_timeout`, sent or not
 * (`rejectInFlight`), rejecting with `idempotency_store_unavailable`. A `begin` that timed out after it
 * was sent may still take the lock on the server: a retry then sees `in_flight` until `lock_ttl`.
 *
 * The client reconnects by itself, forever, with a backoff capped at `reconnect_max_delay`. The first
 * socket error or failed command of an outage reports `down`; the connection coming back ('ready') or
 * any command succeeding reports `up`.
 *
 * Redis should run with `maxmemory-policy noeviction` or a `volatile-*` policy (every key here has a
 * TTL); an `allkeys-*` policy may evict a live lock.
 */
import { randomUUID } from 'node:crypto';
import { createClient, ErrorReply, RESP_TYPES, type RedisArgument } from 'redis';
import { assertFingerprint, FINGERPRINT_LENGTH } from './fingerprint.ts';
import type { BeginResult, IdempotencyStore, StoredResponse, StoreStateListener } from './idempotency-store.ts';
import { responseTooLarge, storeUnavailable } from './idempotency-store-error.ts';
import {
  BEGIN,
  BEGIN_IN_FLIGHT,
  BEGIN_MISMATCH,
  BEGIN_RUN,
  COMPLETE,
  type LuaScript,
  RELEASE,
} from './redis-scripts.ts';
import { decodeResponse, encodeResponse } from './response-codec.ts';
import { StoreAvailability } from './store-availability.ts';
import { type StoreLimits, storeLimits } from './store-limits.ts';

export interface RedisIdempotencyStoreOptions extends Partial<StoreLimits> {
  /** `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) or `unix:///path/to/redis.sock`. */
  url: string;
  /** Prepended to every key, so several uses can share one Redis (`key_prefix`). */
  keyPrefix?: string;
  /** A command not answered within this fails as unavailable (`command_timeout`). */
  commandTimeoutMs?: number;
  /** A TCP (or unix socket) connect not done within this is retried. */
  connectTimeoutMs?: number;
  /** The longest wait between reconnect attempts (`reconnect_max_delay`). */
  reconnectMaxDelayMs?: number;
}

export const DEFAULT_KEY_PREFIX = 'muxgate:idem:';
export const DEFAULT_COMMAND_TIMEOUT_MS = 200;
const DEFAULT_CONNECT_TIMEOUT_MS = 1_000;
const DEFAULT_RECONNECT_MAX_DELAY_MS = 2_000;
const RECONNECT_BASE_MS = 50;
const RECONNECT_JITTER_MS = 50;
/**
 * Commands written and not yet answered. A command that timed out stays queued until its reply (node-redis
 * keeps replies in order), so against a Redis that stopped answering without closing the connection the
 * queue would grow with every request; past this many, commands fail at once.
 */
const MAX_QUEUED_COMMANDS = 10_000;
/** How long `close` waits for commands already sent before dropping the connection. */
const CLOSE_GRACE_MS = 1_000;

const URL_PATTERN = /^(?:rediss?|unix):\/\//;

/** Bulk strings as Buffers: stored bodies are binary. */
const BUFFER_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

type Client = ReturnType<typeof createClient>;

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly limits: StoreLimits;
  private readonly keyPrefix: string;
  private readonly client: Client;
  private readonly availability = new StoreAvailability();
  private readonly connected: Promise<void>;
  private closed = false;

  constructor(opts: RedisIdempotencyStoreOptions) {
    if (!URL_PATTERN.test(opts.url)) {
      throw new TypeError(`Redis URL must start with redis://, rediss:// or unix:// (got ${JSON.stringify(opts.url)})`);
    }
    this.limits = storeLimits(opts);
    this.keyPrefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    const commandTimeoutMs = positive('commandTimeoutMs', opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
    const maxDelay = positive('reconnectMaxDelayMs', opts.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS);
    // node-redis maps the URL to its socket options (unix:// to `socket: { path }`) and merges these in.
    this.client = createClient({
      url: opts.url,
      socket: {
        connectTimeout: positive('connectTimeoutMs', opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS),
        // Never gives up (a number, never false): the store must recover without being recreated.
        reconnectStrategy: (retries) =>
          Math.min(RECONNECT_BASE_MS * 2 ** retries, maxDelay) + Math.floor(Math.random() * RECONNECT_JITTER_MS),
      },
      disableOfflineQueue: true,
      commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
      commandOptions: { timeout: commandTimeoutMs, rejectInFlight: true },
      // Redis Enterprise's maintenance notices: one handshake command less against plain Redis.
      maintNotifications: 'disabled',
    });
    // Without an 'error' listener the client's errors would be thrown by its EventEmitter.
    this.client.on('error', (err: Error) => this.availability.down(err));
    this.client.on('ready', () => this.availability.up());
    // Resolves on the first connection; the client keeps trying until then, or until close().
    this.connected = this.client.connect().then(() => {});
    this.connected.catch(() => {});
  }

  /** Resolves once first connected. Not needed before use (operations fail fast until then); for tests and startup. */
  ready(): Promise<void> {
    return this.connected;
  }

  async begin(scopeKey: string, fingerprint: string): Promise<BeginResult> {
    assertFingerprint(fingerprint);
    const token = fingerprint + randomUUID();
    const reply = await this.run(BEGIN, scopeKey, [`L${token}`, String(this.limits.lockTtlMs), fingerprint]);
    if (reply === BEGIN_RUN) return { kind: 'run', token };
    if (reply === BEGIN_IN_FLIGHT) return { kind: 'in_flight' };
    if (reply === BEGIN_MISMATCH) return { kind: 'mismatch' };
    try {
      if (!Buffer.isBuffer(reply)) throw new Error(`Unexpected reply to begin: ${String(reply)}`);
      return { kind: 'replay', response: decodeResponse(reply) };
    } catch (err) {
      // Not a Redis outage: no state change, but the caller treats it as one request the store could not serve.
      throw storeUnavailable(err);
    }
  }

  async complete(scopeKey: string, token: string, response: StoredResponse): Promise<boolean> {
    if (response.body.length > this.limits.maxBodyBytes) {
      throw responseTooLarge(response.body.length, this.limits.maxBodyBytes);
    }
    // The token starts with the fingerprint its lock was taken for: the response is stored under it.
    if (token.length <= FINGERPRINT_LENGTH) return false;
    const value = encodeResponse(token.slice(0, FINGERPRINT_LENGTH), response);
    return (await this.run(COMPLETE, scopeKey, [`L${token}`, value, String(this.limits.ttlMs)])) === 1;
  }

  async release(scopeKey: string, token: string): Promise<boolean> {
    return (await this.run(RELEASE, scopeKey, [`L${token}`])) === 1;
  }

  onStateChange(listener: StoreStateListener): () => void {
    return this.availability.subscribe(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.availability.clear();
    // close() waits for the replies of commands already sent; a Redis that stopped answering gets dropped.
    const timer = setTimeout(() => this.client.destroy(), CLOSE_GRACE_MS);
    try {
      await this.client.close();
    } catch {
      this.client.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(script: LuaScript, scopeKey: string, args: RedisArgument[]): Promise<unknown> {
    if (this.closed) throw storeUnavailable(new Error('The idempotency store is closed'));
    const key = this.keyPrefix + scopeKey;
    try {
      let reply: unknown;
      try {
        reply = await this.client.sendCommand(['EVALSHA', script.sha1, '1', key, ...args], BUFFER_REPLIES);
      } catch (err) {
        if (!(err instanceof ErrorReply && err.message.startsWith('NOSCRIPT'))) throw err;
        // EVAL also puts the script back in the cache for the next EVALSHA.
        reply = await this.client.sendCommand(['EVAL', script.source, '1', key, ...args], BUFFER_REPLIES);
      }
      this.availability.up();
      return reply;
    } catch (err) {
      const cause = err instanceof Error ? err : new Error(String(err));
      if (!this.closed) this.availability.down(cause);
      throw storeUnavailable(cause);
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  return value;
}
