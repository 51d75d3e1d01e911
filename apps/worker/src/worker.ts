import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { MicroBatcher } from '@embedpool/core/batching';
import { blobAuthFromConfig, createBlobServiceClient } from '@embedpool/core/blob';
import type { Config } from '@embedpool/core/config';
import { DeliveryQueue } from '@embedpool/core/delivery';
import { Engine } from '@embedpool/core/engine';
import { type EmbedJobData, JobStore } from '@embedpool/core/jobs';
import { createLogger, type Logger } from '@embedpool/core/logger';
import {
  registerFleetMetrics,
  registerGenerationMetrics,
  registerProcessMetrics,
} from '@embedpool/core/metrics';
import { createUrlPolicy } from '@embedpool/core/net';
import { type ModelPrecision, readModelPrecision } from '@embedpool/core/precision';
import type { PreprocessOptions } from '@embedpool/core/preprocess';
import {
  BacklogReconciler,
  createRedis,
  GenerationWatch,
  heartbeat,
  JOBS,
  prepareRedisAuth,
  QUEUES,
  removeBacklog,
  removeWorker,
  type ScoreJobData,
  type WorkerInfo,
} from '@embedpool/core/queue';
import type { DetectedSku } from '@embedpool/core/sku';
import { bullmqTelemetry } from '@embedpool/core/telemetry';
import { type Job, Worker } from 'bullmq';
import { Registry } from 'prom-client';
import { EmbedPipeline } from './embed-pipeline';
import { type IngestWorkerHandle, startIngestWorker } from './ingest';
import { createJobProcessor, type DeliveryEnqueuer } from './job-processor';
import { createWorkerMetrics, type WorkerMetrics } from './metrics';
import { type ModelSource, resolveModel } from './model-source';
import { createScoreProcessor } from './score-processor';
import { createInferenceBatcher } from './stages/infer';
import { type WarmUpResult, warmUp } from './warm-up';

export interface StartWorkerOptions {
  config: Config;
  logger?: Logger;
  registry?: Registry;
  /** Skip model resolution (tests, or a caller that resolved it already). */
  model?: ModelSource;
  /** Where async jobs with callbacks hand their delivery. */
  deliveries?: DeliveryEnqueuer;
  /** The machine plan this worker was sized with (logged at boot, exported as embedpool_worker_plan_info). */
  plan?: DetectedSku;
  /** How often the backlog is swept for entries whose job is gone (default 10 s). */
  backlogSweepMs?: number;
}

const BACKLOG_SWEEP_MS = 10_000;

export interface WorkerHandle {
  id: string;
  engine: Engine;
  batcher: MicroBatcher;
  model: ModelSource;
  /** What the model computes in, from its metadata or its graph (int8 after `embedpool model quantize`). */
  precision: ModelPrecision | 'unknown';
  metrics: WorkerMetrics;
  registry: Registry;
  /** Bulk-ingestion planner and chunk processors; undefined without a storage account. */
  ingest: IngestWorkerHandle | undefined;
  /** The dummy batch run before the first heartbeat. */
  warmUp: WarmUpResult & { finishedAt: number };
  /** When the first heartbeat was sent (epoch ms): never before the warm-up ended. */
  firstHeartbeatAt: number;
  /** Stops taking jobs, finishes the ones in flight, then releases the model and Redis. */
  close(): Promise<void>;
}

/**
 * What /v1/models reports: the source's own word (a fetched variant), else float16 inputs or an fp16 file
 * name (exports usually keep float32 I/O around fp16 weights), else fp32.
 */
export function modelPrecision(model: ModelSource, inputType: string): string {
  if (model.precision) return model.precision;
  if (inputType === 'float16' || /(^|[_.-])fp16([_.-]|$)/i.test(model.path.split('/').pop() ?? ''))
    return 'fp16';
  return 'fp32';
}

/** The heartbeat's precision: the graph's own word (int8 metadata, float16 inputs), else the source's. */
export function heartbeatPrecision(
  read: ModelPrecision | 'unknown',
  model: ModelSource,
  inputType: string,
): ModelPrecision {
  if (read !== 'unknown') return read;
  return modelPrecision(model, inputType) === 'fp16' ? 'float16' : 'float32';
}

