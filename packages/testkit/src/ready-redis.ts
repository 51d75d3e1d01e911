import { createRedis, type RedisRole } from '@embedpool/core/queue';
import type { Redis } from 'ioredis';

/**
 * A client that has finished connecting. A producer client has no offline queue, so a command sent
 * before 'ready' fails with "Stream isn't writeable" instead of waiting: on a loaded machine the
 * handshake can outlast the rest of a test's set-up, so tests wait for it here rather than by luck.
 * Errors while connecting are not fatal (ioredis keeps retrying); the test's own timeout bounds the wait.
 */
export async function readyRedis(url: string, role: RedisRole = 'producer'): Promise<Redis> {
  const redis = createRedis(url, role);
  if (redis.status !== 'ready') await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
  return redis;
}
