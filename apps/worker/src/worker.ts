import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { MicroBatcher } from '@embedpool/core/batching';
import type { Config } from '@embedpool/core/config';
import type { Engine } from '@embedpool/core/engine';
import { createLogger, type Logger } from '@embedpool/core/logger';
import {
  registerFleetMetrics,
  registerGenerationMetrics,
  registerProcessMetrics,
} from '@embedpool/core/metrics';
import type { ModelPrecision } from '@embedpool/core/precision';
import { GenerationWatch, type WorkerInfo } from '@embedpool/core/queue';
import type { DetectedSku } from '@embedpool/core/sku';
import { Registry } from 'prom-client';
import { createWorkerDeps, type WorkerDeps } from './deps';
import { EmbedPipeline } from './embed-pipeline';
import { createEmbedWorker } from './embed-worker';
import { heartbeatPrecision, startHeartbeat } from './heartbeat';
import { loadInference } from './inference';
import { type IngestWorkerHandle, startIngestWorker } from './ingest';
import { createWorkerMetrics, type WorkerMetrics } from './metrics';
import { type ModelSource, resolveModel } from './model-source';
import { type WarmUpResult, warmUp } from './warm-up';

export { heartbeatPrecision, modelPrecision } from './heartbeat';

export interface StartWorkerOptions {
  config: Config;
  logger?: Logger;
  registry?: Registry;
  /** Skip model resolution (tests, or a caller that resolved it already). */
  model?: ModelSource;
  /**
   * Redis clients, storage client and URL policies shared with the process's other consumers (the delivery
   * worker): its owner closes them. Default: built here from `config` and closed with the worker.
   */
  deps?: WorkerDeps;
  /** The machine plan this worker was sized with (logged at boot, exported as embedpool_worker_plan_info). */
  plan?: DetectedSku;
  /** How often the backlog is swept for entries whose job is gone (default 10 s). */
  backlogSweepMs?: number;
}

export interface WorkerHandle {
  id: string;
  engine: Engine;
  batcher: MicroBatcher;
  model: ModelSource;
  /** What the model computes in, from its metadata or its graph (int8 after `embedpool model quantize`). */
  precision: ModelPrecision | 'unknown';
  metrics: WorkerMetrics;
  registry: Registry;
  /** What the worker's consumers share; hand it to startDeliveryWorker to share it there too. */
  deps: WorkerDeps;
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
 * A worker process's embedding side: the model and its micro-batcher, the `embed` queue's consumer, the
 * ingestion consumers (with a storage account), the heartbeat and the fleet-wide metrics. Each step is a
 * named function; what they share (Redis, storage client, URL policies) is built once in deps.ts.
 * Long: the start order (warm-up before the first heartbeat, ingestion after the embed consumer) and the
 * close order are one sequence read top to bottom; splitting it would hide the order.
 */
export async function startWorker(opts: StartWorkerOptions): Promise<WorkerHandle> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger({ name: 'worker', level: config.LOG_LEVEL });
  const registry = opts.registry ?? new Registry();
  const metrics = createWorkerMetrics(registry);
  registerProcessMetrics(registry);
  const deps = opts.deps ?? (await createWorkerDeps(config, { logger }));
  const loaded = await loadModel(opts, metrics, logger).catch(async (err: unknown) => {
    if (!opts.deps) await deps.close();
    throw err;
  });
  const { model, engine, batcher, precision, height, width } = loaded;
  const pipeline = createPipeline(config, model, batcher, deps, metrics);
  const dim = () => engine.dim ?? 0;
  const embed = createEmbedWorker({
    deps,
    pipeline,
    modelId: model.modelId,
    dim,
    metrics,
    logger,
    ...(opts.backlogSweepMs ? { backlogSweepMs: opts.backlogSweepMs } : {}),
  });
  setPlanInfo(metrics, config, opts.plan);
  const fleet = watchFleet(registry, deps, logger);

  // Before the first heartbeat: /readyz counts this worker only once its first real request is not the
  // one that pays for onnxruntime's first-run allocations.
  const warm = await warmUp(engine, { batch: config.MAX_BATCH_SIZE, height, width }, logger);
  const warmedAt = Date.now();
  const info = workerInfo(config, model, engine, precision);
  const { id } = info;
  const beat = await startHeartbeat({ redis: deps.redis, config, engine, info, logger });
  measureBusy(metrics, engine);

