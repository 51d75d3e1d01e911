import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@embedpool/core/config';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import {
  DEFAULT_HOLDOUT_DIR,
  embedAll,
  loadImageDir,
  openSession,
  quantizeModel,
} from '@embedpool/core/quantize';
import {
  createRedis,
  liveWorkers,
  QUEUES,
  ScoreQueue,
  type ScoreResult,
  takeResult,
} from '@embedpool/core/queue';
import { cosine, readyRedis } from '@embedpool/testkit';
import { buildOutlierDinov2 } from '@embedpool/testkit/stress-model';
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type WorkerHandle } from './worker';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('worker serving an int8 model', { timeout: 120_000 }, () => {
  // Braced: QUEUE_PREFIX is a cluster hash tag, and this test uses the prefix directly too.
  const prefix = `{t-int8-${randomUUID().slice(0, 8)}}`;
  let dir: string;
  let fp32: string;
  let int8: string;
  let worker: WorkerHandle;
  let redis: Redis;
  let queue: ScoreQueue;
  let events: QueueEvents;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'embedpool-int8-worker-'));
    fp32 = join(dir, 'stress.onnx');
    int8 = join(dir, 'stress-int8.onnx');
    await writeFile(fp32, buildOutlierDinov2());
    const q = await quantizeModel({ input: fp32, threads: 1 });
    expect(q.passed).toBe(true);
    await writeFile(int8, q.model);
    const config = loadConfig(
      { REDIS_URL, QUEUE_PREFIX: prefix, MAX_BATCH_SIZE: '4', BATCH_WAIT_MS: '5', INTRA_OP_THREADS: '1' },
      { LOG_LEVEL: 'silent' },
    );
    // Loaded like any other model: only the path differs.
    worker = await startWorker({
      config,
      model: {
        path: int8,
        modelId: 'stress-int8',
        randomWeights: false,
        preprocessor: DINOV2_PREPROCESSOR_CONFIG,
      },
    });
    redis = await readyRedis(REDIS_URL);
    queue = new ScoreQueue(redis, { prefix });
    events = new QueueEvents(QUEUES.embed, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
    await events.waitUntilReady();
  });

  afterAll(async () => {
    await worker?.close();
    await events?.close();
    await queue?.queue.obliterate({ force: true });
    await queue?.close();
    if (redis) {
      const left = await redis.keys(`${prefix}:*`);
      if (left.length) await redis.del(...left);
      redis.disconnect();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes its precision in the heartbeat and the model-info metric', async () => {
    expect(worker.precision).toBe('int8');
    const [live] = await liveWorkers(redis, prefix, 30);
    expect(live).toMatchObject({ modelId: 'stress-int8', precision: 'int8' });
    const metrics = await worker.registry.metrics();
    expect(metrics).toMatch(/embedpool_model_info\{[^}]*model_id="stress-int8"[^}]*precision="int8"\} 1/);
  });

  it('embeds a photo close to the float32 model', async () => {
    const [photo] = await loadImageDir(DEFAULT_HOLDOUT_DIR, { size: 224, limit: 1 });
    const session = await openSession(fp32, { threads: 1 });
    const [reference] = await embedAll(session, [photo!.pixels]);
    await session.release();

    const requestId = randomUUID();
    const data = readFileSync(join(DEFAULT_HOLDOUT_DIR, photo!.name)).toString('base64');
    await queue.add({ requestId, images: [{ kind: 'base64', data }], deadline: Date.now() + 60_000 });
    const job = (await queue.queue.getJob(requestId))!;
    const result = (await job.waitUntilFinished(events)) as ScoreResult;
    expect(result.failures).toEqual([]);
    const vector = (await takeResult(redis, prefix, requestId))!;
    expect(cosine(vector, reference!)).toBeGreaterThan(0.995);
    expect(cosine(vector, reference!)).toBeLessThan(1);
  });
});
