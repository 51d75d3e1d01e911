/**
 * The callback delivery worker: runs the signed-callback part of the deliver stage
 * (stages/deliver-callback.ts) on QUEUES.deliveries, for async jobs' results and ingestions' completion
 * callbacks alike. A failing receiver is retried with backoff here, never re-embedded.
 */
import type { Config } from '@embedpool/core/config';
import {
  DELIVERY_BACKOFF_TYPE,
  type DeliveryJobData,
  deliveryBackoffStrategy,
} from '@embedpool/core/delivery';
import { IngestionStore } from '@embedpool/core/ingest';
import { JobStore } from '@embedpool/core/jobs';
import { createLogger, type Logger } from '@embedpool/core/logger';
import { createUrlPolicy, type UrlPolicy } from '@embedpool/core/net';
import { createRedis, prepareRedisAuth, QUEUES } from '@embedpool/core/queue';
import { bullmqTelemetry } from '@embedpool/core/telemetry';
import { Queue, Worker } from 'bullmq';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
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

/** Callback URLs pass the same address rules as image URLs (FETCH_ALLOW, FETCH_* timeouts); no redirects. */
export function createCallbackPolicy(config: Config): UrlPolicy {
  return createUrlPolicy({
    allow: config.FETCH_ALLOW,
    maxRedirects: 0,
    connectTimeoutMs: config.FETCH_CONNECT_TIMEOUT_MS,
    headersTimeoutMs: config.FETCH_HEADERS_TIMEOUT_MS,
    totalTimeoutMs: config.FETCH_TOTAL_TIMEOUT_MS,
    // The receiver's response body is never read (it is discarded once the status is known), so this only
    // keeps a large declared Content-Length on a 2xx from counting as a failure.
    maxBytes: 1 << 30,
  });
}

export interface StartDeliveryWorkerOptions {
  config: Config;
  logger?: Logger;
  registry?: Registry;
  /** Defaults to a JobStore on this worker's own Redis connection (QUEUE_PREFIX, JOB_TTL_S). */
  store?: JobStore;
  /** Defaults to createCallbackPolicy(config). */
  policy?: UrlPolicy;
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
  const policy = opts.policy ?? createCallbackPolicy(config);
  await prepareRedisAuth(config);
  const redis = createRedis(config, 'consumer');
  const store = opts.store ?? new JobStore(redis, prefix, config.JOB_TTL_S);
  const secret = config.CALLBACK_SECRET;
  if (!secret) logger.warn('CALLBACK_SECRET is not set: callback deliveries will fail until it is');

  const queue = new Queue<DeliveryJobData>(QUEUES.deliveries, { connection: redis, prefix });
  queue.on('error', () => {});
  metrics.setDeadLetterSource(() => queue.getFailedCount());

  const processor = createDeliverProcessor({
    jobs: store,
    ingestions: new IngestionStore(redis, prefix, config.JOB_TTL_S),
    redis,
    prefix,
    secret,
    policy,
    metrics,
    logger,
  });

  const workerConnection = createRedis(config, 'consumer');
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
      await queue.close();
      workerConnection.disconnect();
      redis.disconnect();
      logger.info('delivery worker stopped');
    })();
    return closing;
  };
  return { worker, metrics, registry, close };
}
