/**
 * The callback delivery worker: takes delivery jobs off QUEUES.deliveries, builds the body from the job
 * record (and inline result) at send time, signs it with a fresh timestamp, and POSTs it under the same
 * address policy as image URLs. A failing receiver is retried with backoff here, never re-embedded.
 */
import type { Config } from '@embedpool/core/config';
import {
  DELIVERY_BACKOFF_TYPE,
  type DeliveryJobData,
  deliveryBackoffStrategy,
} from '@embedpool/core/delivery';
import { decodeJobFailure } from '@embedpool/core/errors';
import { IngestionStore } from '@embedpool/core/ingest';
import { JobStore } from '@embedpool/core/jobs';
import { createLogger, type Logger } from '@embedpool/core/logger';
import type { UrlPolicy } from '@embedpool/core/net';
import {
  createDispatcher,
  createRedis,
  JOBS,
  JobProducer,
  prepareRedisAuth,
  QUEUES,
} from '@embedpool/core/queue';
import { bullmqTelemetry } from '@embedpool/core/telemetry';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createCallbackPolicy, type WorkerDeps } from './deps';
import { createDeliverProcessor } from './stages/deliver-callback';

export const DELIVERY_CONCURRENCY = 16;

/** The delivery worker's series, on the registry it is given (one set per registry). */
export function createDeliveryMetrics(registry: Registry) {
  const registers = [registry];
  let deadLetterSource: (() => Promise<number>) | undefined;
  const deliveries = new Counter({
    name: 'embedpool_callback_deliveries_total',
    help: 'Callback delivery attempts by outcome: delivered, failed_attempt (will be retried), dead (last attempt failed or unrecoverable).',
    labelNames: ['outcome'] as const,
    registers,
  });
  for (const outcome of ['delivered', 'failed_attempt', 'dead']) deliveries.inc({ outcome }, 0);
  return {
    setDeadLetterSource(fn: () => Promise<number>) {
      deadLetterSource = fn;
    },
    deliveries,
    deadLetters: new Gauge({
      name: 'embedpool_callback_dead_letters',
      help: 'Delivery jobs in the failed (dead-letter) set of the deliveries queue and not redriven.',
      registers,
      async collect() {
        if (!deadLetterSource) return;
        try {
          this.set(await deadLetterSource());
        } catch {
          // Redis unreachable: keep the last value rather than fail the whole scrape.
        }
      },
    }),
    duration: new Histogram({
      name: 'embedpool_callback_delivery_seconds',
      help: 'Time per callback POST attempt, by outcome (delivered or failed).',
      labelNames: ['outcome'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  };
}

export type DeliveryMetrics = ReturnType<typeof createDeliveryMetrics>;

export { createCallbackPolicy } from './deps';

export interface StartDeliveryWorkerOptions {
  config: Config;
  logger?: Logger;
  registry?: Registry;
  /** Defaults to a JobStore on this worker's own Redis connection (QUEUE_PREFIX, JOB_TTL_S). */
  store?: JobStore;
  /** Defaults to deps.callbackPolicy, else createCallbackPolicy(config). */
  policy?: UrlPolicy;
  /** The process's shared Redis client and policies (the embed worker's `handle.deps`); its owner closes it. */
  deps?: WorkerDeps;
  /** Parallel POSTs; default 16. */
  concurrency?: number;
}

export interface DeliveryWorkerHandle {
  worker: Worker<DeliveryJobData>;
  metrics: DeliveryMetrics;
  registry: Registry;
  /** Stops taking deliveries, lets the ones in flight finish, then releases Redis. */
  close(): Promise<void>;
}

export async function startDeliveryWorker(opts: StartDeliveryWorkerOptions): Promise<DeliveryWorkerHandle> {
  const { config } = opts;
  const prefix = config.QUEUE_PREFIX;
  const logger = (opts.logger ?? createLogger({ name: 'worker', level: config.LOG_LEVEL })).child({
    component: 'delivery',
  });
  const registry = opts.registry ?? new Registry();
  const metrics = createDeliveryMetrics(registry);
  const shared = opts.deps;
  const policy = opts.policy ?? shared?.callbackPolicy ?? createCallbackPolicy(config);
  if (!shared) await prepareRedisAuth(config);
  const redis = shared?.redis ?? createRedis(config, 'consumer');
  const store = opts.store ?? shared?.jobStore ?? new JobStore(redis, prefix, config.JOB_TTL_S);
  const secret = config.CALLBACK_SECRET;
  if (!secret) logger.warn('CALLBACK_SECRET is not set: callback deliveries will fail until it is');

  // Read-only (the dead-letter count): a producer of its own, closed with this worker.
  const producer = new JobProducer(redis, { prefix });
  const queue = producer.queue(QUEUES.deliveries);
  metrics.setDeadLetterSource(() => queue.getFailedCount());

  const deliver = createDeliverProcessor({
    jobs: store,
    ingestions: new IngestionStore(redis, prefix, config.JOB_TTL_S),
    redis,
    prefix,
    secret,
    policy,
    metrics,
    logger,
  });
  const dispatch = createDispatcher(QUEUES.deliveries, { [JOBS.deliver]: deliver });
  const processor = (job: Job<DeliveryJobData>) =>
    dispatch(job).catch((err: unknown) => {
      // Refused on dequeue (an invalid payload, an unknown name): dead at once, and counted as such.
      if (err instanceof UnrecoverableError && decodeJobFailure(err.message)?.code === 'BAD_REQUEST')
        metrics.deliveries.inc({ outcome: 'dead' });
      throw err;
    });
  const workerConnection = shared ? shared.workerConnection() : createRedis(config, 'consumer');
  const worker = new Worker<DeliveryJobData>(QUEUES.deliveries, processor, {
    connection: workerConnection,
    prefix,
    concurrency: opts.concurrency ?? DELIVERY_CONCURRENCY,
    settings: { backoffStrategy: deliveryBackoffStrategy(config.CALLBACK_BACKOFF_MS) },
    autorun: false,
    ...bullmqTelemetry(),
  });
  worker.on('error', (err) => logger.error({ err }, 'delivery worker error'));
  void worker.run();
  await worker.waitUntilReady();
  logger.info(
    { concurrency: opts.concurrency ?? DELIVERY_CONCURRENCY, backoff: DELIVERY_BACKOFF_TYPE },
    'delivery worker started',
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await worker.close();
      await producer.close();
      workerConnection.disconnect();
      if (!shared) redis.disconnect();
      logger.info('delivery worker stopped');
    })();
    return closing;
  };
  return { worker, metrics, registry, close };
}
