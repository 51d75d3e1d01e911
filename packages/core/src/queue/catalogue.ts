/**
 * The job catalogue: every job name the system queues, with its queue, its payload schema and its job
 * options. Producers enqueue through it (producer.ts validates every payload against the schema) and
 * workers dispatch through it (dispatch.ts validates again on dequeue and refuses unknown names), so adding
 * a job type is one entry here and one handler in the worker that drains its queue.
 */
import type { JobsOptions } from 'bullmq';
import type { z } from 'zod';
import type { Config } from '../config';
import { DELIVERY_BACKOFF_TYPE, deliveryJobSchema } from '../delivery/job';
import { INGEST_JOBS, INGEST_QUEUES } from '../ingest/names';
import { chunkJobSchema, planJobSchema } from '../ingest/schemas';
import { embedJobSchema } from '../jobs/schemas';
import { JOBS, QUEUES } from './names';
import { scoreJobSchema } from './schemas';

/** The settings the catalogue's job options are made from: one retry policy per job kind, all from Config. */
export type RetryPolicy = Pick<
  Config,
  | 'SCORE_ATTEMPTS'
  | 'SCORE_BACKOFF_MS'
  | 'JOB_ATTEMPTS'
  | 'JOB_BACKOFF_MS'
  | 'INGEST_ATTEMPTS'
  | 'INGEST_BACKOFF_MS'
  | 'CALLBACK_ATTEMPTS'
  | 'CALLBACK_BACKOFF_MS'
  | 'JOB_TTL_S'
>;

/** The documented defaults (config/schema.ts, ingest/settings.ts), for producers built without a Config. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  SCORE_ATTEMPTS: 3,
  SCORE_BACKOFF_MS: 500,
  JOB_ATTEMPTS: 3,
  JOB_BACKOFF_MS: 1_000,
  INGEST_ATTEMPTS: 5,
  INGEST_BACKOFF_MS: 1_000,
  CALLBACK_ATTEMPTS: 8,
  CALLBACK_BACKOFF_MS: 1_000,
  JOB_TTL_S: 7 * 24 * 3600,
};

/** Sync /score jobs carry no priority and BullMQ serves them first; async jobs queue behind them. */
export const DEFAULT_JOB_PRIORITY = 100;

/** Ingestion keeps failed jobs a week: an operator looks at them after the run. */
const INGEST_FAILED = { age: 7 * 24 * 3600, count: 10_000 };

interface JobSpec {
  queue: string;
  schema: z.ZodType;
  /** Retries, backoff, retention and priority of every job of this name (a producer may add a jobId). */
  options(policy: RetryPolicy): JobsOptions;
}

