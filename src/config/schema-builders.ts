/**
 * Small zod builders that attach one readable message ("expected X, got Y") to a schema, whichever
 * of its checks fails. The loader prints these messages verbatim.
 */
import { z } from 'zod';
import { describeValue } from './config-error.ts';
// ---------------------------------------------------------------------------------------------
// Small builders that attach one readable message to a schema, whichever of its checks fails.

type RawIssue = { readonly input?: unknown };

export const expected = (what: string) => (issue: RawIssue) => `expected ${what}, got ${describeValue(issue.input)}`;

export function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  const error = expected(max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer ${min}-${max}`);
  return z.int({ error }).min(min, { error }).max(max, { error });
}

export function text(what: string, pattern?: RegExp) {
  const error = expected(what);
  return pattern ? z.string({ error }).regex(pattern, { error }) : z.string({ error }).min(1, { error });
}

export function bool() {
  return z.boolean({ error: expected('true or false') });
}

export function list<T extends z.core.SomeType>(item: T, what: string, min = 0) {
  const error = expected(what);
  const array = z.array(item, { error });
  return min > 0 ? array.min(min, { error }) : array;
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: expected(`one of ${values.join(', ')}`) });
}

/**
 * A strict map. The unknown-key message lists the allowed keys after "; " (the loader splits an
 * issue naming several keys into one problem per key and reuses that tail).
 */
export function map<S extends z.core.$ZodLooseShape>(what: string, shape: S) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown key ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; expected one of: ${allowed}`
        : `expected ${what}, got ${describeValue(issue.input)}`,
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Refinements that compare sibling fields still run when some other field failed (so one pass
// reports every problem); they then see partially parsed values, hence the defensive reads.
export const whenMap = { when: (payload: { value: unknown }) => isRecord(payload.value) };

/** For "exactly one of" maps (path match, header match, hash key). */
export function exactlyOne(keys: readonly string[]) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const present = keys.filter((k) => value[k] !== undefined);
    if (present.length === 1) return;
    ctx.addIssue({
      code: 'custom',
      message: `expected exactly one of ${keys.join(', ')}, got ${present.length === 0 ? 'none' : present.join(' and ')}`,
      input: value,
    });
  };
}
