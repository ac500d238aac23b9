import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import type { AdminConfig } from '../config/schema.ts';

/**
 * The admin bearer token from the config: `token`, else the contents of `token_file`, else the
 * environment variable `token_env`. A file or variable that is named but missing or empty is an error
 * at start: the operator asked for a token, the admin API must not run open.
 */
export function adminToken(admin: AdminConfig, env: NodeJS.ProcessEnv = process.env): string | null {
  if (admin.token !== undefined) return admin.token;
  if (admin.token_file !== undefined) {
    let text: string;
    try {
      text = readFileSync(admin.token_file, 'utf8');
    } catch (err) {
      throw new Error(`admin.token_file ${admin.token_file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const token = text.trim();
    if (token === '') throw new Error(`admin.token_file ${admin.token_file} is empty`);
    return token;
  }
  if (admin.token_env !== undefined) {
    const token = env[admin.token_env]?.trim() ?? '';
    if (token === '') throw new Error(`admin.token_env: the environment variable ${admin.token_env} is not set`);
    return token;
  }
  return null;
}

/** Compares an Authorization header with the token in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !/^bearer /i.test(header)) return false;
  const given = Buffer.from(header.slice(7).trim());
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/** Whether the admin listener's host is a loopback address (where an unauthenticated POST is allowed). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
