import { z } from 'zod';
import { ingestEnvSchema } from '../ingest/settings';
import { hashTagged } from '../queue/names';

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
  /** `auto`: pretty single lines on a terminal, JSON lines otherwise; `json` / `pretty` force either. */
  LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),

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
  /** One URL, or with REDIS_CLUSTER a comma-separated list of seed nodes (`rediss://` for TLS). */
  REDIS_URL: z
    .string()
    .refine((s) => s.split(',').every((u) => /^rediss?:\/\/[^\s]+$/.test(u.trim())), {
      message: 'redis:// or rediss:// URL(s), comma-separated with REDIS_CLUSTER=true',
    })
    .default('redis://127.0.0.1:6379'),
  REDIS_CLUSTER: bool.default(false),
  /** `key`: the password in REDIS_URL (an access key); `entra`: a Microsoft Entra token, kept fresh. */
  REDIS_AUTH: z.enum(['key', 'entra']).default('key'),
  /** Object id of the identity Redis knows (Entra); read from the token when unset. */
  REDIS_ENTRA_USER: z.string().min(1).optional(),
  /** Async jobs' base64 images go to one blob per job in this container (needs storage) instead of Redis. */
  JOB_STAGING_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'not a valid container name')
    .optional(),
  /** Concurrent /score requests gather this long into one queue job, only while one is already in flight. */
  SCORE_COALESCE_MS: int(0).max(1_000).default(50),
  /**
   * /score jobs of this API process in flight before gathered requests wait for one to end instead of the
   * window. Raise it where one API process feeds many GPU workers through small jobs.
   */
  SCORE_COALESCE_MAX_JOBS: int(1).default(2),
  /**
   * How workers reach this API process for the inline images of /score requests (e.g. http://10.0.0.4:8080);
   * `off`: through Redis. Unset: the bound address on a loopback HOST, Redis otherwise.
   */
  INLINE_HANDOFF_URL: z.union([z.literal('off'), z.string().url()]).optional(),
  REDIS_AUTOSTART: bool.default(true),
  /** Every Redis key starts with it, as a cluster hash tag: `embedpool` is used as `{embedpool}`. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[A-Za-z0-9_.-]+\}|[A-Za-z0-9_.-]+)$/)
    .default('embedpool')
    .transform(hashTagged),
  RESULT_TTL_S: int(1).default(300),
  READY_WORKER_TTL_S: int(1).default(15),

  // Async jobs (/v1/jobs) and their outputs
  MAX_JOB_IMAGES: int(1).default(1000),
  JOB_TTL_S: int(60).default(7 * 24 * 3600),
  JOB_RESULT_TTL_S: int(60).default(24 * 3600),
  BLOB_CONNECTION_STRING: z.string().min(1).optional(),
  BLOB_SAS_URL: z.string().url().optional(),
  BLOB_ACCOUNT_URL: z.string().url().optional(),
  // Which user-assigned managed identity DefaultAzureCredential uses (the SDK reads the same variable).
  AZURE_CLIENT_ID: z.string().min(1).optional(),
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
  // Hugging Face hub cache conventions (huggingface_hub's variables): models already there are used.
  HF_HOME: z.string().min(1).optional(),
  HF_HUB_CACHE: z.string().min(1).optional(),
  HF_HUB_OFFLINE: bool.default(false),

  // Runtime
  EXECUTION_PROVIDER: z.enum(['cpu', 'cuda']).default('cpu'),
  CUDA_DEVICE_ID: int(0).default(0),
  INTRA_OP_THREADS: int(0).default(0),
  INTER_OP_THREADS: int(0).default(1),
  GRAPH_OPTIMIZATION: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
  ORT_SPINNING: z.enum(['auto', 'on', 'off']).default('auto'),
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
  /** Worker pools every process reports desired workers for (`name` or `name:default images/s`). */
  AUTOSCALE_POOLS: list.default([]).transform((entries, ctx) => {
    const out: { name: string; rate?: number }[] = [];
    for (const entry of entries) {
      const m = /^([a-z0-9][a-z0-9-]{0,31})(?::([0-9]+(?:\.[0-9]+)?))?$/.exec(entry);
      if (!m || (m[2] !== undefined && !(Number(m[2]) > 0))) {
        ctx.addIssue({ code: 'custom', message: `pool entry ${JSON.stringify(entry)}: name or name:rate` });
        return z.NEVER;
      }
      out.push(m[2] === undefined ? { name: m[1]! } : { name: m[1]!, rate: Number(m[2]) });
    }
    return out;
  }),
  /** The pool this worker belongs to (e.g. `cpu`, `gpu`): its rate and count are reported per pool. */
  WORKER_POOL: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,31}$/)
    .default('default'),

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
  /** First retry delay of an async job (exponential). The catalogue (queue/catalogue.ts) reads every retry policy here. */
  JOB_BACKOFF_MS: int(1).default(1_000),
  /** Tries per /score job (worker crashes count); short backoff: someone is waiting. */
  SCORE_ATTEMPTS: int(1).max(20).default(3),
  SCORE_BACKOFF_MS: int(1).default(500),
  WORKER_METRICS_PORT: int(0).max(65535).default(9464),
  WORKER_METRICS_HOST: z.string().min(1).default('127.0.0.1'),

  // Images and URLs fetched on a user's behalf
  MAX_IMAGE_BYTES: int(1).default(20 * 1024 * 1024),
  MAX_IMAGE_PIXELS: int(1).default(100_000_000),
  /**
   * JPEG (and WebP) decoders scale down by 2, 4 or 8 while decoding when the image is at least that much
   * larger than the resize target: parity fixture cosine to exact decoding >= 0.99997 (bench/shrink-parity.ts).
   */
  SHRINK_ON_LOAD: bool.default(true),
  DECODE_TIMEOUT_S: int(1).default(10),
  FETCH_ALLOW: list.default([]),
  FETCH_CONNECT_TIMEOUT_MS: int(1).default(5_000),
  FETCH_HEADERS_TIMEOUT_MS: int(1).default(10_000),
  FETCH_TOTAL_TIMEOUT_MS: int(1).default(30_000),
  FETCH_MAX_REDIRECTS: int(0).max(10).default(3),

  // Tracing (OpenTelemetry, OTLP/HTTP): off unless an endpoint is set; the SDK reads these (and the other
  // standard OTEL_* variables) itself, they are here so a bad value stops the boot with its name.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().min(1).optional(),
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
});

export type Config = z.infer<typeof envSchema>;
export type EnvName = keyof Config;