export async function startWorker(opts: StartWorkerOptions): Promise<WorkerHandle> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger({ name: 'worker', level: config.LOG_LEVEL });
  const registry = opts.registry ?? new Registry();
  const metrics = createWorkerMetrics(registry);
  registerProcessMetrics(registry);
  // Before any connection: with REDIS_AUTH=entra every client logs in with the token fetched here.
  await prepareRedisAuth(config, {
    onError: (err) => logger.warn({ err: err.message }, 'Redis token refresh failed'),
  });
  const model = opts.model ?? (await resolveModel(config, logger));
  const engine = await Engine.load({
    modelPath: model.path,
    threads: config.INFERENCE_THREADS,
    logger,
    runtime: {
      executionProvider: config.EXECUTION_PROVIDER,
      cudaDeviceId: config.CUDA_DEVICE_ID,
      intraOpThreads: config.INTRA_OP_THREADS,
      interOpThreads: config.INTER_OP_THREADS,
      graphOptimization: config.GRAPH_OPTIMIZATION,
      spinning: config.ORT_SPINNING,
    },
  });
  // Read from the file without loading its weights again; a model ORT loaded but we cannot parse is 'unknown'.
  const precisionInfo = await readModelPrecision(model.path).catch((err: unknown) => {
    logger.warn({ err, model: model.path }, 'could not read the model precision');
    return undefined;
  });
  const precision = precisionInfo?.precision ?? 'unknown';
  if (precisionInfo?.precision === 'int8') {
    logger.info(
      {
        method: precisionInfo.metadata['embedpool.quantization.method'],
        minCosine: precisionInfo.metadata['embedpool.quantization.min_cosine'],
        source: precisionInfo.metadata['embedpool.source.id'],
      },
      'int8 model',
    );
  }
  const crop = model.preprocessor.crop_size;
  const height = engine.info.height ?? crop?.height ?? 224;
  const width = engine.info.width ?? crop?.width ?? 224;
  const batcher = createInferenceBatcher(
    engine,
    { maxBatchSize: config.MAX_BATCH_SIZE, batchWaitMs: config.BATCH_WAIT_MS, height, width },
    metrics,
  );
  metrics.modelInfo.set(
    {
      // Both labels carry the model's id (not its file name: every export is `model.onnx`).
      model: model.modelId,
      model_id: model.modelId,
      provider: engine.provider,
      dim: String(engine.dim ?? 0),
      random_weights: String(model.randomWeights),
      precision,
    },
    1,
  );

  const preprocess: PreprocessOptions = {
    config: model.preprocessor,
    maxBytes: config.MAX_IMAGE_BYTES,
    maxInputPixels: config.MAX_IMAGE_PIXELS,
    decodeTimeoutSeconds: config.DECODE_TIMEOUT_S,
    shrinkOnLoad: config.SHRINK_ON_LOAD,
  };
  const policy = createUrlPolicy({
    allow: config.FETCH_ALLOW,
    maxRedirects: config.FETCH_MAX_REDIRECTS,
    connectTimeoutMs: config.FETCH_CONNECT_TIMEOUT_MS,
    headersTimeoutMs: config.FETCH_HEADERS_TIMEOUT_MS,
    totalTimeoutMs: config.FETCH_TOTAL_TIMEOUT_MS,
    maxBytes: config.MAX_IMAGE_BYTES,
  });
  const pipeline = new EmbedPipeline({
    batcher,
    policy,
    preprocess,
    maxImageBytes: config.MAX_IMAGE_BYTES,
    decodeConcurrency: config.DECODE_CONCURRENCY,
    metrics,
  });

  const redis = createRedis(config, 'consumer');
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const scoreProcessor = createScoreProcessor({
    pipeline,
    redis,
    prefix: config.QUEUE_PREFIX,
    resultTtlSeconds: config.RESULT_TTL_S,
    modelId: model.modelId,
    dim: () => engine.dim ?? 0,
    logger,
    metrics,
  });
  const blobAuth = blobAuthFromConfig(config);
  // Callbacks leave through the delivery queue, so a failing receiver never re-runs the model.
  const deliveryRedis = config.CALLBACK_SECRET ? createRedis(config, 'producer') : undefined;
  const deliveries =
    opts.deliveries ?? (deliveryRedis ? DeliveryQueue.fromConfig(deliveryRedis, config) : undefined);
  const jobStore = new JobStore(redis, config.QUEUE_PREFIX, config.JOB_TTL_S);
  const jobProcessor = createJobProcessor({
    pipeline,
    redis,
    prefix: config.QUEUE_PREFIX,
    store: jobStore,
    resultTtlSeconds: config.JOB_RESULT_TTL_S,
    modelId: model.modelId,
    dim: () => engine.dim ?? 0,
    logger,
    perJobConcurrency: Math.max(config.MAX_BATCH_SIZE * 2, config.DECODE_CONCURRENCY),
    ...(blobAuth
      ? {
          blob: createBlobServiceClient(blobAuth, {
            retry: {
              maxTries: config.BLOB_MAX_TRIES,
              retryDelayMs: config.BLOB_RETRY_DELAY_MS,
              maxRetryDelayMs: config.BLOB_RETRY_DELAY_MS * 8,
            },
          }),
          blobRetryDelayMs: config.BLOB_RETRY_DELAY_MS,
        }
      : {}),
    ...(deliveries ? { deliveries } : {}),
  });
  // One queue, two kinds of job: sync /score requests (no priority, served first) and async jobs.
  const processor = (job: Job) => {
    if (job.attemptsMade === 0) {
      metrics.stage.observe({ stage: 'queue_wait' }, Math.max(0, Date.now() - job.timestamp) / 1000);
    }
    return job.name === JOBS.embedJob
      ? jobProcessor(job as Job<EmbedJobData>)
      : scoreProcessor(job as Job<ScoreJobData>);
  };
  const fleet = registerFleetMetrics(registry, { redis, config });
  metrics.planInfo.set(
    {
      sku: opts.plan?.size ?? 'unknown',
      source: opts.plan?.source ?? 'config',
      provider: config.EXECUTION_PROVIDER,
      batch_size: String(config.MAX_BATCH_SIZE),
      intra_op_threads: String(config.INTRA_OP_THREADS),
      inference_threads: String(config.INFERENCE_THREADS),
      decode_concurrency: String(config.DECODE_CONCURRENCY),
    },
    1,
  );
  const worker = new Worker(QUEUES.embed, processor, {
    connection: createRedis(config, 'consumer'),
    prefix: config.QUEUE_PREFIX,
    concurrency: config.WORKER_CONCURRENCY,
    lockDuration: config.JOB_LOCK_MS,
    stalledInterval: config.JOB_STALLED_CHECK_MS,
    maxStalledCount: config.JOB_MAX_STALLED,
    autorun: false,
    // Traces: each job's processing span continues the trace its producer started (OTEL_* set only).
    ...bullmqTelemetry(),
  });
  worker.on('error', (err) => {
    // After a freeze (or a loop stall) longer than JOB_LOCK_MS another worker took the job over and may have
    // finished it: this worker's late renewal or finish is refused, and that refusal is the system working.
    if (/could not renew lock|Missing (lock|key) for job/.test(err.message)) {
      logger.warn({ err: err.message }, 'job taken over by another worker; this stale attempt is dropped');
      return;
    }
    logger.error({ err }, 'worker error');
  });
  const finished = (job: Job) => {
    metrics.stage.observe({ stage: 'end_to_end' }, Math.max(0, Date.now() - job.timestamp) / 1000);
    void removeBacklog(redis, config.QUEUE_PREFIX, job.id!).catch(() => {});
  };
  // Self-healing backlog: entries whose job finished or vanished without its HDEL (a worker killed right
  // after finishing, a producer killed between its HSET and its add) leave within two sweeps.
  const reconciler = new BacklogReconciler(redis, config.QUEUE_PREFIX, worker.toKey(''));
  const sweepTimer = setInterval(() => {
    reconciler
      .sweep()
      .then((removed) => {
        if (removed.length > 0) {
          metrics.backlogSwept.inc(removed.length);
          logger.warn(
            { removed: removed.length, jobIds: removed.slice(0, 10) },
            'backlog entries without a job removed',
          );
        }
      })
      .catch((err: Error) => logger.debug({ err: err.message }, 'backlog sweep failed'));
  }, opts.backlogSweepMs ?? BACKLOG_SWEEP_MS);
  sweepTimer.unref();
  const generation = new GenerationWatch({ redis, prefix: config.QUEUE_PREFIX, logger }).start();
  registerGenerationMetrics(registry, generation, config.JOB_TTL_S);
  worker.on('completed', (job) => {
    metrics.jobs.inc({ status: 'completed' });
    finished(job);
  });
  worker.on('failed', (job, err) => {
    metrics.jobs.inc({ status: 'failed' });
    // Only a job that will not run again leaves the backlog.
    if (job && (err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1))) {
      finished(job);
      // A job failed by BullMQ itself (stalled too often: it killed or froze every worker it met) never
      // reached the processor's own failure path: close its record, or it would stay 'running' for good.
      if (job.name === JOBS.embedJob)
        void jobStore
          .fail(job.id!, { code: 'INTERNAL', message: `job failed: ${err.message}` })
          .catch(() => {});
    }
    logger.warn({ jobId: job?.id, err: err.message }, 'job failed');
  });

  // Before the first heartbeat: /readyz counts this worker only once its first real request is not the
  // one that pays for onnxruntime's first-run allocations.
  const warm = await warmUp(engine, { batch: config.MAX_BATCH_SIZE, height, width }, logger);
  const warmedAt = Date.now();

  const info: WorkerInfo = {
    id,
    host: hostname(),
    pid: process.pid,
    model: model.path,
    modelId: model.modelId,
    dim: engine.dim ?? 0,
    provider: engine.provider,
    randomWeights: model.randomWeights,
    precision: heartbeatPrecision(precision, model, engine.info.inputType),
    pool: config.WORKER_POOL,
    startedAt: Date.now(),
  };
  let beating = false;
  // Throughput while busy, as an EWMA over heartbeat intervals in which the model had work.
  let rate = 0;
  let mark = { at: performance.now(), images: engine.stats.images, busyMs: engine.stats.busyMs };
  const measure = () => {
    const now = { at: performance.now(), images: engine.stats.images, busyMs: engine.stats.busyMs };
    const images = now.images - mark.images;
    const busyShare = (now.busyMs - mark.busyMs) / Math.max(1, now.at - mark.at);
    // Only intervals where the model was busy most of the time say what this worker can do.
    if (images > 0 && busyShare > 0.5) {
      const sample = images / ((now.at - mark.at) / 1000);
      rate = rate === 0 ? sample : 0.7 * rate + 0.3 * sample;
    }
    mark = now;
  };
  const beat = async () => {
    if (beating) return;
    beating = true;
    try {
      measure();
      await heartbeat(redis, config.QUEUE_PREFIX, {
        ...info,
        dim: engine.dim ?? info.dim,
        imagesPerSecond: rate,
      });
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'heartbeat failed');
    } finally {
      beating = false;
    }
  };
  await beat();
  const firstHeartbeatAt = Date.now();
  const beatTimer = setInterval(beat, Math.max(500, (config.READY_WORKER_TTL_S * 1000) / 3));
  beatTimer.unref();

  let busyMark = { at: performance.now(), busy: engine.stats.busyMs };
  metrics.setBusySource(() => {
    const now = performance.now();
    const ratio = (engine.stats.busyMs - busyMark.busy) / Math.max(1, now - busyMark.at);
    busyMark = { at: now, busy: engine.stats.busyMs };
    return Math.min(1, ratio / Math.max(1, engine.threads));
  });

  const ingest = await startIngestWorker({
    config,
    pipeline,
    modelId: model.modelId,
    dim: () => engine.dim ?? 0,
    preprocessor: model.preprocessor,
    logger,
    registry,
  });
  void worker.run();
  logger.info(
    {
      workerId: id,
      model: model.modelId,
      precision,
      provider: engine.provider,
      maxBatch: config.MAX_BATCH_SIZE,
    },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(beatTimer);
      clearInterval(sweepTimer);
      generation.stop();
      // worker.close() waits for the active jobs, whose images are already in the batcher.
      await worker.close();
      // Chunks embed through the batcher and engine: they stop before those do.
      await ingest?.close();
      await batcher.close();
      await engine.close();
      await removeWorker(redis, config.QUEUE_PREFIX, id).catch(() => {});
      await fleet.close();
      if (deliveries instanceof DeliveryQueue) await deliveries.close().catch(() => {});
      deliveryRedis?.disconnect();
      redis.disconnect();
      logger.info({ workerId: id }, 'worker stopped');
    })();
    return closing;
  };
  return {
    id,
    engine,
    batcher,
    model,
    precision,
    metrics,
    registry,
    ingest,
    warmUp: { ...warm, finishedAt: warmedAt },
    firstHeartbeatAt,
    close,
  };
}
