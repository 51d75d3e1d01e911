import type { z } from 'zod';
import { EmbedpoolError } from '../errors';
import { type Config, envSchema } from './schema';

/** Variables whose value must never be printed: credentials, or URLs and strings that may carry one. */
const SECRET = /TOKEN|SECRET|KEY|PASSWORD|CONNECTION_STRING|SAS|HEADERS|^REDIS_URL$/;

export function isSecretVariable(name: string): boolean {
  return SECRET.test(name);
}

/** What a value should look like, in words, from zod's issue. */
function expected(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => String(v)).join(', ')}`;
    case 'invalid_type':
      return issue.expected === 'number' ? 'expected a number' : `expected ${issue.expected}`;
    case 'too_small':
      return issue.origin === 'string' ? 'must not be empty' : `expected at least ${String(issue.minimum)}`;
    case 'too_big':
      return `expected at most ${String(issue.maximum)}`;
    case 'invalid_format':
      return issue.format === 'url' ? 'expected a URL' : `expected the ${issue.format} format`;
    default:
      return issue.message;
  }
}

/**
 * Parses the environment once at boot. A bad value throws CONFIG_INVALID: one sentence naming each variable
 * at fault and what it takes (a secret's value is never repeated); entry points print it and exit non-zero
 * rather than run with a guess.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const known = Object.keys(envSchema.shape);
  const input: Record<string, string> = {};
  for (const key of known) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = envSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      const shown = isSecretVariable(name) ? '(value hidden)' : JSON.stringify(input[name] ?? '');
      return `${name}=${shown} is not valid (${expected(i)})`;
    });
    const names = [...new Set(parsed.error.issues.map((i) => String(i.path[0])))];
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `invalid configuration: ${problems.join('; ')}. ` +
        (names.length > 1 ? 'Fix these variables or unset them' : `Fix ${names[0]} or unset it`) +
        ' to use the default (README.md, "Configuration").',
      { details: { variables: names } },
    );
  }
  const config = { ...parsed.data, ...overrides };
  if (!config.REDIS_CLUSTER && config.REDIS_URL.includes(',')) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      'invalid configuration: REDIS_URL lists several nodes: set REDIS_CLUSTER=true for a Redis Cluster',
      { details: { variables: ['REDIS_URL', 'REDIS_CLUSTER'] } },
    );
  }
  return Object.freeze(config);
}
