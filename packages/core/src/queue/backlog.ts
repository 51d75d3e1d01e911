import type { Redis } from 'ioredis';
import { keys } from './names';

/**
 * The backlog in images, not jobs: one /score request may carry 64 images and one ingestion chunk 256,
 * so job counts say little about how much work is waiting. Each job registers its image count when it is
 * queued and removes it when it is finished for good (or cancelled); HDEL is idempotent, so a retried or
 * stalled job cannot make the number drift.
 */
export async function addBacklog(redis: Redis, prefix: string, jobId: string, images: number): Promise<void> {
  await redis.hset(keys.backlog(prefix), jobId, images);
}

export async function removeBacklog(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.hdel(keys.backlog(prefix), jobId);
}

export async function backlogImages(redis: Redis, prefix: string): Promise<{ jobs: number; images: number }> {
  const values = await redis.hvals(keys.backlog(prefix));
  let images = 0;
  for (const v of values) images += Number(v) || 0;
  return { jobs: values.length, images };
}
