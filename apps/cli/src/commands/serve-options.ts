import { type Config, type EnvName, loadConfig } from '@embedpool/core/config';
import type { Command } from 'commander';

export type ProcessKind = 'serve' | 'api' | 'worker';

export interface ServeFlags {
  port?: string;
  host?: string;
  model?: string;
  redis?: string;
}

/** Which variable each flag sets, per command: the worker's listener is its metrics endpoint. */
const FLAG_ENV: Record<ProcessKind, Partial<Record<keyof ServeFlags, EnvName>>> = {
  serve: { port: 'PORT', host: 'HOST', model: 'MODEL_PATH', redis: 'REDIS_URL' },
  api: { port: 'PORT', host: 'HOST', redis: 'REDIS_URL' },
  worker: {
    port: 'WORKER_METRICS_PORT',
    host: 'WORKER_METRICS_HOST',
    model: 'MODEL_PATH',
    redis: 'REDIS_URL',
  },
};

const API_VARS: EnvName[] = [
  'HOST',
  'PORT',
  'AUTH',
  'API_KEYS',
  'METRICS_TOKEN',
  'MAX_BODY_BYTES',
  'MAX_IMAGES_PER_REQUEST',
  'MAX_IMAGE_BYTES',
  'REQUEST_TIMEOUT_MS',
  'RATE_LIMIT_REQUESTS',
  'MAX_BACKLOG_IMAGES',
];
const WORKER_VARS: EnvName[] = [
  'MODEL_PATH',
  'MODEL_ID',
  'PREPROCESSOR_CONFIG',
  'EMBEDPOOL_CACHE_DIR',
  'MODEL_FETCH',
  'EXECUTION_PROVIDER',
  'MAX_BATCH_SIZE',
  'BATCH_WAIT_MS',
  'INFERENCE_THREADS',
  'INTRA_OP_THREADS',
  'WORKER_CONCURRENCY',
  'DECODE_CONCURRENCY',
  'MAX_IMAGE_BYTES',
  'MAX_IMAGE_PIXELS',
  'FETCH_ALLOW',
  'WORKER_METRICS_HOST',
  'WORKER_METRICS_PORT',
];
const COMMON_VARS: EnvName[] = [
  'REDIS_URL',
  'QUEUE_PREFIX',
  'LOG_LEVEL',
  'LOG_FORMAT',
  'SHUTDOWN_TIMEOUT_MS',
  'NODE_ENV',
];

function varsFor(kind: ProcessKind): EnvName[] {
  const own = kind === 'api' ? API_VARS : kind === 'worker' ? WORKER_VARS : [...API_VARS, ...WORKER_VARS];
  const extra: EnvName[] = kind === 'serve' ? ['REDIS_AUTOSTART'] : [];
  return [...new Set([...own, ...extra, ...COMMON_VARS])];
}

function shown(value: unknown): string {
  if (value === undefined) return '(unset)';
  if (Array.isArray(value)) return value.length === 0 ? '(empty)' : value.join(',');
  return String(value);
}

/** The `--help` text listing the variables a process reads and their built-in defaults. */
export function environmentHelp(kind: ProcessKind): string {
  const defaults = loadConfig({}) as Config & Record<string, unknown>;
  const names = varsFor(kind);
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${shown(defaults[n])}`);
  return (
    `\nEnvironment (name, built-in default; flags above override them; every variable is in README.md,\n` +
    `"Configuration", and .env.example):\n${lines.join('\n')}\n`
  );
}

/** Adds the flags to a serve/api/worker command and its environment help. */
export function addServeOptions(cmd: Command, kind: ProcessKind): Command {
  const map = FLAG_ENV[kind];
  if (map.port) cmd.option('--port <port>', `listen port (sets ${map.port})`);
  if (map.host) cmd.option('--host <address>', `listen address (sets ${map.host})`);
  if (map.model) cmd.option('--model <model.onnx>', `ONNX model file (sets ${map.model})`);
  if (map.redis) cmd.option('--redis <url>', `Redis URL (sets ${map.redis})`);
  cmd.addHelpText('after', environmentHelp(kind));
  return cmd;
}

/** The environment the process boots from: flags given on the command line win over the variables. */
export function applyServeFlags(kind: ProcessKind, flags: ServeFlags, env: NodeJS.ProcessEnv): void {
  for (const [flag, name] of Object.entries(FLAG_ENV[kind]) as [keyof ServeFlags, EnvName][]) {
    const value = flags[flag];
    if (value !== undefined) env[name] = value;
  }
}
