/**
 * The one error type the configuration layer throws. Its message is the list of problems, one per
 * line (`file:line path: message`), so a CLI can print it as is; `problems` holds the same lines
 * for callers that want to count or re-format them.
 */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  readonly problems: readonly string[];
  /** The config file as the caller named it (messages only carry its basename). */
  readonly file: string | undefined;

  constructor(problems: readonly string[], options: { file?: string; cause?: unknown } = {}) {
    super(problems.join('\n'), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ConfigError';
    this.problems = problems;
    this.file = options.file;
  }
}

const MAX_SHOWN_STRING = 60;

/**
 * How an offending value is shown after "got" in problem messages: strings quoted (and cut short),
 * numbers and booleans as written, collections by kind since dumping them would drown the line.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') {
    if (value === '') return 'an empty string';
    const shown = value.length > MAX_SHOWN_STRING ? `${value.slice(0, MAX_SHOWN_STRING)}…` : value;
    return JSON.stringify(shown);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (value instanceof Date) return `a date (${value.toISOString()})`;
  if (typeof value === 'object') return 'a map';
  return typeof value;
}
