import type { BlobServiceClient } from '@azure/storage-blob';
import type { Config } from '@embedpool/core/config';
import { DeliveryQueue } from '@embedpool/core/delivery';
import {
  type ChunkJobData,
  INGEST_JOBS,
  INGEST_QUEUES,
  IngestionStore,
  IngestQueues,
  type IngestSettings,
  ingestSettingsFrom,
} from '@embedpool/core/ingest';
import { createLogger, type Logger } from '@embedpool/core/logger';
import type { PreprocessorConfig } from '@embedpool/core/preprocess';
import { createDispatcher, createRedis, prepareRedisAuth } from '@embedpool/core/queue';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, type Registry } from 'prom-client';
import { createWorkerBlobClient, type WorkerDeps } from '../deps';
import { EmbedPipeline } from '../embed-pipeline';
import type { WorkerHandle } from '../worker';
import { queueIngestionCallback } from './callback';
import { createChunkProcessor } from './chunk-processor';
import type { IngestDeps, IngestMetrics } from './deps';
import { finalizeOrGiveUp } from './finalizer';
import { runPlanner } from './planner';

/**
 * The processors of ingestion's two queues, one handler per catalogue name through the dispatcher:
 * `ingest-plan` (planner, finalize and callback jobs) and `ingest-chunks`. The processors decide their last
 * attempt themselves and record failures in the ingestion, so what they throw keeps its retries.
 */
export function createIngestProcessors(deps: IngestDeps) {
  const keepRetries = { failPermanentAtOnce: false };
  const plan = createDispatcher(
    INGEST_QUEUES.plan,
    {
      [INGEST_JOBS.plan]: (job, token) => runPlanner(deps, job, token, job.data.ingestionId, job.data.round),
      [INGEST_JOBS.finalize]: (job) => finalizeOrGiveUp(deps, job, job.data.ingestionId, job.data.round),
      // Queued by an older worker: callbacks now go through the deliveries queue.
      [INGEST_JOBS.callback]: (job) => queueIngestionCallback(deps, job.data.ingestionId, job.data.round),
    },
    keepRetries,
  );
  const chunk = createDispatcher(
    INGEST_QUEUES.chunks,
    { [INGEST_JOBS.chunk]: createChunkProcessor(deps) },
    keepRetries,
  );
  return { plan, chunk };
}

export function createIngestMetrics(registry: Registry): IngestMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T) ?? make();
  const registers = [registry];
  return {
    chunks: get(
      'embedpool_ingest_chunks_total',
      () =>
        new Counter({
          name: 'embedpool_ingest_chunks_total',
          help: 'Ingestion chunks committed, by outcome (done, cancelled).',
          labelNames: ['outcome'] as const,
          registers,
        }),
    ),
    images: get(
      'embedpool_ingest_images_total',
      () =>
        new Counter({
          name: 'embedpool_ingest_images_total',
          help: 'Blobs of ingestions embedded (done) or failed.',
          labelNames: ['outcome'] as const,
          registers,
        }),
    ),
    listPages: get(
      'embedpool_ingest_list_pages_total',
      () =>
        new Counter({
          name: 'embedpool_ingest_list_pages_total',
          help: 'Source listing pages committed by ingestion planners.',
          registers,
        }),
    ),
  };
}

export interface StartIngestWorkerOptions {
  config: Config;
  /**
   * The worker's own EmbedPipeline (worker.ts passes it: chunks then share its decode limit and
   * micro-batcher with /score and /v1/jobs work). Either this or `worker`.
   */
  pipeline?: EmbedPipeline;
  /** A started worker: a pipeline over its micro-batcher is made (tests, tools). */
  worker?: WorkerHandle;
  modelId?: string;
  dim?: () => number;
  preprocessor?: PreprocessorConfig;
  logger?: Logger;
  registry?: Registry;
  /** Overrides of the INGEST_* settings (default: from `config`, then the defaults). */
  settings?: Partial<IngestSettings>;
  /** Default: the deployment's storage account (deps.blob, else blobAuthFromConfig). */
  blob?: BlobServiceClient;
  /** The process's shared Redis client, storage client and policies (worker.ts passes its own). */
  deps?: WorkerDeps;
}

export interface IngestWorkerHandle {
  planWorker: Worker;
  chunkWorker: Worker<ChunkJobData>;
  store: IngestionStore;
  queues: IngestQueues;
  settings: IngestSettings;
  /** Hands a running planner back to the queue, lets running chunks finish, then closes the connections. */
  close(): Promise<void>;
}

/**
 * Starts ingestion in a worker process: a BullMQ worker on `ingest-plan` and one on `ingest-chunks`.
 * Undefined when the deployment has no storage account (ingestions are then refused by the API too).
 * Close it before the micro-batcher and engine: its chunks embed through them.
 */
