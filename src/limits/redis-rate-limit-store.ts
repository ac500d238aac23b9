/**
 * Token buckets in Redis, shared by every proxy instance that points at the same server.
 *
 * One Lua script per check makes refill-and-take atomic, so concurrent instances never both spend
 * the same token. The script reads Redis's own clock (TIME), never the proxy's, so instances whose
 * clocks disagree still refill one bucket at one rate. Each bucket key expires (PEXPIRE) when the
 * bucket would be full again: a missing key is a full bucket, so idle keys cost Redis nothing.
 *
 * Never hanging the caller: commands are not queued while disconnected (`disableOfflineQueue`), a
 * take made then rejects at once; a take made while connected rejects after `commandTimeoutMs`
 * if no reply came (a stopped or partitioned server), the late reply being discarded. Both reject
 * with a `RateLimitStoreUnavailable` (code rate_limit_store_unavailable); the caller decides
 * whether to let the request through. The client reconnects by itself with a bounded backoff.
 *
 * State for logs: 'down' when the connection drops or a take fails, 'up' when the connection is
 * ready or a take succeeds; `onStateChange` hears each change once, so a caller logs one line per
 * outage rather than one per request.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createClient, ErrorReply, type RedisClientOptions } from 'redis';
import {
  type AsyncRateLimitStore,
  bucketId,
  type RateDecision,
  RateLimitStoreUnavailable,
  type RateRule,
} from './rate-limit-store.ts';

export interface RedisRateLimitStoreOptions {
  /** `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) or `unix:///path/to.sock[?db=N]`. */
  url: string;
  /** Prepended to every bucket key (default `muxgate:rl:`). */
  prefix?: string;
  /** Bound on one connection attempt (default 1000 ms). */
  connectTimeoutMs?: number;
  /** Bound on one take while connected (default 200 ms). */
  commandTimeoutMs?: number;
  /** Reconnect backoff: first delay, doubled per failed attempt up to the max (defaults 50 / 2000 ms). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export type RedisStoreState = 'connecting' | 'up' | 'down';
export type StateListener = (state: 'up' | 'down', cause?: unknown) => void;

export const DEFAULT_PREFIX = 'muxgate:rl:';

/**
 * KEYS[1] the bucket, ARGV rate (tokens/s), burst, cost. Returns {allowed 0/1, remaining,
 * retry-after s, reset s}. Mirrors token-bucket.ts operation for operation (same doubles, same
 * order), so both stores answer alike. Numbers are stored with %.17g so they read back exactly;
 * the TTL is formatted with %.0f because Lua prints large numbers as 1e+15, which PEXPIRE refuses.
 */
export const BUCKET_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local eps = 1e-9
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local tokens = burst
local at = now
local stored = redis.call('HMGET', KEYS[1], 't', 'a')
if stored[1] and stored[2] then
  tokens = tonumber(stored[1])
  at = tonumber(stored[2])
  if now > at then
    tokens = math.min(burst, tokens + ((now - at) * rate) / 1000)
    at = now
  elseif tokens > burst then
    tokens = burst
  end
end
local allowed = 0
if tokens + eps >= cost then
  allowed = 1
  tokens = math.max(0, tokens - cost)
end
local missing = cost - tokens
local retry = 0
if missing > eps then retry = math.max(1, math.ceil(missing / rate)) end
local empty = burst - tokens
if empty > eps then
  local ttl = math.ceil(math.max(0, at - now) + (empty * 1000) / rate)
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'a', string.format('%.17g', at))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
  return {allowed, math.floor(tokens + eps), retry, math.ceil(empty / rate)}
