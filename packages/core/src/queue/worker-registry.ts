import type { Redis } from 'ioredis';
import { z } from 'zod';
import { keys } from './names';

export const workerInfoSchema = z.object({
  id: z.string(),
  host: z.string(),
  pid: z.number(),
  model: z.string(),
  modelId: z.string(),
  dim: z.number().int(),
  provider: z.string(),
  /** True when the model is a random-weight stand-in: the pipeline runs, the vectors mean nothing. */
  randomWeights: z.boolean(),
  /** Numeric precision of the model's weights (fp32, fp16, int8); older workers did not say (fp32). */
  precision: z.string().optional(),
  startedAt: z.number(),
  /** Measured images/s while busy (EWMA); 0 until the worker has measured anything. */
  imagesPerSecond: z.number().default(0),
});
export type WorkerInfo = z.input<typeof workerInfoSchema>;
export type LiveWorker = z.infer<typeof workerInfoSchema>;

/** Workers announce themselves with a heartbeat; /readyz counts those seen within the TTL. */
export async function heartbeat(redis: Redis, prefix: string, info: WorkerInfo): Promise<void> {
  await redis
    .multi()
    .zadd(keys.workers(prefix), Date.now(), info.id)
    .hset(keys.workerInfo(prefix), info.id, JSON.stringify(info))
    .exec();
}

export async function removeWorker(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.multi().zrem(keys.workers(prefix), id).hdel(keys.workerInfo(prefix), id).exec();
}

export async function liveWorkers(redis: Redis, prefix: string, ttlSeconds: number): Promise<LiveWorker[]> {
  const since = Date.now() - ttlSeconds * 1000;
  const ids = await redis.zrangebyscore(keys.workers(prefix), since, '+inf');
  if (ids.length === 0) return [];
  const raw = await redis.hmget(keys.workerInfo(prefix), ...ids);
  return raw.flatMap((r) => {
    if (!r) return [];
    const parsed = workerInfoSchema.safeParse(JSON.parse(r));
    return parsed.success ? [parsed.data] : [];
  });
}

/** Drops workers not seen for a long while so the registry does not grow with every restart. */
export async function pruneWorkers(redis: Redis, prefix: string, olderThanSeconds: number): Promise<void> {
  const before = Date.now() - olderThanSeconds * 1000;
  const stale = await redis.zrangebyscore(keys.workers(prefix), '-inf', before);
  if (stale.length === 0) return;
  await redis
    .multi()
    .zremrangebyscore(keys.workers(prefix), '-inf', before)
    .hdel(keys.workerInfo(prefix), ...stale)
    .exec();
}
