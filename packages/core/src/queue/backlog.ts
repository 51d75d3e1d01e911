import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { loadLua } from '../lua';
import { keys } from './names';

/**
 * The backlog in images, not jobs: one /score request may carry 64 images and one ingestion chunk 256,
 * so job counts say little about how much work is waiting. Each job registers its image count BEFORE it is
 * queued (a fast worker may finish a job before its producer hears back from the add) and removes it when it
 * is finished for good (or cancelled); HDEL is idempotent, so a retried or stalled job cannot make the number
 * drift. Whatever still slips through (a worker killed between finishing a job and its HDEL, a producer
 * killed between the HSET and the add) is swept by `BacklogReconciler`.
 */
export async function addBacklog(redis: Redis, prefix: string, jobId: string, images: number): Promise<void> {
  await redis.hset(keys.backlog(prefix), jobId, images);
}

export async function removeBacklog(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.hdel(keys.backlog(prefix), jobId);
}

/**
 * Counts a job's images, then queues it with `add`, in that order: a worker may finish the job before `add`
 * returns, and its HDEL must find the entry (the other order leaked one entry per such race, for good). A
 * failed add takes the entry back. Every producer of image work queues through here.
 */
export async function queueCounted<T>(
  redis: Redis,
  prefix: string,
  jobId: string,
  images: number,
  add: () => Promise<T>,
): Promise<T> {
  try {
    await addBacklog(redis, prefix, jobId, images);
  } catch (err) {
    throw new EmbedpoolError('UNAVAILABLE', `queue unavailable: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await add();
  } catch (err) {
    await removeBacklog(redis, prefix, jobId).catch(() => {});
    throw err;
  }
}

export async function backlogImages(redis: Redis, prefix: string): Promise<{ jobs: number; images: number }> {
  const values = await redis.hvals(keys.backlog(prefix));
  let images = 0;
  for (const v of values) images += Number(v) || 0;
  return { jobs: values.length, images };
}

/** lua/backlog-orphans.lua: the ids whose job is no longer waiting or running. */
const ORPHANS = loadLua('backlog-orphans', import.meta.url);

/** Ids in the backlog whose job is no longer waiting or running (finished, failed for good, or gone). */
export async function backlogOrphans(
  redis: Redis,
  prefix: string,
  queueKeyPrefix: string,
): Promise<string[]> {
  return (await redis.eval(ORPHANS, 1, keys.backlog(prefix), queueKeyPrefix)) as string[];
}

/**
 * Makes the backlog self-healing: an entry whose job is finished or gone is removed once it has been seen
 * orphaned on two sweeps in a row. Two sweeps, because an entry is written just before its job is added:
 * a single look could catch that instant and drop live work from the count.
 */
export class BacklogReconciler {
  private suspects = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /** BullMQ's key prefix of the queue whose jobs the backlog counts, e.g. `embedpool:embed:`. */
    private readonly queueKeyPrefix: string,
  ) {}

  /** One sweep; returns the entries removed. */
  async sweep(): Promise<string[]> {
    const orphans = await backlogOrphans(this.redis, this.prefix, this.queueKeyPrefix);
    const confirmed = orphans.filter((id) => this.suspects.has(id));
    this.suspects = new Set(orphans.filter((id) => !this.suspects.has(id)));
    if (confirmed.length > 0) await this.redis.hdel(keys.backlog(this.prefix), ...confirmed);
    return confirmed;
  }
}
