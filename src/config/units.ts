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

/** One kind of quantity: its syntax, its units, and the range its value must fall in. */
interface Unit {
  pattern: RegExp;
  units: Readonly<Record<string, number>>;
  base: string;
  hint: string;
  max: number;
}

const DURATION: Unit = {
  pattern: DURATION_PATTERN,
  units: DURATION_UNITS,
  base: 'ms',
  hint: 'a duration like "5s" or "250ms"',
  max: MAX_DURATION_MS,
};
const SIZE: Unit = {
  pattern: SIZE_PATTERN,
  units: SIZE_UNITS,
  base: 'B',
  hint: 'a size like "64KiB", "1MiB" or "512B"',
  max: Number.MAX_SAFE_INTEGER,
};

type Checked = { value: number } | { error: string };

function convert(unit: Unit, input: string | number, min: number): Checked {
  const got = describeValue(input);
  let value: number;
  if (typeof input === 'number') {
    if (!Number.isInteger(input) || input < 0) return { error: `expected ${unit.hint}, got ${got}` };
    value = input;
  } else {
    const m = unit.pattern.exec(input);
    const factor = unit.units[m?.[2] ?? unit.base];
    if (!m || factor === undefined) return { error: `expected ${unit.hint}, got ${got}` };
    // Fractions ("1.5s") are convenient; the result is rounded to whole base units.
    value = Math.round(Number(m[1]) * factor);
  }
  if (value < min) return { error: `expected at least ${min}${unit.base}, got ${got}` };
  if (value > unit.max) return { error: `expected at most ${unit.max}${unit.base}, got ${got}` };
  return { value };
}

/** "250ms" | "5s" | "1m" | "1h" | integer milliseconds -> milliseconds. Throws a RangeError saying what was wrong. */
export function parseDuration(input: string | number): number {
  const checked = convert(DURATION, input, 0);
  if ('error' in checked) throw new RangeError(checked.error);
  return checked.value;
}

/** "512B" | "10KB" (10*1000) | "64KiB" (64*1024) | integer bytes -> bytes. Throws a RangeError saying what was wrong. */
export function parseSize(input: string | number): number {
  const checked = convert(SIZE, input, 0);
  if ('error' in checked) throw new RangeError(checked.error);
  return checked.value;
}

/**
 * A zod schema for both units: the input is a string matching the pattern or a non-negative integer
 * (which is what the JSON Schema shows editors), the output the integer count of base units.
 */
function unitSchema(unit: Unit, min: number) {
  const error = (issue: { input?: unknown }) => `expected ${unit.hint}, got ${describeValue(issue.input)}`;
  return z
    .union([z.int({ error }).min(0, { error }), z.string({ error }).regex(unit.pattern, { error })], { error })
    .transform((input, ctx) => {
      const checked = convert(unit, input, min);
      if ('value' in checked) return checked.value;
      ctx.addIssue({ code: 'custom', message: checked.error, input });
      return z.NEVER;
    });
}

/** Duration -> milliseconds. `min` rejects e.g. a zero timeout that would fire immediately. */
export function durationMs(options: { min?: number } = {}) {
  return unitSchema(DURATION, options.min ?? 0);
}

/** Size -> bytes. */
export function sizeBytes(options: { min?: number } = {}) {
  return unitSchema(SIZE, options.min ?? 0);
}
