/**
 * Synchronous requests nobody waits for any more (the client hung up, or the deadline passed) must not
 * cost a worker anything: their job is removed from the queue before any worker takes it. Shown with no
 * worker running while the requests come and go, then a worker started on the same queue: it runs only
 * the one job that still has a client.
 */
import { readFileSync } from 'node:fs';
import { backlogImages, createRedis, QUEUES } from '@embedpool/core/queue';
import { startWorker, type WorkerHandle } from '@embedpool/worker';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parityModel, REDIS_URL, startStack, testConfig } from '../support/stack';
import { call, goodImage, guardNetwork, scoreBody, until } from './support';

guardNetwork();

const TIMEOUT_MS = 1_500;

describe('requests whose client is gone leave no work behind', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let redis: Redis;
  let queue: Queue;
  let worker: WorkerHandle | undefined;
  const good = readFileSync(goodImage.path).toString('base64');
  const inQueue = async () => {
    const counts = await queue.getJobCounts();
    return Object.values(counts).reduce((a, b) => a + b, 0);
  };

  beforeAll(async () => {
    stack = await startStack(testConfig({ REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) }), { worker: false });
    redis = createRedis(REDIS_URL, 'consumer');
    queue = new Queue(QUEUES.embed, { connection: redis, prefix: stack.config.QUEUE_PREFIX });
  });
  afterAll(async () => {
    await worker?.close();
    await queue?.close();
    await stack?.stop();
    redis?.disconnect();
  });

  it.each([
    ['/score', scoreBody([good])],
    ['/v1/embeddings', { model: 'dinov2', input: [good] }],
  ])('%s: a client that hangs up takes its job out of the queue', async (path, body) => {
    const client = new AbortController();
    const request = fetch(`${stack.api.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: client.signal,
    }).catch((err: unknown) => err);
    // The job lands first, its backlog entry right after it (two commands): wait for both.
    await until(
      async () =>
        (await inQueue()) === 1 && (await backlogImages(redis, stack.config.QUEUE_PREFIX)).images === 1,
    );
    client.abort();
    expect(await request).toMatchObject({ name: 'AbortError' });
    await until(async () => (await inQueue()) === 0);
    expect(await backlogImages(redis, stack.config.QUEUE_PREFIX)).toEqual({ jobs: 0, images: 0 });
  });

  it('a request past REQUEST_TIMEOUT_MS gets 504 and its job is gone', async () => {
    const { status, json } = await call(`${stack.api.url}/score`, { body: scoreBody([good]) });
    expect(status).toBe(504);
    expect(json.error.code).toBe('TIMEOUT');
    expect(await inQueue()).toBe(0);
    expect(await backlogImages(redis, stack.config.QUEUE_PREFIX)).toEqual({ jobs: 0, images: 0 });
  });

  it('a worker started afterwards runs only the request that still has a client', async () => {
    // Nothing is left for the worker to pick up: the abandoned requests took their jobs with them.
    expect(await inQueue()).toBe(0);
    const registry = new Registry();
    worker = await startWorker({ config: stack.config, registry, model: parityModel });
    const ok = await call(`${stack.api.url}/score`, { body: scoreBody([good]) });
    expect(ok.status).toBe(200);
    const jobs = (await worker.metrics.jobs.get()).values;
    const count = (status: string) => jobs.find((v) => v.labels.status === status)?.value ?? 0;
    expect(count('completed')).toBe(1);
    expect(count('failed')).toBe(0);
    expect((await worker.metrics.modelRuns.get()).values[0]?.value).toBe(1);
  });
});
