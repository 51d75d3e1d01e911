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

// What ioredis (and BullMQ through it) throws when a command cannot reach Redis: the offline queue is off,
// the connection closed or timed out, or the retries ran out. None of these is the caller's doing.
const CONNECTION_MESSAGES = [
  "Stream isn't writeable",
  'Connection is closed',
  'Command timed out',
  'Reached the max retries per request limit',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'connect ETIMEDOUT',
  'LOADING',
];

/** Whether an error means Redis is unreachable (answer 503 and retry), not that a command was wrong. */
export function isRedisConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError') return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code))
    return true;
  return CONNECTION_MESSAGES.some((m) => err.message.includes(m));
}