end
redis.call('DEL', KEYS[1])
return {allowed, math.floor(tokens + eps), retry, 0}
`;

/** EVALSHA needs no round trip to learn the digest: it is the script's SHA-1. */
export const BUCKET_SCRIPT_SHA = createHash('sha1').update(BUCKET_SCRIPT).digest('hex');

type Client = ReturnType<typeof createClient>;

export class RedisRateLimitStore implements AsyncRateLimitStore {
  readonly sync = false;
  private readonly client: Client;
  private readonly prefix: string;
  private readonly commandTimeoutMs: number;
  /** Where Redis is, for error messages; never the password. */
  private readonly where: string;
  private current: RedisStoreState = 'connecting';
  private readonly listeners: StateListener[] = [];
  private closed = false;

  /** Starts connecting in the background; takes reject until the connection is ready. */
  constructor(opts: RedisRateLimitStoreOptions) {
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.commandTimeoutMs = positiveMs('commandTimeoutMs', opts.commandTimeoutMs ?? 200);
    const connectTimeoutMs = positiveMs('connectTimeoutMs', opts.connectTimeoutMs ?? 1000);
    const minMs = positiveMs('reconnectMinMs', opts.reconnectMinMs ?? 50);
    const maxMs = Math.max(minMs, positiveMs('reconnectMaxMs', opts.reconnectMaxMs ?? 2000));
    const target = redisTarget(opts.url);
    this.where = target.where;
    this.client = createClient({
      ...target.options,
      socket: {
        ...target.options.socket,
        connectTimeout: connectTimeoutMs,
        // Never give up: the store must recover by itself when Redis comes back. The jitter keeps
        // a fleet of proxies from reconnecting in lockstep.
        reconnectStrategy: (retries) => Math.round(Math.min(maxMs, minMs * 2 ** retries) * (0.5 + Math.random() / 2)),
      },
      name: 'muxgate-rate-limit',
      disableOfflineQueue: true,
      // rejectInFlight: the timeout also covers a command already sent and waiting for its reply,
      // which is the case of a server that stopped answering.
      commandOptions: { timeout: this.commandTimeoutMs, rejectInFlight: true },
      // No Redis Enterprise maintenance handshake: one less round trip and failure mode per connect.
      maintNotifications: 'disabled',
    });
    this.client.on('ready', () => {
      this.setState('up');
      // Warm the script cache; EVALSHA falls back to EVAL anyway if this loses a race.
      this.client.scriptLoad(BUCKET_SCRIPT).catch(() => {});
    });
    this.client.on('error', (err: unknown) => this.setState('down', err));
    // connect() resolves on the first ready connection and retries until then; failures arrive as
    // 'error' events above.
    this.client.connect().catch(() => {});
  }

  get state(): RedisStoreState {
    return this.current;
  }

  /** Hears every change between 'up' and 'down' once; returns the unsubscribe function. Must not throw. */
  onStateChange(listener: StateListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  async take(key: string, rule: RateRule): Promise<RateDecision> {
    if (this.closed) throw new RateLimitStoreUnavailable('the rate-limit store is closed');
    if (!this.client.isReady) throw new RateLimitStoreUnavailable(`Redis at ${this.where} is not connected`);
    const keys = [this.prefix + bucketId(key, rule)];
    const args = [String(rule.rate), String(rule.burst), '1'];
    let reply: unknown;
    try {
      reply = await this.run(keys, args);
    } catch (err) {
      this.setState('down', err);
      throw new RateLimitStoreUnavailable(`Redis at ${this.where}: ${messageOf(err)}`, err);
    }
    const decision = toDecision(reply);
    if (decision === null) throw new RateLimitStoreUnavailable(`Redis at ${this.where}: unexpected script reply`);
    this.setState('up');
    return decision;
  }

  /** Closes the connection, waiting at most one command timeout for takes in flight. No 'down' follows. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.length = 0;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((r) => {
      timer = setTimeout(r, this.commandTimeoutMs);
    });
    try {
      await Promise.race([this.client.close(), waited]);
    } catch {
      // Closing a client that was reconnecting rejects; destroy() below ends it either way.
    } finally {
      clearTimeout(timer);
    }
    this.client.destroy();
  }

  private async run(keys: string[], args: string[]): Promise<unknown> {
    const started = performance.now();
    try {
      return await this.client.evalSha(BUCKET_SCRIPT_SHA, { keys, arguments: args });
    } catch (err) {
      if (!(err instanceof ErrorReply && err.message.startsWith('NOSCRIPT'))) throw err;
    }
    // Redis restarted or its script cache was flushed: EVAL runs the script and caches it again,
    // within what is left of this take's time.
    const left = Math.max(1, Math.ceil(this.commandTimeoutMs - (performance.now() - started)));
    return await this.client
      .withCommandOptions({ timeout: left, rejectInFlight: true })
      .eval(BUCKET_SCRIPT, { keys, arguments: args });
  }

  private setState(state: 'up' | 'down', cause?: unknown): void {
    if (this.closed || this.current === state) return;
    this.current = state;
    for (const listener of this.listeners.slice()) listener(state, cause);
  }
}

interface RedisTarget {
  options: Pick<RedisClientOptions, 'url' | 'database'> & { socket?: { path: string; tls: false } };
  where: string;
}

/**
 * node-redis takes redis:// and rediss:// URLs itself; a unix:///path URL becomes `socket.path`
 * here, with an optional ?db=N.
 */
export function redisTarget(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`invalid Redis URL ${JSON.stringify(url)}`);
  }
  if (parsed.protocol === 'redis:' || parsed.protocol === 'rediss:')
    return { options: { url }, where: `${parsed.protocol}//${parsed.host}` };
  if (parsed.protocol !== 'unix:') throw new TypeError(`Redis URL must be redis://, rediss:// or unix://, got ${url}`);
  const path = decodeURIComponent(parsed.pathname);
  if (parsed.host !== '' || parsed.username !== '' || !path.startsWith('/') || path === '/')
    throw new TypeError(`a unix Redis URL names an absolute socket path (unix:///path/to.sock), got ${url}`);
  const db = parsed.searchParams.get('db');
  const database = db === null ? undefined : Number(db);
  if (database !== undefined && !(Number.isInteger(database) && database >= 0))
    throw new TypeError(`invalid db in Redis URL ${url}`);
  return {
    options: database === undefined ? { socket: { path, tls: false } } : { socket: { path, tls: false }, database },
    where: `unix:${path}`,
  };
}

function toDecision(reply: unknown): RateDecision | null {
  if (!Array.isArray(reply) || reply.length !== 4 || !reply.every((n) => typeof n === 'number')) return null;
  const [allowed, remaining, retryAfterSeconds, resetSeconds] = reply as [number, number, number, number];
  return { allowed: allowed === 1, remaining, retryAfterSeconds, resetSeconds };
}

/** Timeouts reach AbortSignal.timeout inside node-redis, which takes only whole milliseconds. */
function positiveMs(name: string, ms: number): number {
  if (!(Number.isInteger(ms) && ms >= 1)) throw new RangeError(`${name} must be a whole number of ms >= 1, got ${ms}`);
  return ms;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}
