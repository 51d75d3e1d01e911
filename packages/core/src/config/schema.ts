import { z } from 'zod';
import { ingestEnvSchema } from '../ingest/settings';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])
  .transform((v) => ['true', '1', 'yes', 'on'].includes(v));
const int = (min = 0) => z.coerce.number().int().min(min);
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);

/** `name:sha256hex` pairs: a key's name (its owner identity; repeat a name to rotate) and the SHA-256 of the key. */
const API_KEY_ENTRY = /^([A-Za-z0-9._-]{1,64}):([0-9a-fA-F]{64})$/;
const apiKeys = list.transform((entries, ctx) => {
  const out: { name: string; sha256: string }[] = [];
  for (const entry of entries) {
    const m = API_KEY_ENTRY.exec(entry);
    if (!m) {
      // Never echo the entry: a pasted raw key must not end up in a log.
      ctx.addIssue({ code: 'custom', message: 'each entry must be name:<64 hex digits of sha256(key)>' });
      return z.NEVER;
    }
    out.push({ name: m[1]!, sha256: m[2]!.toLowerCase() });
  }
  return out;
});

/**
 * Every environment variable the service reads, in one place. Each key is the variable's name so an error
 * message can name it; README.md and .env.example document the same list (a test keeps them in step).
 */
export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  // HTTP API
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0).max(65535).default(8080),
  MAX_BODY_BYTES: int(1024).default(64 * 1024 * 1024),
  MAX_IMAGES_PER_REQUEST: int(1).default(64),
  REQUEST_TIMEOUT_MS: int(100).default(60_000),

  // Authentication and overload (docs/hardening.md)
  AUTH: z.enum(['keys', 'entra', 'keys+entra', 'none']).optional(),
  API_KEYS: apiKeys.default([]),
  AUTH_JWT_ISSUER: list.default([]),
  AUTH_JWT_AUDIENCE: list.default([]),
  AUTH_JWT_JWKS_URL: z.string().url().optional(),
  AUTH_JWT_ROLE: z.string().min(1).optional(),
  METRICS_TOKEN: z.string().min(16).optional(),
  RATE_LIMIT_REQUESTS: int(0).default(0),
  RATE_LIMIT_WINDOW_S: int(1).max(86_400).default(60),
  MAX_BACKLOG_IMAGES: int(0).default(10_000),

  // Redis and the queue
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  REDIS_AUTOSTART: bool.default(true),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .default('embedpool'),
  RESULT_TTL_S: int(1).default(300),
  READY_WORKER_TTL_S: int(1).default(15),

  // Async jobs (/v1/jobs) and their outputs
  MAX_JOB_IMAGES: int(1).default(1000),
  JOB_TTL_S: int(60).default(7 * 24 * 3600),
  JOB_RESULT_TTL_S: int(60).default(24 * 3600),
  BLOB_CONNECTION_STRING: z.string().min(1).optional(),
  BLOB_SAS_URL: z.string().url().optional(),
  BLOB_ACCOUNT_URL: z.string().url().optional(),
  BLOB_MAX_TRIES: int(1).max(20).default(4),
  BLOB_RETRY_DELAY_MS: int(1).default(500),
  CALLBACK_SECRET: z.string().min(16).optional(),
  CALLBACK_ATTEMPTS: int(1).max(30).default(8),
  CALLBACK_BACKOFF_MS: int(1).default(1000),

  // Bulk ingestion (/v1/ingestions, docs/ingestion.md)
  ...ingestEnvSchema.shape,

  // Model
  MODEL_PATH: z.string().min(1).optional(),
  PREPROCESSOR_CONFIG: z.string().min(1).optional(),
  MODEL_ID: z.string().min(1).optional(),
  EMBEDPOOL_CACHE_DIR: z.string().min(1).optional(),
  MODEL_FETCH: bool.default(true),
  HF_ENDPOINT: z.string().url().optional(),
  HF_TOKEN: z.string().min(1).optional(),

  // Runtime
  EXECUTION_PROVIDER: z.enum(['cpu', 'cuda']).default('cpu'),
  CUDA_DEVICE_ID: int(0).default(0),
  INTRA_OP_THREADS: int(0).default(0),
  INTER_OP_THREADS: int(0).default(1),
  GRAPH_OPTIMIZATION: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
  INFERENCE_THREADS: int(1).default(1),

  // Worker sizing (see `embedpool sku`)
  WORKER_SKU: z.string().min(1).optional(),
  AZURE_IMDS_ENDPOINT: z.string().url().optional(),

  WORKER_PLAN: z.enum(['auto', 'off']).default('auto'),

  // Autoscaling signal (embedpool_desired_workers)
  AUTOSCALE_TARGET_DRAIN_S: int(1).default(60),
  AUTOSCALE_MIN_WORKERS: int(0).default(1),
  AUTOSCALE_MAX_WORKERS: int(1).default(100),
  AUTOSCALE_DEFAULT_RATE: z.coerce.number().positive().default(2),

  // Operators' queue dashboard (Bull Board at /admin/queues); off unless a token is set
  DASHBOARD_TOKEN: z.string().min(16).optional(),

  // Worker
  MAX_BATCH_SIZE: int(1).max(1024).default(16),
  BATCH_WAIT_MS: int(0).max(10_000).default(5),
  WORKER_CONCURRENCY: int(1).default(64),
  DECODE_CONCURRENCY: int(1).default(4),
  SHUTDOWN_TIMEOUT_MS: int(0).default(30_000),
  // Short: a dead worker's /score jobs are taken over after about JOB_LOCK_MS + JOB_STALLED_CHECK_MS (the lock
  // is renewed every JOB_LOCK_MS / 2 by a timer, and inference runs off the event loop).
  JOB_LOCK_MS: int(1000).default(5_000),
  JOB_STALLED_CHECK_MS: int(100).default(1_000),
  JOB_MAX_STALLED: int(0).max(20).default(2),
  JOB_ATTEMPTS: int(1).max(20).default(3),
  WORKER_METRICS_PORT: int(0).max(65535).default(9464),
  WORKER_METRICS_HOST: z.string().min(1).default('127.0.0.1'),

  // Images and URLs fetched on a user's behalf
  MAX_IMAGE_BYTES: int(1).default(20 * 1024 * 1024),
  MAX_IMAGE_PIXELS: int(1).default(100_000_000),
  DECODE_TIMEOUT_S: int(1).default(10),
  FETCH_ALLOW: list.default([]),
  FETCH_CONNECT_TIMEOUT_MS: int(1).default(5_000),
  FETCH_HEADERS_TIMEOUT_MS: int(1).default(10_000),
  FETCH_TOTAL_TIMEOUT_MS: int(1).default(30_000),
  FETCH_MAX_REDIRECTS: int(0).max(10).default(3),
});

export type Config = z.infer<typeof envSchema>;
export type EnvName = keyof Config;
