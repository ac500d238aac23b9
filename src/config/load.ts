/**
 * Reads muxgate.yaml, validates it against the schema and turns every problem into one line
 * `file:line path: message`, all reported at once so a config can be fixed in one go.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { resolveTlsPaths } from './tls-files.ts';
import { getSystemErrorMessage } from 'node:util';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, describeValue } from './config-error.ts';
import { type Config, configSchema } from './schema.ts';

type Path = readonly PropertyKey[];

/** A problem before it gets its line: at `path`, or at the key `key` of the map at `path`. */
interface Problem {
  path: Path;
  key?: string;
  message: string;
}

// reportInput keeps each issue's offending value, which tells a missing key from a null one.
const PARSE_OPTIONS = { reportInput: true, error: fallbackMessage } as const;

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${path}: cannot read the config file: ${osReason(err)}`], { file: path, cause: err });
  }
  const config = parseConfigText(text, path);
  resolveTlsPaths(config, path);
  return config;
}

/** `fileName` only labels the problems (by its basename); nothing is read from disk. */
export function parseConfigText(text: string, fileName: string): Config {
  const file = basename(fileName);
  const lineCounter = new LineCounter();
  const lineAt = (offset: number) => lineCounter.linePos(offset).line;
  // merge: YAML 1.1 `<<` merge keys are handy for sharing pool/health settings between clusters.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true });

  // A document with syntax errors is only partly built; validating it would add noise.
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${file}:${lineAt(e.pos[0])} invalid YAML: ${e.message.split('\n')[0]}`);
    throw new ConfigError(problems, { file: fileName });
  }
  if (doc.contents === null) {
    throw new ConfigError([`${file}:1 expected a map of settings, got an empty document`], { file: fileName });
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // e.g. an alias bomb exceeding yaml's maxAliasCount
    throw new ConfigError([`${file}:1 invalid YAML: ${(err as Error).message}`], { file: fileName, cause: err });
  }

  const result = configSchema.safeParse(data, PARSE_OPTIONS);
  if (result.success) return result.data;

  const located = problemsOf(result.error)
    .map((p) => {
      const line = lineOf(doc, lineAt, p.key === undefined ? p.path : [...p.path, p.key]);
      return { line, text: `${file}:${line} ${withPath(p)}` };
    })
    .sort((a, b) => a.line - b.line);
  throw new ConfigError([...new Set(located.map((p) => p.text))], { file: fileName });
}

/**
 * Validates a config built in memory (e.g. from command-line flags): same schema, same messages,
 * labelled `source: path: message` since there are no lines to point at.
 */
export function validateConfig(input: unknown, source: string): Config {
  const result = configSchema.safeParse(input, PARSE_OPTIONS);
  if (result.success) return result.data;
  throw new ConfigError([...new Set(problemsOf(result.error).map((p) => `${source}: ${withPath(p)}`))]);
}

function problemsOf(error: z.ZodError): Problem[] {
  return error.issues.flatMap((issue) => toProblems(issue, []));
}

function withPath(p: Problem): string {
  const where = formatPath(p.path);
  return where === '' ? p.message : `${where}: ${p.message}`;
}

/** Every schema carries its own messages; this only keeps an overlooked one in the same style. */
function fallbackMessage(issue: z.core.$ZodRawIssue): string | undefined {
  return issue.code === 'invalid_type' ? `expected ${issue.expected}, got ${describeValue(issue.input)}` : undefined;
}

const UNKNOWN_KEY_HINT = '; expected one of: ';

function toProblems(issue: z.core.$ZodIssue, prefix: Path): Problem[] {
  const path = [...prefix, ...issue.path];
  switch (issue.code) {
    case 'invalid_union': {
      // Only one alternative had the right shape (e.g. an endpoint written as a map): its own, precise
      // problems beat "expected A or B". Otherwise the union's message is the clearest.
      const fitting = issue.errors.filter((branch) => !branch.some(isShapeMismatch));
      const [only] = fitting;
      if (fitting.length === 1 && only) return only.flatMap((i) => toProblems(i, path));
      return [{ path, message: issue.message }];
    }
    case 'unrecognized_keys': {
      // One problem per key, each on its key's line.
      const at = issue.message.lastIndexOf(UNKNOWN_KEY_HINT);
      const hint = at === -1 ? '' : issue.message.slice(at);
      return issue.keys.map((key) => ({ path, key, message: `unknown key ${JSON.stringify(key)}${hint}` }));
    }
    case 'invalid_key':
    case 'invalid_element':
      return issue.issues.flatMap((i) => toProblems(i, path));
    case 'invalid_type': {
      const key = path.at(-1);
      if (issue.input === undefined && typeof key === 'string') {
        return [{ path: path.slice(0, -1), message: `missing required key ${JSON.stringify(key)}` }];
      }
      break;
    }
  }
  return [{ path, message: issue.message }];
}

/** A union alternative that failed at its root on type or literal value was never the one meant. */
function isShapeMismatch(issue: z.core.$ZodIssue): boolean {
  return issue.path.length === 0 && (issue.code === 'invalid_type' || issue.code === 'invalid_value');
}

/**
 * The line of the node at `path`, or of the deepest ancestor present in the file (a missing key
 * points at its parent). Map entries point at their key's line, not at a block collection's first
 * child, which is where people look; scalars at their own line.
 */
function lineOf(doc: Document, lineAt: (offset: number) => number, path: Path): number {
  let node: unknown = doc.contents;
  let line = startLine(node, lineAt) ?? 1;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) break;
      line = (isScalar(pair.value) ? startLine(pair.value, lineAt) : undefined) ?? startLine(pair.key, lineAt) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      line = startLine(node, lineAt) ?? line;
    } else {
      break;
    }
  }
  return line;
}

function startLine(node: unknown, lineAt: (offset: number) => number): number | undefined {
  const range = (node as { range?: readonly number[] } | null | undefined)?.range;
  return range?.[0] === undefined ? undefined : lineAt(range[0]);
}

/** ["clusters", "api", "endpoints", 1, "port"] -> clusters.api.endpoints[1].port */
function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    const s = String(seg);
    if (typeof seg === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

function osReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e.errno === 'number' && e.code !== undefined) return `${getSystemErrorMessage(e.errno)} (${e.code})`;
  return err instanceof Error ? err.message : String(err);
}
