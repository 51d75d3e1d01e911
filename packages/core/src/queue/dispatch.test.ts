import { randomUUID } from 'node:crypto';
import { readyRedis } from '@embedpool/testkit';
import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeJobFailure, EmbedpoolError } from '../errors';
import { createRedis } from './connection';
import { createDispatcher, type Handler } from './dispatch';
import { JOBS, QUEUES } from './names';
import { JobProducer } from './producer';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The embed queue's dispatcher under a real BullMQ Worker: what reaches the failed set, and how often it ran. */
describe('dispatcher against Redis', () => {
  const prefix = `t-dispatch-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let producer: JobProducer;
  let worker: Worker | undefined;
  const runs: string[] = [];
  let score: Handler<'score'> = async () => 'ok';

  beforeAll(async () => {
    redis = await readyRedis(REDIS_URL);
    // Three tries a millisecond apart: retries are quick to watch.
    producer = new JobProducer(redis, { prefix, policy: { SCORE_ATTEMPTS: 3, SCORE_BACKOFF_MS: 1 } });
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    runs.length = 0;
  });
  afterAll(async () => {
    await producer.queue(QUEUES.embed).obliterate({ force: true });
    await producer.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  /** Starts a worker on the embed queue and resolves with the job once it is finished for good. */
  function run(jobId: string): Promise<{ job: Job; outcome: 'completed' | 'failed' }> {
    const dispatch = createDispatcher(QUEUES.embed, {
      [JOBS.score]: (job, token) => {
        runs.push(job.id!);
        return score(job, token);
      },
      [JOBS.embedJob]: async () => 'job',
    });
    const w = new Worker(QUEUES.embed, dispatch, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
    worker = w;
    return new Promise((resolve) => {
      w.on('completed', (job) => {
        if (job.id === jobId) resolve({ job, outcome: 'completed' });
      });
      w.on('failed', (job, err) => {
        if (!job || job.id !== jobId) return;
        if (err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1))
          resolve({ job, outcome: 'failed' });
      });
    });
  }

  const valid = (requestId: string) => ({
    requestId,
    images: [{ kind: 'url' as const, url: 'http://127.0.0.1/x.png' }],
    deadline: Date.now() + 60_000,
  });

  it('runs a valid job once, with the parsed payload (defaults applied)', async () => {
    let seen: unknown;
    score = async (job) => {
      seen = job.data.normalize;
      return 'ok';
    };
    const id = `ok-${randomUUID()}`;
    await producer.enqueue(JOBS.score, valid(id), { jobId: id });
    const { outcome } = await run(id);
    expect(outcome).toBe('completed');
    expect(seen).toBe(false);
    expect(runs).toEqual([id]);
  });

  it('fails a payload that does not fit its schema on dequeue: BAD_REQUEST, failed set, no retry', async () => {
    const id = `bad-${randomUUID()}`;
    // As a producer of another version would queue it: past the catalogue, straight into BullMQ.
    await producer
      .queue(QUEUES.embed)
      .add(JOBS.score, { requestId: id, images: 'not a list' }, { jobId: id, attempts: 3 });
    const { job, outcome } = await run(id);
    expect(outcome).toBe('failed');
    expect(runs).toEqual([]);
    expect(job.attemptsMade).toBe(1);
    expect(await producer.queue(QUEUES.embed).getJobState(id)).toBe('failed');
    const stored = await producer.queue(QUEUES.embed).getJob(id);
    expect(decodeJobFailure(stored!.failedReason)).toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/invalid job payload \(score\)/),
    });
  });

  it('fails a job name the catalogue does not know, or that belongs to another queue, for good', async () => {
    for (const name of ['no-such-job', JOBS.deliver]) {
      const id = `unknown-${randomUUID()}`;
      await producer.queue(QUEUES.embed).add(name, valid(id), { jobId: id, attempts: 3 });
      const { job, outcome } = await run(id);
      expect(outcome).toBe('failed');
      expect(job.attemptsMade).toBe(1);
      expect(decodeJobFailure(job.failedReason)).toMatchObject({
        code: 'BAD_REQUEST',
        message: `unknown job ${name} on queue embed`,
      });
      await worker?.close();
    }
    expect(runs).toEqual([]);
  });

  it('retries a transient failure per the catalogue attempts (SCORE_ATTEMPTS)', async () => {
    score = async () => {
      throw new EmbedpoolError('UNAVAILABLE', 'redis away');
    };
    const id = `transient-${randomUUID()}`;
    await producer.enqueue(JOBS.score, valid(id), { jobId: id });
    const { job, outcome } = await run(id);
    expect(outcome).toBe('failed');
    expect(runs).toEqual([id, id, id]);
    expect(job.attemptsMade).toBe(3);
  });

  it('ends a job at once on a permanent EmbedpoolError, with its code', async () => {
    score = async () => {
      throw new EmbedpoolError('MODEL_INVALID', 'not this model');
    };
    const id = `permanent-${randomUUID()}`;
    await producer.enqueue(JOBS.score, valid(id), { jobId: id });
    const { job, outcome } = await run(id);
    expect(outcome).toBe('failed');
    expect(runs).toEqual([id]);
    expect(decodeJobFailure(job.failedReason)).toEqual({ code: 'MODEL_INVALID', message: 'not this model' });
  });

  it('refuses an invalid payload on enqueue, before it reaches Redis', async () => {
    const id = `refused-${randomUUID()}`;
    await expect(
      producer.enqueue(JOBS.score, { requestId: id, images: [], deadline: 1 }, { jobId: id }),
    ).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(await producer.queue(QUEUES.embed).getJob(id)).toBeUndefined();
  });
});
