import { EmbedpoolError } from '../errors';
import { type Config, envSchema } from './schema';

/**
 * Parses the environment once at boot. A bad value throws CONFIG_INVALID naming each variable at fault;
 * entry points print it and exit non-zero rather than run with a guess.
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
    const problems = parsed.error.issues.map(
      (i) => `${i.path.join('.')}=${JSON.stringify(input[String(i.path[0])] ?? '')}: ${i.message}`,
    );
    throw new EmbedpoolError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, {
      details: { variables: parsed.error.issues.map((i) => i.path[0]) },
    });
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
