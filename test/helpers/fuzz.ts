import type fc from 'fast-check';

/**
 * The fuzz tests' run parameters: a fixed seed (so CI runs are repeatable and a failure prints the
 * seed and path to replay), bounded runs; FUZZ_SEED, FUZZ_RUNS and FUZZ_PATH override them.
 */
function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got ${v}`);
  return n;
}

/** fast-check parameters with `defaultRuns` runs (times `scale`) and `defaultSeed`, unless the environment says otherwise. */
export function fuzzParams(defaultSeed: number, defaultRuns: number) {
  const seed = envInt('FUZZ_SEED', defaultSeed);
  const runs = envInt('FUZZ_RUNS', defaultRuns);
  return <T>(scale = 1): fc.Parameters<T> => {
    const p: fc.Parameters<T> = { seed, numRuns: Math.max(1, Math.round(runs * scale)) };
    if (process.env.FUZZ_PATH) p.path = process.env.FUZZ_PATH;
    return p;
  };
}
