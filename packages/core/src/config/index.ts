export { loadConfig } from './load-config';
export { type Config, type EnvName, envSchema } from './schema';
