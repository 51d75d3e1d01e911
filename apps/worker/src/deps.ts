import type { BlobServiceClient } from '@azure/storage-blob';
import { blobAuthFromConfig, blobRetryFromConfig, createBlobServiceClient } from '@embedpool/core/blob';
import type { Config } from '@embedpool/core/config';
import { DeliveryQueue } from '@embedpool/core/delivery';
import { JobStore } from '@embedpool/core/jobs';
import type { Logger } from '@embedpool/core/logger';
import { createUrlPolicy, type UrlPolicy } from '@embedpool/core/net';
import { createRedis, prepareRedisAuth } from '@embedpool/core/queue';
import type { Redis } from 'ioredis';

/**
 * What the consumers of one worker process share, built once from Config: the embed worker, the ingestion
 * workers and the delivery worker each take these instead of opening their own Redis clients, storage
 * client and URL policies. (Each BullMQ Worker still opens its own blocking connection: BullMQ needs it.)
 */
export interface WorkerDeps {
  config: Config;
  /** Commands: stores, results, heartbeats, backlog (consumer role: waits out a Redis blip). */
  redis: Redis;
  jobStore: JobStore;
  /** The deployment's storage account, with BLOB_MAX_TRIES/BLOB_RETRY_DELAY_MS; undefined without one. */
  blob: BlobServiceClient | undefined;
  /** Image URLs: FETCH_ALLOW, FETCH_MAX_REDIRECTS, FETCH_* timeouts, MAX_IMAGE_BYTES. */
  fetchPolicy: UrlPolicy;
  /** Callback URLs: the same address rules, no redirects (job and ingestion callbacks alike). */
  callbackPolicy: UrlPolicy;
  /** Where finished async jobs and ingestions hand their callbacks; undefined without CALLBACK_SECRET. */
  deliveries: DeliveryQueue | undefined;
  /** Opens a BullMQ Worker's own blocking connection. */
  workerConnection(): Redis;
  /** Releases what createWorkerDeps opened (after every consumer using it has closed). */
  close(): Promise<void>;
}

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

export function createFetchPolicy(config: Config): UrlPolicy {
  return createUrlPolicy({
    allow: config.FETCH_ALLOW,
    maxRedirects: config.FETCH_MAX_REDIRECTS,
    connectTimeoutMs: config.FETCH_CONNECT_TIMEOUT_MS,
    headersTimeoutMs: config.FETCH_HEADERS_TIMEOUT_MS,
    totalTimeoutMs: config.FETCH_TOTAL_TIMEOUT_MS,
    maxBytes: config.MAX_IMAGE_BYTES,
  });
}

export function createWorkerBlobClient(config: Config): BlobServiceClient | undefined {
  const auth = blobAuthFromConfig(config);
  if (!auth) return undefined;
  return createBlobServiceClient(auth, { retry: blobRetryFromConfig(config) });
}

export interface WorkerDepsOptions {
  logger?: Logger;
}

export async function createWorkerDeps(config: Config, opts: WorkerDepsOptions = {}): Promise<WorkerDeps> {
  // Before any connection: with REDIS_AUTH=entra every client logs in with the token fetched here.
  await prepareRedisAuth(config, {
    onError: (err) => opts.logger?.warn({ err: err.message }, 'Redis token refresh failed'),
  });
  const redis = createRedis(config, 'consumer');
  // Callbacks leave through the delivery queue, so a failing receiver never re-runs the model. Its producer
  // connection fails fast: a job that cannot queue its delivery is retried as a whole.
  const deliveryRedis = config.CALLBACK_SECRET ? createRedis(config, 'producer') : undefined;
  const deliveries = deliveryRedis ? DeliveryQueue.fromConfig(deliveryRedis, config) : undefined;
  return {
    config,
    redis,
    jobStore: new JobStore(redis, config.QUEUE_PREFIX, config.JOB_TTL_S),
    blob: createWorkerBlobClient(config),
    fetchPolicy: createFetchPolicy(config),
    callbackPolicy: createCallbackPolicy(config),
    deliveries,
    workerConnection: () => createRedis(config, 'consumer'),
    close: async () => {
      await deliveries?.close().catch(() => {});
      deliveryRedis?.disconnect();
      redis.disconnect();
    },
  };
}