  const ingest = await startIngestWorker({
    config,
    pipeline,
    modelId: model.modelId,
    dim,
    preprocessor: model.preprocessor,
    logger,
    registry,
    deps,
  });
  void embed.worker.run();
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

  const close = closeOnce(async () => {
    beat.stop();
    await embed.close();
    // Chunks embed through the batcher and engine: they stop before those do.
    await ingest?.close();
    await batcher.close();
    await engine.close();
    await beat.leave();
    await fleet.close();
    if (!opts.deps) await deps.close();
    logger.info({ workerId: id }, 'worker stopped');
  });
  return {
    id,
    engine,
    batcher,
    model,
    precision,
    metrics,
    registry,
    deps,
    ingest,
    warmUp: { ...warm, finishedAt: warmedAt },
    firstHeartbeatAt: beat.firstAt,
    close,
  };
}

/** `stop`, run at most once however often the returned function is called. */
function closeOnce(stop: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= stop();
    return closing;
  };
}

/** The model (resolved unless given) loaded into the engine and its micro-batcher. */
async function loadModel(opts: StartWorkerOptions, metrics: WorkerMetrics, logger: Logger) {
  const model = opts.model ?? (await resolveModel(opts.config, logger));
  return { model, ...(await loadInference(opts.config, model, metrics, logger)) };
}

/** Fetch, decode, batch and infer for /score, /v1/jobs and ingestion chunks alike (one decode limit). */
function createPipeline(
  config: Config,
  model: ModelSource,
  batcher: MicroBatcher,
  deps: WorkerDeps,
  metrics: WorkerMetrics,
): EmbedPipeline {
  return new EmbedPipeline({
    batcher,
    policy: deps.fetchPolicy,
    preprocess: {
      config: model.preprocessor,
      maxBytes: config.MAX_IMAGE_BYTES,
      maxInputPixels: config.MAX_IMAGE_PIXELS,
      decodeTimeoutSeconds: config.DECODE_TIMEOUT_S,
      shrinkOnLoad: config.SHRINK_ON_LOAD,
    },
    maxImageBytes: config.MAX_IMAGE_BYTES,
    decodeConcurrency: config.DECODE_CONCURRENCY,
    metrics,
  });
}

/** What this worker's heartbeat says about it (/readyz, /v1/models and the autoscaler read it). */
function workerInfo(
  config: Config,
  model: ModelSource,
  engine: Engine,
  precision: ModelPrecision | 'unknown',
): WorkerInfo {
  return {
    id: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
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
}

/**
 * The fleet-wide series (queue depth, backlog, desired workers) and the data-loss watch (generation), read
 * from Redis at scrape time.
 */
function watchFleet(registry: Registry, deps: WorkerDeps, logger: Logger): { close(): Promise<void> } {
  const { config, redis } = deps;
  const fleet = registerFleetMetrics(registry, { redis, config });
  const generation = new GenerationWatch({ redis, prefix: config.QUEUE_PREFIX, logger }).start();
  registerGenerationMetrics(registry, generation, config.JOB_TTL_S);
  return {
    close: async () => {
      generation.stop();
      await fleet.close();
    },
  };
}

/** embedpool_worker_plan_info: the machine plan this worker was sized with. */
function setPlanInfo(metrics: WorkerMetrics, config: Config, plan: DetectedSku | undefined): void {
  metrics.planInfo.set(
    {
      sku: plan?.size ?? 'unknown',
      source: plan?.source ?? 'config',
      provider: config.EXECUTION_PROVIDER,
      batch_size: String(config.MAX_BATCH_SIZE),
      intra_op_threads: String(config.INTRA_OP_THREADS),
      inference_threads: String(config.INFERENCE_THREADS),
      decode_concurrency: String(config.DECODE_CONCURRENCY),
    },
    1,
  );
}

/** The busy ratio gauge: the share of the engine's threads that ran the model since the last scrape. */
function measureBusy(metrics: WorkerMetrics, engine: Engine): void {
  let mark = { at: performance.now(), busy: engine.stats.busyMs };
  metrics.setBusySource(() => {
    const now = performance.now();
    const ratio = (engine.stats.busyMs - mark.busy) / Math.max(1, now - mark.at);
    mark = { at: now, busy: engine.stats.busyMs };
    return Math.min(1, ratio / Math.max(1, engine.threads));
  });
}
