import type { Config } from '@embedpool/core/config';
import { decodeJobFailure } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import { BacklogReconciler, createDispatcher, JOBS, QUEUES, removeBacklog } from '@embedpool/core/queue';
import { bullmqTelemetry } from '@embedpool/core/telemetry';
import { type Job, Worker } from 'bullmq';
import type { WorkerDeps } from './deps';
import type { EmbedPipeline } from './embed-pipeline';
import { createJobProcessor } from './job-processor';
import type { WorkerMetrics } from './metrics';
import { createScoreProcessor } from './score-processor';

const BACKLOG_SWEEP_MS = 10_000;

export interface EmbedWorkerOptions {
  deps: WorkerDeps;
  pipeline: EmbedPipeline;
  modelId: string;
  dim: () => number;
  metrics: WorkerMetrics;
  logger: Logger;
  /** How often the backlog is swept for entries whose job is gone (default 10 s). */
  backlogSweepMs?: number;
}

export interface EmbedWorker {
  worker: Worker;
  /** Stops the sweep and takes no more jobs; resolves once the jobs in flight have finished. */
  close(): Promise<void>;
}

/**
 * The consumer of the `embed` queue (created, not yet running: call `worker.run()`): sync /score requests
 * (no priority, served first) and async jobs, one handler per catalogue name through the dispatcher.
 */
export function createEmbedWorker(opts: EmbedWorkerOptions): EmbedWorker {
  const { deps, pipeline, metrics, logger } = opts;
  const { config, redis, jobStore } = deps;
  const prefix = config.QUEUE_PREFIX;
  const score = createScoreProcessor({
    pipeline,
    redis,
    prefix,
    resultTtlSeconds: config.RESULT_TTL_S,
    modelId: opts.modelId,
    dim: opts.dim,
    logger,
    metrics,
  });
  const embedJob = createJobProcessor({
    pipeline,
    redis,
    prefix,
    store: jobStore,
    resultTtlSeconds: config.JOB_RESULT_TTL_S,
    modelId: opts.modelId,
    dim: opts.dim,
    logger,
    perJobConcurrency: Math.max(config.MAX_BATCH_SIZE * 2, config.DECODE_CONCURRENCY),
    ...(deps.blob ? { blob: deps.blob, blobRetryDelayMs: config.BLOB_RETRY_DELAY_MS } : {}),
    ...(deps.deliveries ? { deliveries: deps.deliveries } : {}),
  });
  const dispatch = createDispatcher(QUEUES.embed, { [JOBS.score]: score, [JOBS.embedJob]: embedJob });
  const processor = (job: Job) => {
    if (job.attemptsMade === 0) {
      metrics.stage.observe({ stage: 'queue_wait' }, Math.max(0, Date.now() - job.timestamp) / 1000);
    }
    return dispatch(job);
  };
  const worker = new Worker(QUEUES.embed, processor, {
    connection: deps.workerConnection(),
    prefix,
    concurrency: config.WORKER_CONCURRENCY,
    lockDuration: config.JOB_LOCK_MS,
    stalledInterval: config.JOB_STALLED_CHECK_MS,
    maxStalledCount: config.JOB_MAX_STALLED,
    autorun: false,
    // Traces: each job's processing span continues the trace its producer started (OTEL_* set only).
    ...bullmqTelemetry(),
  });
  watchEmbedWorker(worker, deps, metrics, logger);
  const sweep = startBacklogSweep(worker, config, deps, metrics, logger, opts.backlogSweepMs);
  return {
    worker,
    close: async () => {
      clearInterval(sweep);
      // worker.close() waits for the active jobs, whose images are already in the batcher.
      await worker.close();
    },
  };
}

/** Logs, metrics and the backlog entry of every finished job; closes the record of a job failed for good. */
function watchEmbedWorker(worker: Worker, deps: WorkerDeps, metrics: WorkerMetrics, logger: Logger): void {
  const prefix = deps.config.QUEUE_PREFIX;
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
    void removeBacklog(deps.redis, prefix, job.id!).catch(() => {});
  };
  worker.on('completed', (job) => {
    metrics.jobs.inc({ status: 'completed' });
    finished(job);
  });
  worker.on('failed', (job, err) => {
    metrics.jobs.inc({ status: 'failed' });
    // Only a job that will not run again leaves the backlog.
    if (job && (err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1))) {
      finished(job);
      // A job that never reached its processor's own failure path (refused by the dispatcher: an invalid
      // payload on dequeue; or failed by BullMQ itself: stalled too often, it killed or froze every worker it
      // met) closes its record here with the code the failure carries, or it would stay queued for good.
      if (job.name === JOBS.embedJob) {
        const failure = decodeJobFailure(err.message) ?? {
          code: 'INTERNAL',
          message: `job failed: ${err.message}`,
        };
        void deps.jobStore.fail(job.id!, failure).catch(() => {});
      }
    }
    logger.warn({ jobId: job?.id, err: err.message }, 'job failed');
  });
}

/**
 * Self-healing backlog: entries whose job finished or vanished without its HDEL (a worker killed right
 * after finishing, a producer killed between its HSET and its add) leave within two sweeps.
 */
function startBacklogSweep(
  worker: Worker,
  config: Config,
  deps: WorkerDeps,
  metrics: WorkerMetrics,
  logger: Logger,
  everyMs = BACKLOG_SWEEP_MS,
): NodeJS.Timeout {
  const reconciler = new BacklogReconciler(deps.redis, config.QUEUE_PREFIX, worker.toKey(''));
  const timer = setInterval(() => {
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
  }, everyMs);
  timer.unref();
  return timer;
}
