/**
 * Human-friendly durations and sizes. The config accepts "5s" / "64KiB" (or bare integers, meaning
 * milliseconds / bytes) and the rest of muxgate only ever sees plain integers.
 */
import { z } from 'zod';
import { describeValue } from './config-error.ts';

/** Node clamps timers above 2^31-1 ms to 1 ms (with only a warning), so a longer timeout would fire at once. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1_000,
  MB: 1_000_000,
  GB: 1_000_000_000,
  KiB: 1_024,
  MiB: 1_024 ** 2,
  GiB: 1_024 ** 3,
};

// A number, an optional space, an optional unit; a unit-less string means the base unit, like a bare
// integer. Case-sensitive (no flags) so the same pattern can go into the JSON Schema for editors.
const DURATION_PATTERN = /^(\d+(?:\.\d+)?) ?(ms|s|m|h)?$/;
const SIZE_PATTERN = /^(\d+(?:\.\d+)?) ?(B|KB|MB|GB|KiB|MiB|GiB)?$/;

const DURATION_HINT = 'a duration like "5s" or "250ms"';
const SIZE_HINT = 'a size like "64KiB", "1MiB" or "512B"';

type Checked = { value: number } | { error: string };

function convert(
  input: string | number,
  pattern: RegExp,
  units: Readonly<Record<string, number>>,
  baseUnit: string,
  hint: string,
  min: number,
  max: number,
): Checked {
  let value: number;
  if (typeof input === 'number') {
    if (!Number.isInteger(input) || input < 0) return { error: `expected ${hint}, got ${describeValue(input)}` };
    value = input;
  } else {
    const m = pattern.exec(input);
    const unit = units[m?.[2] ?? baseUnit];
    if (!m || unit === undefined) return { error: `expected ${hint}, got ${describeValue(input)}` };
    // Fractions ("1.5s") are convenient; the result is rounded to whole base units.
    value = Math.round(Number(m[1]) * unit);
  }
  if (value < min) return { error: `expected at least ${min}${baseUnit}, got ${describeValue(input)}` };
  if (value > max) return { error: `expected at most ${max}${baseUnit}, got ${describeValue(input)}` };
  return { value };
}

function checkDuration(input: string | number, min = 0): Checked {
  return convert(input, DURATION_PATTERN, DURATION_UNITS, 'ms', DURATION_HINT, min, MAX_DURATION_MS);
}

function checkSize(input: string | number, min = 0): Checked {
  return convert(input, SIZE_PATTERN, SIZE_UNITS, 'B', SIZE_HINT, min, Number.MAX_SAFE_INTEGER);
}

/** "250ms" | "5s" | "1m" | "1h" | integer milliseconds -> milliseconds. Throws a RangeError saying what was wrong. */
export function parseDuration(input: string | number): number {
  const checked = checkDuration(input);
  if ('error' in checked) throw new RangeError(checked.error);
  return checked.value;
}

/** "512B" | "10KB" (10*1000) | "64KiB" (64*1024) | integer bytes -> bytes. Throws a RangeError saying what was wrong. */
export function parseSize(input: string | number): number {
  const checked = checkSize(input);
  if ('error' in checked) throw new RangeError(checked.error);
  return checked.value;
}

/**
 * A zod schema for both units: the input is a string matching the pattern or a non-negative integer
 * (which is what the JSON Schema shows editors), the output the integer count of base units.
 */
function unitSchema(pattern: RegExp, hint: string, check: (input: string | number) => Checked) {
  const error = (issue: { input?: unknown }) => `expected ${hint}, got ${describeValue(issue.input)}`;
  return z
    .union([z.int({ error }).min(0, { error }), z.string({ error }).regex(pattern, { error })], { error })
    .transform((input, ctx) => {
      const checked = check(input);
      if ('value' in checked) return checked.value;
      ctx.issues.push({ code: 'custom', message: checked.error, input });
      return z.NEVER;
    });
}

/** Duration -> milliseconds. `min` rejects e.g. a zero timeout that would fire immediately. */
export function durationMs(options: { min?: number } = {}) {
  const min = options.min ?? 0;
  return unitSchema(DURATION_PATTERN, DURATION_HINT, (input) => checkDuration(input, min));
}

/** Size -> bytes. */
export function sizeBytes(options: { min?: number } = {}) {
  const min = options.min ?? 0;
  return unitSchema(SIZE_PATTERN, SIZE_HINT, (input) => checkSize(input, min));
}
