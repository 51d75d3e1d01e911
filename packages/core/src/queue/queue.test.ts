import { randomUUID } from 'node:crypto';
import { readyRedis } from '@embedpool/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from './connection';
import { keys } from './names';
import { takeResult, writeResult } from './results';
import { ScoreQueue } from './score-queue';
import { heartbeat, liveWorkers, removeWorker } from './worker-registry';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('queue layer against Redis', () => {
  const prefix = `t-queue-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let queue: ScoreQueue;
  beforeAll(async () => {
    redis = await readyRedis(REDIS_URL);
    queue = new ScoreQueue(redis, { prefix });
  });
  afterAll(async () => {
    await queue.queue.obliterate({ force: true });
    await queue.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  it('validates payloads before they reach Redis', async () => {
    await expect(queue.add({ requestId: 'x', images: [], deadline: Date.now() })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
    });
    expect(await queue.queue.count()).toBe(0);
  });

  it('adds a job under the request id, once', async () => {
    const id = randomUUID();
    const data = {
      requestId: id,
      images: [{ kind: 'url' as const, url: 'http://x/y.png' }],
      deadline: Date.now() + 1000,
    };
    expect(await queue.add(data)).toBe(id);
    expect(await queue.add(data)).toBe(id);
    expect(await queue.queue.getWaitingCount()).toBe(1);
    expect(await queue.cancel(id)).toBe('removed');
    expect(await queue.queue.getWaitingCount()).toBe(0);
  });

  it('stores vectors as float32 bytes and hands them out exactly once', async () => {
    const v = Float32Array.from([1.5, -2.25, 3.125, 0]);
    await writeResult(redis, prefix, 'r1', v, 30);
    expect(await redis.strlen(keys.result(prefix, 'r1'))).toBe(16);
    expect(Array.from((await takeResult(redis, prefix, 'r1'))!)).toEqual(Array.from(v));
    expect(await takeResult(redis, prefix, 'r1')).toBeNull();
  });

  it('counts workers by heartbeat', async () => {
    const info = {
      id: 'w1',
      host: 'h',
      pid: 1,
      model: 'm.onnx',
      modelId: 'test',
      dim: 192,
      provider: 'cpu',
      randomWeights: false,
      startedAt: Date.now(),
    };
    await heartbeat(redis, prefix, info);
    expect((await liveWorkers(redis, prefix, 10)).map((w) => w.id)).toEqual(['w1']);
    await removeWorker(redis, prefix, 'w1');
    expect(await liveWorkers(redis, prefix, 10)).toEqual([]);
  });

  it('fails fast with UNAVAILABLE when Redis cannot be reached', async () => {
    const dead = createRedis('redis://127.0.0.1:1', 'producer', { retryStrategy: () => null });
    const q = new ScoreQueue(dead, { prefix });
    await expect(
      q.add({
        requestId: randomUUID(),
        images: [{ kind: 'base64', data: 'AA==' }],
        deadline: Date.now() + 1000,
      }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await q.close().catch(() => {});
    dead.disconnect();
  });
});
