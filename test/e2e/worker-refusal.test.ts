import { readFileSync } from 'node:fs';
import { decodeJobFailure } from '@embedpool/core/errors';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { parityImages } from '@embedpool/testkit';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEvents, postJson, REDIS_URL, startStack, testConfig, waitJobFinal } from '../support/stack';

/**
 * A worker that refuses a job as a whole (here: its payload fails validation on dequeue, as after a
 * producer/worker version skew) answers the client with its own code and status, not INFERENCE_FAILED.
 * The queue is paused while the API enqueues, the job's data is replaced through BullMQ, then the real
 * worker takes it.
 */
describe('a worker refusal reaches the client with its code', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let queue: Queue;
  let queueEvents: QueueEvents;
  let jobEvents: JobEvents;
  const image = readFileSync(parityImages()[0]!.path).toString('base64');

  beforeAll(async () => {
    stack = await startStack(testConfig());
    const prefix = stack.config.QUEUE_PREFIX;
    queue = new Queue(QUEUES.embed, { connection: createRedis(REDIS_URL, 'producer'), prefix });
    queueEvents = new QueueEvents(QUEUES.embed, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
    jobEvents = new JobEvents(prefix);
    await Promise.all([queueEvents.waitUntilReady(), jobEvents.ready(), queue.waitUntilReady()]);
  });
  afterAll(async () => {
    await queue.resume().catch(() => {});
    await Promise.all([queue.close(), queueEvents.close(), jobEvents.close()]);
    await stack.stop();
  });

  /** Runs `submit` with the queue paused, corrupts the job it enqueued, and lets the worker take it. */
  async function corruptNextJob<T>(submit: () => Promise<T>, data: (jobId: string) => unknown): Promise<T> {
    await queue.pause();
    const added = new Promise<string>((resolve) =>
      queueEvents.once('waiting', ({ jobId }) => resolve(jobId)),
    );
    const answer = submit();
    const jobId = await added;
    const job = await queue.getJob(jobId);
    expect(job).toBeDefined();
    await job!.updateData(data(jobId) as never);
    await queue.resume();
    return answer;
  }

  it('/score answers 400 BAD_REQUEST from the worker', async () => {
    const res = await corruptNextJob(
      () =>
        postJson(`${stack.api.url}/score`, {
          input_data: { columns: ['image'], index: [0], data: [[image]] },
        }),
      () => ({ requestId: 'x', images: 'not a list' }),
    );
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('BAD_REQUEST');
    expect(res.json.error.message).toMatch(/invalid job payload/);
  });

  it('/v1/embeddings answers 400 invalid_request_error BAD_REQUEST', async () => {
    const res = await corruptNextJob(
      () => postJson(`${stack.api.url}/v1/embeddings`, { model: 'parity', input: [image] }),
      () => ({ deadline: 'soon' }),
    );
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'BAD_REQUEST', type: 'invalid_request_error' });
  });

  it('/v1/jobs reports the job failed with BAD_REQUEST', async () => {
    const submitted = await corruptNextJob(
      () => postJson(`${stack.api.url}/v1/jobs`, { images: [{ id: 'a', base64: image }] }),
      (jobId) => ({ jobId, images: 'not a list' }),
    );
    expect(submitted.status).toBe(202);
    const status = (await waitJobFinal(stack.api.url, jobEvents, submitted.json.id)) as {
      state: string;
      error?: { code: string; message: string };
    };
    expect(status.state).toBe('failed');
    expect(status.error).toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/invalid job payload/),
    });
  });

  it('fails a job name the catalogue does not put on the embed queue for good, without a retry', async () => {
    const jobId = `unknown-${Date.now()}`;
    const failed = new Promise<string>((resolve) =>
      queueEvents.on('failed', (e) => {
        if (e.jobId === jobId) resolve(e.failedReason);
      }),
    );
    // Before the catalogue a worker ran any name but `embed-job` as a score job.
    await queue.add(
      'no-such-job',
      { requestId: jobId, images: [], deadline: Date.now() + 60_000 },
      { jobId, attempts: 3 },
    );
    expect(decodeJobFailure(await failed)).toEqual({
      code: 'BAD_REQUEST',
      message: 'unknown job no-such-job on queue embed',
    });
    expect((await queue.getJob(jobId))?.attemptsMade).toBe(1);
  });
});
