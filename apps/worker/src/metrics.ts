import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The worker's own series. Registered on the registry it is given, so an all-in-one process shares one. */
export function createWorkerMetrics(registry: Registry) {
  const registers = [registry];
  // Read at scrape time: busy share of wall time since the previous scrape.
  let busySource: (() => number) | undefined;
  return {
    setBusySource(fn: () => number) {
      busySource = fn;
    },
    batchSize: new Histogram({
      name: 'embedpool_batch_size',
      help: 'Images per model run.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    }),
    modelRuns: new Counter({ name: 'embedpool_model_runs_total', help: 'Model runs (batches).', registers }),
    images: new Counter({
      name: 'embedpool_images_processed_total',
      help: 'Images processed, by outcome and error code.',
      labelNames: ['status', 'reason'] as const,
      registers,
    }),
    stage: new Histogram({
      name: 'embedpool_stage_seconds',
      help: 'Time per pipeline stage (queue_wait per job; fetch, decode, batch_wait, inference per image or batch).',
      labelNames: ['stage'] as const,
      buckets: STAGE_BUCKETS,
      registers,
    }),
    jobs: new Counter({
      name: 'embedpool_worker_jobs_total',
      help: 'Jobs finished by this worker, by outcome.',
      labelNames: ['status'] as const,
      registers,
    }),
    backlogSwept: new Counter({
      name: 'embedpool_backlog_swept_total',
      help: 'Backlog entries removed because their job had finished or vanished without removing them.',
      registers,
    }),
    busyRatio: new Gauge({
      name: 'embedpool_worker_busy_ratio',
      help: 'Share of wall time the model spent running since the last scrape.',
      registers,
      collect() {
        if (busySource) this.set(busySource());
      },
    }),
    planInfo: new Gauge({
      name: 'embedpool_worker_plan_info',
      help: 'The sizing this worker runs with (value 1): VM size, where it came from, and the settings in force.',
      labelNames: [
        'sku',
        'source',
        'provider',
        'batch_size',
        'intra_op_threads',
        'inference_threads',
        'decode_concurrency',
      ] as const,
      registers,
    }),
    modelInfo: new Gauge({
      name: 'embedpool_model_info',
      help: 'The loaded model (value 1); random_weights="true" means the vectors mean nothing; precision: float32, float16 or int8.',
      labelNames: ['model', 'model_id', 'provider', 'dim', 'random_weights', 'precision'] as const,
      registers,
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