export async function startIngestWorker(
  opts: StartIngestWorkerOptions,
): Promise<IngestWorkerHandle | undefined> {
  const { config } = opts;
  const logger = (opts.logger ?? createLogger({ name: 'worker', level: config.LOG_LEVEL })).child({
    component: 'ingest',
  });
  const blob = opts.blob ?? (opts.deps ? opts.deps.blob : createWorkerBlobClient(config));
  if (!blob) {
    logger.info('no storage account configured: ingestion is off');
    return undefined;
  }
  const settings = ingestSettingsFrom(config, opts.settings);
  const model = ingestModel(opts);
  const shared = opts.deps;
  if (!shared) await prepareRedisAuth(config);
  const redis = shared?.redis ?? createRedis(config, 'consumer');
  const store = new IngestionStore(redis, config.QUEUE_PREFIX, config.JOB_TTL_S);
  // Its own producer: `settings` may override INGEST_ATTEMPTS (tests, benchmarks) for the jobs it queues.
  const queues = new IngestQueues(redis, {
    prefix: config.QUEUE_PREFIX,
    attempts: settings.INGEST_ATTEMPTS,
    backoffMs: settings.INGEST_BACKOFF_MS,
  });
  // Completion callbacks leave through the deliveries queue (stages/deliver-callback.ts), like job callbacks.
  const ownDeliveries =
    !shared && config.CALLBACK_SECRET ? DeliveryQueue.fromConfig(redis, config) : undefined;
  const deliveries = shared ? shared.deliveries : ownDeliveries;
  let closing = false;
  const deps: IngestDeps = {
    store,
    queues,
    blob,
    settings,
    ...model,
    maxImageBytes: config.MAX_IMAGE_BYTES,
    logger,
    closing: () => closing,
    ...(deliveries ? { deliveries } : {}),
    ...(opts.registry ? { metrics: createIngestMetrics(opts.registry) } : {}),
  };
  const connection = shared ? shared.workerConnection : () => createRedis(config, 'consumer');
  const { planWorker, chunkWorker } = createIngestConsumers(config, settings, deps, connection, logger);
  void planWorker.run();
  void chunkWorker.run();
  logger.info(
    {
      chunkSize: settings.INGEST_CHUNK_SIZE,
      chunkConcurrency: settings.INGEST_CHUNK_CONCURRENCY,
      maxQueuedChunks: settings.INGEST_MAX_QUEUED_CHUNKS,
    },
    'ingest worker started',
  );

  let stopping: Promise<void> | undefined;
  return {
    planWorker,
    chunkWorker,
    store,
    queues,
    settings,
    close: () => {
      stopping ??= (async () => {
        closing = true;
        await planWorker.close();
        await chunkWorker.close();
        await queues.close();
        await ownDeliveries?.close();
        if (!shared) redis.disconnect();
        logger.info('ingest worker stopped');
      })();
      return stopping;
    },
  };
}

/** The pipeline and model facts chunks embed with: the caller's, or made over a started worker's batcher. */
function ingestModel(
  opts: StartIngestWorkerOptions,
): Pick<IngestDeps, 'pipeline' | 'modelId' | 'dim' | 'preprocessor'> {
  const { config, worker } = opts;
  const pipeline =
    opts.pipeline ??
    (worker
      ? new EmbedPipeline({
          batcher: worker.batcher,
          // Blobs arrive as bytes; the URL policy is never used, but the pipeline wants one.
          policy: worker.deps.fetchPolicy,
          preprocess: {
            config: worker.model.preprocessor,
            maxBytes: config.MAX_IMAGE_BYTES,
            maxInputPixels: config.MAX_IMAGE_PIXELS,
            decodeTimeoutSeconds: config.DECODE_TIMEOUT_S,
          },
          maxImageBytes: config.MAX_IMAGE_BYTES,
          decodeConcurrency: config.DECODE_CONCURRENCY,
          metrics: worker.metrics,
        })
      : undefined);
  if (!pipeline) throw new Error('startIngestWorker needs a pipeline or a worker handle');
  const modelId = opts.modelId ?? worker?.model.modelId;
  if (!modelId) throw new Error('startIngestWorker needs a modelId (or a worker handle)');
  return {
    pipeline,
    modelId,
    dim: opts.dim ?? (() => worker?.engine.dim ?? 0),
    preprocessor: opts.preprocessor ?? worker?.model.preprocessor,
  };
}

/** The BullMQ workers of `ingest-plan` and `ingest-chunks` (created, not yet running). */
function createIngestConsumers(
  config: Config,
  settings: IngestSettings,
  deps: IngestDeps,
  connection: () => Redis,
  logger: Logger,
): { planWorker: Worker; chunkWorker: Worker<ChunkJobData> } {
  const processors = createIngestProcessors(deps);
  const common = {
    prefix: config.QUEUE_PREFIX,
    lockDuration: config.JOB_LOCK_MS,
    stalledInterval: config.JOB_LOCK_MS,
    autorun: false,
  };
  const planWorker = new Worker(INGEST_QUEUES.plan, processors.plan, {
    ...common,
    connection: connection(),
    concurrency: settings.INGEST_PLAN_CONCURRENCY,
    // A planner killed mid-listing is picked up again from its checkpoint, however often that happens.
    maxStalledCount: 1_000,
  });
  const chunkWorker = new Worker<ChunkJobData>(INGEST_QUEUES.chunks, processors.chunk, {
    ...common,
    connection: connection(),
    concurrency: settings.INGEST_CHUNK_CONCURRENCY,
    // The processor itself records a chunk that keeps killing workers (INGEST_MAX_CHUNK_CRASHES).
    maxStalledCount: settings.INGEST_MAX_CHUNK_CRASHES + 1,
  });
  for (const w of [planWorker, chunkWorker]) {
    w.on('error', (err) => logger.error({ err }, 'ingest worker error'));
    w.on('failed', (job, err) => logger.warn({ jobId: job?.id, err: err.message }, 'ingest job failed'));
  }
  return { planWorker, chunkWorker };
}
