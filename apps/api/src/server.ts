import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BlobStaging,
  blobAuthFromConfig,
  blobRetryFromConfig,
  createBlobServiceClient,
} from '@embedpool/core/blob';
import type { Config } from '@embedpool/core/config';
import { DeliveryQueue, redriveDelivery } from '@embedpool/core/delivery';
import { IngestionService } from '@embedpool/core/ingest';
import { JobQueue, JobStore } from '@embedpool/core/jobs';
import { createLogger, type Logger } from '@embedpool/core/logger';
import { registerFleetMetrics, registerGenerationMetrics } from '@embedpool/core/metrics';
import {
  createRedis,
  GenerationWatch,
  JobProducer,
  keys,
  prepareRedisAuth,
  ScoreQueue,
} from '@embedpool/core/queue';
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

/**
 * The API process's parts: authentication decided first, then the Redis-backed services (built once in
 * createApiServices), the express app over them, the listening socket, and a close that drains requests
 * before it releases Redis.
 */
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
  const services = await createApiServices(opts, logger);
  const app = createApiApp({ ...services.app, config, logger, auth });

  const server = http.createServer(app);
  let closing: Promise<void> | undefined;
  const connections = trackConnections(server);
  // Ahead of express, which may answer synchronously: keep-alive connections would otherwise hold a
  // draining server open after their last answer.
  server.prependListener('request', (_req, res: http.ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
  });
  try {
    await listen(server, config);
  } catch (err) {
    await services.release();
    throw err;
  }
  const url = addressUrl(server.address() as AddressInfo);
  // Workers on this machine reach the API at the address it is bound to; elsewhere INLINE_HANDOFF_URL says.
  if (config.INLINE_HANDOFF_URL === undefined && isLoopbackHost(config.HOST))
    services.app.handoff.useBoundAddress(url);

  const prefix = config.QUEUE_PREFIX;
  if (await readyWithin(services.app.events, opts.readyTimeoutMs ?? READY_WAIT_MS))
    logger.info({ url, prefix }, 'API listening');
  else logger.warn({ url, prefix }, 'API listening, but Redis is not reachable yet: /score answers 503');

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      connections.dropIdle();
      // In-flight requests end by their own time-out at the latest; past it, stop waiting for them.
      const force = setTimeout(() => server.closeAllConnections(), config.REQUEST_TIMEOUT_MS + 1_000);
      await drained;
      clearTimeout(force);
      await services.release();
      logger.info({ url }, 'API closed');
    })();
    return closing;
  };
  return { server, url, close };
}

interface ApiServices {
  /** What createApiApp takes besides config, logger and auth. */
  app: Omit<Parameters<typeof createApiApp>[0], 'config' | 'logger' | 'auth'> & {
    handoff: InlineHandoff;
    events: ScoreWaiter;
  };
  /** Closes every queue, watcher and connection this built (the caller's Redis is left open). */
  release(): Promise<void>;
}

/**
 * Everything the routes use that talks to Redis or storage, built once per process: one producer over the
 * job catalogue for every queue, the /score client and its waiter, the job store and staging, deliveries,
 * ingestions, the fleet metrics and the data-loss watch.
 */
async function createApiServices(opts: StartApiOptions, logger: Logger): Promise<ApiServices> {
  const { config } = opts;
  const prefix = config.QUEUE_PREFIX;
  await prepareRedisAuth(config, {
    onError: (err) => logger.warn({ err: err.message }, 'Redis token refresh failed'),
  });
  const redis = opts.redis ?? createRedis(config, 'producer');
  // Every job this process queues goes through one producer: the catalogue's schemas and retry policies.
  const producer = JobProducer.fromConfig(redis, config);
  const queue = new ScoreQueue(redis, { prefix, producer });
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
  const jobQueue = new JobQueue(redis, { prefix, producer });
  const store = new JobStore(redis, prefix, config.JOB_TTL_S);
  const deliveries = config.CALLBACK_SECRET ? DeliveryQueue.fromConfig(redis, config, producer) : undefined;
  const staging = jobStaging(config, logger);
  const jobs = {
    store,
    queue: jobQueue,
    ...(staging ? { staging } : {}),
    ...(deliveries ? { redrive: (id: string) => redriveDelivery(store, deliveries, id).then(() => {}) } : {}),
  };
  const ingestions = new IngestionService({ redis, config, producer });
  const registry = opts.registry ?? new Registry();
  const fleet = registerFleetMetrics(registry, { redis, config });
  // Tells a Redis that came back empty from one that kept its data (logs, /readyz, metric, 410s).
  const generation = new GenerationWatch({ redis, prefix, logger }).start();
  registerGenerationMetrics(registry, generation, config.JOB_TTL_S);
  const release = async () => {
    generation.stop();
    await waiter.close();
    await queue.close().catch(() => {});
    await jobQueue.close().catch(() => {});
    await deliveries?.close().catch(() => {});
    await fleet.close();
    await ingestions.close().catch(() => {});
    await producer.close();
    if (!opts.redis) await redis.quit().catch(() => redis.disconnect());
  };
  return {
    app: {
      redis,
      scoreClient,
      events: waiter,
      registry,
      ingestions,
      // Every queue of the job catalogue.
      dashboardQueues: producer.queues(),
      jobs,
      handoff,
      generation,
    },
    release,
  };
}

/** Async jobs' images staged in Blob storage instead of Redis, when a staging container and an account are set. */
function jobStaging(config: Config, logger: Logger): BlobStaging | undefined {
  const blobAuth = blobAuthFromConfig(config);
  if (config.JOB_STAGING_CONTAINER && !blobAuth)
    logger.warn('JOB_STAGING_CONTAINER is set but no storage account is: job images stay in Redis');
  return config.JOB_STAGING_CONTAINER && blobAuth
    ? new BlobStaging(
        // The README's storage retry settings hold here too: the SDK's own defaults wait up to ~2 minutes.
        createBlobServiceClient(blobAuth, { retry: blobRetryFromConfig(config) }),
        config.JOB_STAGING_CONTAINER,
      )
    : undefined;
}

function listen(server: http.Server, config: Config): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.PORT, config.HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Whether the job-events listener reached Redis within `ms` (the API serves either way). */
async function readyWithin(waiter: ScoreWaiter, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const ready = await Promise.race([
    waiter.ready().then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return ready;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function addressUrl(addr: AddressInfo): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${host}:${addr.port}`;
}
