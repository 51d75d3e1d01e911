import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobStaging, blobAuthFromConfig, createBlobServiceClient } from '@embedpool/core/blob';
import type { Config } from '@embedpool/core/config';
import { DeliveryQueue, redriveDelivery } from '@embedpool/core/delivery';
import { IngestionService } from '@embedpool/core/ingest';
import { JobQueue, JobStore } from '@embedpool/core/jobs';
import { createLogger, type Logger } from '@embedpool/core/logger';
import { registerFleetMetrics, registerGenerationMetrics } from '@embedpool/core/metrics';
import { createRedis, GenerationWatch, keys, prepareRedisAuth, ScoreQueue } from '@embedpool/core/queue';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { createApiApp } from './app';
import { resolveAuth } from './auth';
import { trackConnections } from './connections';
import { InlineHandoff } from './inline-handoff';
import { ScoreClient } from './score-client';
import { ScoreWaiter } from './score-waiter';

export interface StartApiOptions {
  config: Config;
  logger?: Logger;
  /** Shared with the rest of the process (an all-in-one process shares one with the worker). */
  registry?: Registry;
  /**
   * A producer connection (`createRedis(url, 'producer')`) owned by the caller, who closes it. When absent
   * the API creates its own from REDIS_URL and closes it. Job events always get a dedicated connection.
   */
  redis?: Redis;
  /** How long startApi waits for Redis before resolving anyway (default 5 s); /score answers 503 meanwhile. */
  readyTimeoutMs?: number;
}

export interface RunningApi {
  server: http.Server;
  /** The address actually bound, e.g. http://127.0.0.1:40213 when PORT is 0. */
  url: string;
  /** Stops accepting, lets in-flight requests finish, then closes the queue and Redis connections. */
  close(): Promise<void>;
}

// Redis being down at boot must not stop the API from serving /healthz and answering 503 until it is back.
const READY_WAIT_MS = 5_000;

export async function startApi(opts: StartApiOptions): Promise<RunningApi> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger({ name: 'api', level: config.LOG_LEVEL });
  // First, before any connection or socket: an API reachable from other machines without auth never starts.
  const auth = resolveAuth(config);
  if (auth.mode === 'none' && config.AUTH === 'none') {
    logger.warn({ host: config.HOST }, 'AUTH=none: the API serves anyone who can reach it');
  } else {
    logger.info({ auth: auth.mode, why: auth.why }, 'authentication');
  }
  const prefix = config.QUEUE_PREFIX;
  await prepareRedisAuth(config, {
    onError: (err) => logger.warn({ err: err.message }, 'Redis token refresh failed'),
  });
  const redis = opts.redis ?? createRedis(config, 'producer');
  const queue = new ScoreQueue(redis, { prefix });
  const waiter = new ScoreWaiter({
    redisUrl: config,
    prefix,
    redis,
    logger,
    abandonedTtlMs: config.RESULT_TTL_S * 1000,
    // A worker finished a job we gave up on: its vectors would sit in Redis until the TTL.
    onOrphanCompleted: (jobId) => void redis.del(keys.result(prefix, jobId)).catch(() => {}),
  });
  const handoff = new InlineHandoff(
    redis,
    prefix,
    config.INLINE_HANDOFF_URL === 'off' ? undefined : config.INLINE_HANDOFF_URL,
  );
  const scoreClient = new ScoreClient({
    queue,
    redis,
    waiter,
    prefix,
    handoff,
    coalesce: {
      windowMs: config.SCORE_COALESCE_MS,
      maxImages: config.MAX_IMAGES_PER_REQUEST,
      maxJobsInFlight: config.SCORE_COALESCE_MAX_JOBS,
    },
  });
  const jobQueue = new JobQueue(redis, { prefix, attempts: config.JOB_ATTEMPTS });
  const store = new JobStore(redis, prefix, config.JOB_TTL_S);
  const deliveries = config.CALLBACK_SECRET ? DeliveryQueue.fromConfig(redis, config) : undefined;
  const blobAuth = blobAuthFromConfig(config);
  if (config.JOB_STAGING_CONTAINER && !blobAuth)
    logger.warn('JOB_STAGING_CONTAINER is set but no storage account is: job images stay in Redis');
  const staging =
    config.JOB_STAGING_CONTAINER && blobAuth
      ? new BlobStaging(createBlobServiceClient(blobAuth), config.JOB_STAGING_CONTAINER)
      : undefined;
  const jobs = {
    store,
    queue: jobQueue,
    ...(staging ? { staging } : {}),
    ...(deliveries ? { redrive: (id: string) => redriveDelivery(store, deliveries, id).then(() => {}) } : {}),
  };
  const ingestions = new IngestionService({ redis, config });
  const registry = opts.registry ?? new Registry();
  const fleet = registerFleetMetrics(registry, { redis, config });
  // Tells a Redis that came back empty from one that kept its data (logs, /readyz, metric, 410s).
  const generation = new GenerationWatch({ redis, prefix, logger }).start();
  registerGenerationMetrics(registry, generation, config.JOB_TTL_S);
  const app = createApiApp({
    config,
    redis,
    scoreClient,
    events: waiter,
    logger,
    registry,
    ingestions,
    dashboardQueues: [
      jobQueue.queue,
      ingestions.queues.plan,
      ingestions.queues.chunks,
      ...(deliveries ? [deliveries.queue] : []),
    ],
    jobs,
    auth,
    handoff,
    generation,
  });

  const server = http.createServer(app);
  let closing: Promise<void> | undefined;
  const connections = trackConnections(server);
  // Ahead of express, which may answer synchronously: keep-alive connections would otherwise hold a
  // draining server open after their last answer.
  server.prependListener('request', (_req, res: http.ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
  });
  const releaseRedis = async () => {
    generation.stop();
    await waiter.close();
    await queue.close().catch(() => {});
    await jobQueue.close().catch(() => {});
    await deliveries?.close().catch(() => {});
    await fleet.close();
    await ingestions.close().catch(() => {});
    if (!opts.redis) await redis.quit().catch(() => redis.disconnect());
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.PORT, config.HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await releaseRedis();
    throw err;
  }
  const url = addressUrl(server.address() as AddressInfo);
  // Workers on this machine reach the API at the address it is bound to; elsewhere INLINE_HANDOFF_URL says.
  if (config.INLINE_HANDOFF_URL === undefined && isLoopbackHost(config.HOST)) handoff.useBoundAddress(url);

  let timer: NodeJS.Timeout | undefined;
  const waited = await Promise.race([
    waiter.ready().then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), opts.readyTimeoutMs ?? READY_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (waited) logger.info({ url, prefix }, 'API listening');
  else logger.warn({ url, prefix }, 'API listening, but Redis is not reachable yet: /score answers 503');

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      connections.dropIdle();
      // In-flight requests end by their own time-out at the latest; past it, stop waiting for them.
      const force = setTimeout(() => server.closeAllConnections(), config.REQUEST_TIMEOUT_MS + 1_000);
      await drained;
      clearTimeout(force);
      await releaseRedis();
      logger.info({ url }, 'API closed');
    })();
    return closing;
  };
  return { server, url, close };
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function addressUrl(addr: AddressInfo): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${host}:${addr.port}`;
}