export const JOB_CATALOGUE = {
  /** A synchronous /score (or /v1/embeddings) request: someone is waiting on the answer. */
  [JOBS.score]: {
    queue: QUEUES.embed,
    schema: scoreJobSchema,
    options: (p) => ({
      attempts: p.SCORE_ATTEMPTS,
      backoff: { type: 'exponential', delay: p.SCORE_BACKOFF_MS },
      // The answer travels through the result key; the job record has no reader once it is done.
      removeOnComplete: true,
      removeOnFail: { age: 3600, count: 1000 },
    }),
  },
  /** An async /v1/jobs job: the answer goes to its output (inline, blob or callback). */
  [JOBS.embedJob]: {
    queue: QUEUES.embed,
    schema: embedJobSchema,
    options: (p) => ({
      priority: DEFAULT_JOB_PRIORITY,
      attempts: p.JOB_ATTEMPTS,
      backoff: { type: 'exponential', delay: p.JOB_BACKOFF_MS },
      removeOnComplete: true,
      removeOnFail: { age: 24 * 3600, count: 10_000 },
    }),
  },
  /** One callback POST of a finished async job; dead letters stay as long as the job's record. */
  [JOBS.deliver]: {
    queue: QUEUES.deliveries,
    schema: deliveryJobSchema,
    options: (p) => ({
      attempts: p.CALLBACK_ATTEMPTS,
      backoff: { type: DELIVERY_BACKOFF_TYPE, delay: p.CALLBACK_BACKOFF_MS },
      removeOnComplete: true,
      removeOnFail: { age: p.JOB_TTL_S },
    }),
  },
  /** An ingestion's planner: lists the source (or reads its manifest) into chunk jobs. */
  [INGEST_JOBS.plan]: {
    queue: INGEST_QUEUES.plan,
    schema: planJobSchema,
    options: (p) => ingestOptions(p),
  },
  /** Writes an ingestion round's index and manifest once every chunk is committed. */
  [INGEST_JOBS.finalize]: {
    queue: INGEST_QUEUES.plan,
    schema: planJobSchema,
    options: (p) => ingestOptions(p),
  },
  /**
   * Legacy: an ingestion's completion callback as queued by workers before callbacks moved to `deliveries`.
   * Nothing queues it now; its handler (apps/worker/src/ingest/ingest-worker.ts) forwards a job still in
   * Redis from an older release to the deliveries queue. Drop it one release after.
   */
  [INGEST_JOBS.callback]: {
    queue: INGEST_QUEUES.plan,
    schema: planJobSchema,
    options: (p) => ({
      attempts: p.CALLBACK_ATTEMPTS,
      backoff: { type: 'exponential', delay: p.CALLBACK_BACKOFF_MS },
      removeOnComplete: true,
      removeOnFail: INGEST_FAILED,
    }),
  },
  /** Up to INGEST_CHUNK_SIZE blobs: downloaded, embedded, written as one shard. */
  [INGEST_JOBS.chunk]: {
    queue: INGEST_QUEUES.chunks,
    schema: chunkJobSchema,
    options: (p) => ingestOptions(p),
  },
} as const satisfies Record<string, JobSpec>;

function ingestOptions(p: RetryPolicy): JobsOptions {
  return {
    attempts: p.INGEST_ATTEMPTS,
    backoff: { type: 'exponential', delay: p.INGEST_BACKOFF_MS },
    removeOnComplete: true,
    removeOnFail: INGEST_FAILED,
  };
}

type Catalogue = typeof JOB_CATALOGUE;
export type JobName = keyof Catalogue;
/** The queue a job name goes to. */
export type QueueOf<K extends JobName> = Catalogue[K]['queue'];
export type QueueName = QueueOf<JobName>;
/** The names queued on one queue (what its worker must handle). */
export type JobsOn<Q extends QueueName> = { [K in JobName]: QueueOf<K> extends Q ? K : never }[JobName];
/** A payload as a handler gets it (defaults applied) and as a producer may give it. */
export type JobData<K extends JobName> = z.output<Catalogue[K]['schema']>;
export type JobInput<K extends JobName> = z.input<Catalogue[K]['schema']>;

export const JOB_NAMES = Object.keys(JOB_CATALOGUE) as JobName[];
/** Every queue of the catalogue, each once: what metrics, the dashboard and autoscaling look at. */
export const QUEUE_NAMES: readonly QueueName[] = [...new Set(JOB_NAMES.map((n) => JOB_CATALOGUE[n].queue))];

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(JOB_CATALOGUE, name);
}

export function jobsOn<Q extends QueueName>(queue: Q): JobsOn<Q>[] {
  return JOB_NAMES.filter((n) => JOB_CATALOGUE[n].queue === queue) as JobsOn<Q>[];
}

/** The options a job of `name` is queued with under `policy`. */
export function jobOptions(name: JobName, policy: RetryPolicy): JobsOptions {
  return JOB_CATALOGUE[name].options(policy);
}

/** The catalogue's part of a Config: what a producer is made from. */
export function retryPolicyFrom(config: Partial<RetryPolicy>): RetryPolicy {
  const out = { ...DEFAULT_RETRY_POLICY };
  for (const key of Object.keys(out) as (keyof RetryPolicy)[]) {
    const value = config[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
