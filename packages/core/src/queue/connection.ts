import { Redis, type RedisOptions } from 'ioredis';

export type RedisRole = 'producer' | 'consumer';

/**
 * Producers (the API) fail fast when Redis is gone, so a request answers 503 instead of hanging in an
 * offline queue. Consumers (BullMQ workers, QueueEvents) block on Redis and must retry forever:
 * BullMQ requires `maxRetriesPerRequest: null` for them.
 */
export function createRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const common: RedisOptions = {
    connectTimeout: 5_000,
    // Reconnect forever with a capped backoff: Redis coming back must heal the service without a restart.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3_000),
    lazyConnect: false,
  };
  const roleOptions: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 5_000 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };
  const redis = new Redis(url, { ...common, ...roleOptions, ...extra });
  // ioredis emits 'error' on every failed reconnect; an unhandled 'error' event would kill the process.
  redis.on('error', () => {});
  return redis;
}
