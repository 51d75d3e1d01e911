import { EmbedpoolError } from '../errors';

/**
 * Blob path templates such as `embeddings/{date}/{jobId}`. Placeholders:
 * - `{jobId}`  the job's id;
 * - `{itemId}` one item's id (per-item paths; a job's own file must not use it);
 * - `{date}`   a UTC date as YYYY-MM-DD (the job's date, given by the caller so a retry names the same blob);
 * - `{index}`  a non-negative integer, in decimal.
 *
 * A template or expansion may not escape its container's prefix: no leading `/`, no `.` or `..` segment,
 * no empty segment (`a//b`), no backslash (Azure turns it into `/`), no control character. Values are
 * single path segments: a `/` inside a job or item id is refused rather than silently making a folder.
 */
export const PATH_PLACEHOLDERS = ['jobId', 'itemId', 'date', 'index'] as const;
export type PathPlaceholder = (typeof PATH_PLACEHOLDERS)[number];

/** Azure's limit on a blob name, in characters. */
export const MAX_BLOB_NAME_LENGTH = 1024;
const MAX_VALUE_LENGTH = 255;

export type PathTemplateErrorReason =
  | 'empty'
  | 'absolute'
  | 'escape'
  | 'bad-char'
  | 'bad-brace'
  | 'unknown-placeholder'
  | 'placeholder-not-allowed'
  | 'placeholder-required'
  | 'missing-value'
  | 'bad-value'
  | 'too-long';

/** A template or value that cannot make a safe blob name. Code CONFIG_INVALID; `reason` says which rule. */
export class PathTemplateError extends EmbedpoolError {
  readonly reason: PathTemplateErrorReason;
  readonly template: string;

  constructor(reason: PathTemplateErrorReason, template: string, message: string) {
    super('CONFIG_INVALID', `path template ${JSON.stringify(template)}: ${message}`, {
      details: { reason, template },
    });
    this.name = 'PathTemplateError';
    this.reason = reason;
    this.template = template;
  }
}

type Part = { literal: string } | { placeholder: PathPlaceholder };

export interface ParsedPathTemplate {
  template: string;
  parts: readonly Part[];
  placeholders: ReadonlySet<PathPlaceholder>;
}

export interface PathTemplateRules {
  /** Placeholders the caller can fill; any other known placeholder is refused. Default: all. */
  allowed?: readonly PathPlaceholder[];
  /** Placeholders the template must contain. */
  required?: readonly PathPlaceholder[];
}

export interface PathVars {
  jobId?: string;
  itemId?: string;
  /** A Date, epoch milliseconds, or an ISO string; rendered as the UTC calendar date. */
  date?: Date | number | string;
  index?: number;
}

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function isPlaceholder(name: string): name is PathPlaceholder {
  return (PATH_PLACEHOLDERS as readonly string[]).includes(name);
}

/** Checks a (possibly expanded) path against the escape rules. */
function checkPath(path: string, template: string, what: string): void {
  if (path.length === 0) throw new PathTemplateError('empty', template, `${what} is empty`);
  if (path.startsWith('/')) throw new PathTemplateError('absolute', template, `${what} starts with '/'`);
  if (path.includes('\\')) throw new PathTemplateError('bad-char', template, `${what} contains a backslash`);
  if (hasControlChar(path))
    throw new PathTemplateError('bad-char', template, `${what} contains a control character`);
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') {
      throw new PathTemplateError('escape', template, `${what} has a '${segment}' segment`);
    }
    if (segment === '') throw new PathTemplateError('escape', template, `${what} has an empty segment`);
  }
  if (path.length > MAX_BLOB_NAME_LENGTH) {
    throw new PathTemplateError('too-long', template, `${what} is over ${MAX_BLOB_NAME_LENGTH} characters`);
  }
}

/** Parses and checks a template; throws PathTemplateError on any unsafe or unknown part. */
export function parsePathTemplate(template: string, rules: PathTemplateRules = {}): ParsedPathTemplate {
  if (typeof template !== 'string' || template.length === 0) {
    throw new PathTemplateError('empty', String(template), 'template is empty');
  }
  const parts: Part[] = [];
  const placeholders = new Set<PathPlaceholder>();
  const token = /\{([^{}]*)\}/g;
  let last = 0;
  for (let m = token.exec(template); m !== null; m = token.exec(template)) {
    if (m.index > last) parts.push({ literal: template.slice(last, m.index) });
    const name = m[1]!;
    if (!isPlaceholder(name)) {
      throw new PathTemplateError(
        'unknown-placeholder',
        template,
        `unknown placeholder {${name}}; known: ${PATH_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`,
      );
    }
    if (rules.allowed && !rules.allowed.includes(name)) {
      throw new PathTemplateError(
        'placeholder-not-allowed',
        template,
        `{${name}} is not allowed here; allowed: ${rules.allowed.map((p) => `{${p}}`).join(', ') || 'none'}`,
      );
    }
    parts.push({ placeholder: name });
    placeholders.add(name);
    last = token.lastIndex;
  }
  if (last < template.length) parts.push({ literal: template.slice(last) });
  for (const part of parts) {
    if ('literal' in part && (part.literal.includes('{') || part.literal.includes('}'))) {
      throw new PathTemplateError('bad-brace', template, 'unbalanced { or }');
    }
  }
  for (const name of rules.required ?? []) {
    if (!placeholders.has(name)) {
      throw new PathTemplateError('placeholder-required', template, `must contain {${name}}`);
    }
  }
  // Check the shape with every placeholder standing in as a plain segment part: catches `../{jobId}`,
  // `/x/{jobId}`, `a//{jobId}` before any value is known.
  checkPath(parts.map((p) => ('literal' in p ? p.literal : 'x')).join(''), template, 'template');
  return { template, parts, placeholders };
}

/** UTC calendar date of `value` as YYYY-MM-DD. */
export function formatUtcDate(value: Date | number | string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new RangeError(`invalid date: ${String(value)}`);
  return date.toISOString().slice(0, 10);
}

function renderValue(name: PathPlaceholder, vars: PathVars, template: string): string {
  const bad = (why: string) => new PathTemplateError('bad-value', template, `{${name}} ${why}`);
  const value = vars[name];
  if (value === undefined || value === null) {
    throw new PathTemplateError('missing-value', template, `no value for {${name}}`);
  }
  switch (name) {
    case 'date':
      try {
        return formatUtcDate(value as Date | number | string);
      } catch {
        throw bad(`is not a valid date: ${String(value)}`);
      }
    case 'index':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw bad(`must be a non-negative integer, got ${String(value)}`);
      }
      return String(value);
    default: {
      if (typeof value !== 'string' || value.length === 0) throw bad('must be a non-empty string');
      if (value.length > MAX_VALUE_LENGTH) throw bad(`is over ${MAX_VALUE_LENGTH} characters`);
      if (value === '.' || value === '..') throw bad(`may not be '${value}'`);
      if (value.includes('/') || value.includes('\\')) throw bad('may not contain / or \\');
      if (hasControlChar(value)) throw bad('may not contain control characters');
      return value;
    }
  }
}

/** Expands a template (string or parsed); throws PathTemplateError for a missing or unsafe value. */
export function expandPathTemplate(
  template: string | ParsedPathTemplate,
  vars: PathVars,
  rules: PathTemplateRules = {},
): string {
  const parsed = typeof template === 'string' ? parsePathTemplate(template, rules) : template;
  const path = parsed.parts
    .map((p) => ('literal' in p ? p.literal : renderValue(p.placeholder, vars, parsed.template)))
    .join('');
  checkPath(path, parsed.template, 'expanded path');
  return path;
}
