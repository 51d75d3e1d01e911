/**
 * A flood of work against a low MAX_BACKLOG_IMAGES, on a private redis-server so its memory can be read:
 * the API admits work up to the limit and answers the rest 429 with Retry-After (on /v1/jobs, /score and
 * /v1/embeddings alike), Redis grows by the admitted work only, and everything admitted completes once a
 * worker comes. Nothing admitted is lost.
 */
import { readFileSync } from 'node:fs';
import { BacklogGate } from '@embedpool/api';
import { addBacklog, backlogImages, createRedis, keys, removeBacklog } from '@embedpool/core/queue';
import { PrivateRedis } from '@embedpool/testkit';
import { startWorker, type WorkerHandle } from '@embedpool/worker';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parityModel, REDIS_URL, startStack, testConfig } from '../support/stack';
import { call, fixtures, guardNetwork, pollJob, scoreBody, sleep, until } from './support';

guardNetwork();

const LIMIT = 20;
const FLOOD = 200;
const image = readFileSync(fixtures.find((i) => i.name === 'china.jpg')!.path).toString('base64');

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

describe(`a flood of ${FLOOD} jobs against MAX_BACKLOG_IMAGES=${LIMIT}`, () => {
  let server: PrivateRedis;
  let redis: Redis;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let worker: WorkerHandle | undefined;
  const accepted: string[] = [];

  beforeAll(async () => {
    server = await PrivateRedis.start();
    stack = await startStack(testConfig({ REDIS_URL: server.url, MAX_BACKLOG_IMAGES: String(LIMIT) }), {
      worker: false,
    });
    redis = createRedis(server.url, 'consumer');
  });
  afterAll(async () => {
    await worker?.close();
    await stack?.stop();
    redis?.disconnect();
    await server?.kill();
  });

  it('admits up to the limit, refuses the rest with 429 + Retry-After, and Redis grows by the admitted work only', async () => {
    const before = await usedMemory(redis);
    const answers = await Promise.all(
      Array.from({ length: FLOOD }, () =>
        call(`${stack.api.url}/v1/jobs`, { body: { images: [{ base64: image }] } }),
      ),
    );
    for (const a of answers) {
      if (a.status === 202) accepted.push(a.json.id);
      else {
        expect(a.status).toBe(429);
        expect(a.json.error.code).toBe('OVERLOADED');
        expect(Number(a.headers.get('retry-after'))).toBeGreaterThan(0);
      }
    }
    expect(accepted.length).toBe(LIMIT);
    expect((await backlogImages(redis, stack.config.QUEUE_PREFIX)).images).toBe(LIMIT);

    const grown = (await usedMemory(redis)) - before;
    const unbounded = FLOOD * image.length;
    // The admitted images (twice over, for BullMQ's and the job's own bookkeeping) plus a few MB:
    // far below what the flood would have cost unbounded.
    expect(grown).toBeLessThan(LIMIT * image.length * 2 + 4 * 1024 * 1024);
    expect(grown).toBeLessThan(unbounded / 3);
  });

  it('refuses new synchronous work too, in each route`s error shape', async () => {
    const score = await call(`${stack.api.url}/score`, { body: scoreBody([image]) });
    expect(score.status).toBe(429);
    expect(score.json.error.code).toBe('OVERLOADED');
    expect(Number(score.headers.get('retry-after'))).toBeGreaterThan(0);
    const embeddings = await call(`${stack.api.url}/v1/embeddings`, { body: { model: 'm', input: [image] } });
    expect(embeddings.status).toBe(429);
    expect(embeddings.json.error).toMatchObject({ code: 'OVERLOADED', type: 'rate_limit_error' });
  });

  it('completes every admitted job once a worker comes, then admits again', async () => {
    worker = await startWorker({ config: stack.config, registry: new Registry(), model: parityModel });
    for (const id of accepted) {
      const job = await pollJob(stack.api.url, id);
      expect(job.state).toBe('completed');
      expect(job.counts).toEqual({ total: 1, succeeded: 1, failed: 0 });
    }
    await until(async () => (await backlogImages(redis, stack.config.QUEUE_PREFIX)).images === 0);
    const after = await call(`${stack.api.url}/score`, { body: scoreBody([image]) });
    expect(after.status).toBe(200);
  });
});

describe('BacklogGate accounting (one replica)', () => {
  const prefix = `t-gate-${Date.now()}`;
  let redis: Redis;
  beforeAll(async () => {
    redis = createRedis(REDIS_URL, 'consumer');
    await redis.ping();
  });
  afterAll(async () => {
    await redis.del(keys.backlog(prefix));
    redis.disconnect();
  });

  it('counts admitted work until Redis shows it, serves an oversized request alone, and forgets work that never landed', async () => {
    const gate = new BacklogGate(redis, prefix, 10);
    const big = await gate.admit('big', 15);
    expect(big.ok).toBe(true); // nothing waits: served rather than refused forever
    expect(await gate.admit('small', 1)).toEqual({ ok: false, waiting: 15 });
    // The big job lands, then finishes: the hash is the truth once a reading sees it.
    await addBacklog(redis, prefix, 'big', 15);
    await sleep(250);
    expect(await gate.estimate()).toBe(15);
    await removeBacklog(redis, prefix, 'big');
    await sleep(250);
    expect(await gate.estimate()).toBe(0);
    // Admitted, then its request ended without the job ever landing (a failed enqueue): dropped too.
    const lost = await gate.admit('lost', 8);
    expect(lost.ok).toBe(true);
    expect(await gate.admit('more', 3)).toEqual({ ok: false, waiting: 8 });
    if (lost.ok) lost.done();
    await sleep(250);
    expect(await gate.estimate()).toBe(0);
    expect((await gate.admit('more', 3)).ok).toBe(true);
  });
});
