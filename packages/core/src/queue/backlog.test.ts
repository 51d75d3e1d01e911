import { randomUUID } from 'node:crypto';
import { readyRedis } from '@embedpool/testkit';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobQueue } from '../jobs/job-queue';
import { addBacklog, BacklogReconciler, backlogImages, removeBacklog } from './backlog';
import { createRedis } from './connection';
import { keys, QUEUES } from './names';
import { ScoreQueue } from './score-queue';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const image = { kind: 'url' as const, url: 'http://127.0.0.1:9/x.png' };

describe('the backlog in images', () => {
  const prefix = `{t-backlog-${randomUUID().slice(0, 8)}}`;
  let redis: Redis;
  let scores: ScoreQueue;
  let jobs: JobQueue;
  beforeAll(async () => {
    redis = await readyRedis(REDIS_URL);
    scores = new ScoreQueue(redis, { prefix });
    jobs = new JobQueue(redis, { prefix, attempts: 1 });
  });
  afterAll(async () => {
    await scores.queue.obliterate({ force: true });
    await scores.close();
    await jobs.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  it('holds every job before a worker can pick it up, and is empty once a fast worker is done', async () => {
    // The race that leaked entries for good: a worker finishing (and HDELing) before the producer's HSET.
    const seenWithoutEntry: string[] = [];
    let done = 0;
    const n = 60;
    const allDone = new Promise<void>((resolve) => {
      const worker = new Worker(
        QUEUES.embed,
        async (job) => {
          if ((await redis.hexists(keys.backlog(prefix), job.id!)) === 0) seenWithoutEntry.push(job.id!);
        },
        { connection: createRedis(REDIS_URL, 'consumer'), prefix, concurrency: 16 },
      );
      worker.on('completed', async (job) => {
        await removeBacklog(redis, prefix, job.id!);
        if (++done === n) {
          await worker.close();
          resolve();
        }
      });
    });
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        i % 2 === 0
          ? scores.add({ requestId: randomUUID(), images: [image, image], deadline: Date.now() + 30_000 })
          : jobs.add({
              jobId: randomUUID(),
              images: [{ id: 'a', ref: image }],
              normalize: false,
              output: { type: 'inline' },
              createdAt: Date.now(),
            }),
      ),
    );
    await allDone;
    expect(seenWithoutEntry).toEqual([]);
    expect(await backlogImages(redis, prefix)).toEqual({ jobs: 0, images: 0 });
  });

  it('is written before the job reaches the queue, for /score and async jobs alike', async () => {
    // Deterministic form of the race above: look at the backlog at the instant the job is handed to BullMQ.
    const atAdd: number[] = [];
    for (const q of [scores.queue, jobs.queue]) {
      const add = q.add.bind(q);
      q.add = (async (name: string, data: unknown, opts?: { jobId?: string }) => {
        atAdd.push(await redis.hexists(keys.backlog(prefix), opts!.jobId!));
        return add(name as never, data as never, opts as never);
      }) as typeof q.add;
    }
    const scoreId = randomUUID();
    const jobId = randomUUID();
    await scores.add({ requestId: scoreId, images: [image], deadline: Date.now() + 30_000 });
    await jobs.add({
      jobId,
      images: [{ id: 'a', ref: image }],
      normalize: false,
      output: { type: 'inline' },
      createdAt: Date.now(),
    });
    expect(atAdd).toEqual([1, 1]);
    expect(await scores.cancel(scoreId)).toBe('removed');
    expect(await jobs.remove(jobId)).toBe(true);
    expect(await backlogImages(redis, prefix)).toEqual({ jobs: 0, images: 0 });
  });

  it('heals: an entry whose job is gone or failed leaves on the second sweep; a waiting job stays', async () => {
    const queueKeyPrefix = scores.queue.toKey('');
    const waiting = randomUUID();
    await scores.add({ requestId: waiting, images: [image], deadline: Date.now() + 60_000 });
    await addBacklog(redis, prefix, 'leaked-no-job', 7);
    // A job failed for good but never removed from the count.
    await redis.zadd(`${queueKeyPrefix}failed`, Date.now(), 'failed-job');
    await redis.hset(`${queueKeyPrefix}failed-job`, 'name', 'score');
    await addBacklog(redis, prefix, 'failed-job', 3);

    const reconciler = new BacklogReconciler(redis, prefix, queueKeyPrefix);
    // First sweep only marks: the entry might belong to a job being added at this very moment.
    expect(await reconciler.sweep()).toEqual([]);
    expect((await backlogImages(redis, prefix)).images).toBe(11);
    expect((await reconciler.sweep()).sort()).toEqual(['failed-job', 'leaked-no-job']);
    expect(await backlogImages(redis, prefix)).toEqual({ jobs: 1, images: 1 });
    expect(await reconciler.sweep()).toEqual([]);
    expect(await redis.hexists(keys.backlog(prefix), waiting)).toBe(1);
  });
});
