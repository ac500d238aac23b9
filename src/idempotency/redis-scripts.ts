/**
 * The Lua scripts of the Redis store. Each touches one key (`KEYS[1]`, the scope's key) and runs
 * atomically, so two proxies racing on a key see one outcome. Run by SHA (EVALSHA) with EVAL as the
 * fallback after a restart or SCRIPT FLUSH emptied the script cache.
 *
 * A key holds either a lock, 'L' .. fingerprint .. nonce, with `lock_ttl`, or a response (see
 * response-codec.ts), 'R' .. fingerprint .. encoded response, with `ttl`. Bytes 2-65 are the
 * fingerprint in both. The caller's token is the lock value without its 'L'.
 */
import { createHash } from 'node:crypto';

export interface LuaScript {
  readonly source: string;
  readonly sha1: string;
}

function lua(source: string): LuaScript {
  return { source, sha1: createHash('sha1').update(source).digest('hex') };
}

/** `begin`'s integer replies; a replay is the stored value itself (a bulk string). */
export const BEGIN_RUN = 0;
export const BEGIN_IN_FLIGHT = 1;
export const BEGIN_MISMATCH = 2;

/**
 * ARGV: lock value, lock_ttl (ms), fingerprint. Takes the lock when the key is free (SET NX PX), else
 * classifies what holds it. Redis freezes time inside a script, so a key that refused the SET is still
 * there for the GET.
 */
export const BEGIN = lua(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ${BEGIN_RUN} end
local held = redis.call('GET', KEYS[1])
if string.sub(held, 2, 65) ~= ARGV[3] then return ${BEGIN_MISMATCH} end
if string.sub(held, 1, 1) == 'L' then return ${BEGIN_IN_FLIGHT} end
return held
`);

/** ARGV: lock value, response value, ttl (ms). Replaces the lock only if it is still the caller's. */
export const COMPLETE = lua(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`);

/** ARGV: lock value. Deletes the lock only if it is still the caller's. */
export const RELEASE = lua(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`);
