import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '@embedpool/core/config';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import {
  createRedis,
  liveWorkers,
  QUEUES,
  type ScoreJobInput,
  ScoreQueue,
  type ScoreResult,
  takeResult,
} from '@embedpool/core/queue';
import { cosine, loadParityReference, PARITY_MODEL, parityImages, readyRedis } from '@embedpool/testkit';
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorker, type WorkerHandle } from './worker';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ref = loadParityReference();
const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

describe('worker against Redis with the parity model', () => {
  const prefix = `{t-worker-${randomUUID().slice(0, 8)}}`;
  let worker: WorkerHandle;
  let redis: Redis;
  let queue: ScoreQueue;
  let events: QueueEvents;
  let server: Server;
  let baseUrl: string;

  beforeAll(async () => {
    const config = loadConfig(
      {
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        MAX_BATCH_SIZE: '8',
        BATCH_WAIT_MS: '5',
        FETCH_ALLOW: '127.0.0.0/8',
      },
      { LOG_LEVEL: 'silent' },
    );
    worker = await startWorker({
      config,
      model: {
        path: PARITY_MODEL,
        modelId: 'parity',
        randomWeights: false,
        preprocessor: DINOV2_PREPROCESSOR_CONFIG,
      },
    });
    redis = await readyRedis(REDIS_URL);
    queue = new ScoreQueue(redis, { prefix });
    events = new QueueEvents(QUEUES.embed, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
    events.setMaxListeners(64);
    await events.waitUntilReady();
    server = createServer((req, res) => {
      const img = images.find((i) => req.url === `/${i.name}`);
      if (!img) return res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(img.path));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await worker.close();
    await events.close();
    await queue.queue.obliterate({ force: true });
    await queue.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
    await new Promise((r) => server.close(r));
  });

  async function score(images: ScoreJobInput['images'], extra: Partial<ScoreJobInput> = {}) {
    const requestId = randomUUID();
    await queue.add({ requestId, images, deadline: Date.now() + 60_000, ...extra });
    const job = (await queue.queue.getJob(requestId))!;
    const result = (await job.waitUntilFinished(events)) as ScoreResult;
    const vectors = (await takeResult(redis, prefix, requestId))!;
    return { result, vectors, requestId };
  }

  const row = (v: Float32Array, dim: number, i: number) => v.subarray(i * dim, (i + 1) * dim);

  it('runs the model on a dummy batch of the largest size before its first heartbeat', async () => {
    expect(worker.warmUp).toMatchObject({ batch: 8, runs: worker.engine.threads });
    expect(worker.warmUp.finishedAt).toBeLessThanOrEqual(worker.firstHeartbeatAt);
    // Its heartbeat announces the model it warmed up.
    const [live] = await liveWorkers(redis, prefix, 60);
    expect(live?.dim).toBe(192);
    expect(worker.engine.stats.images).toBeGreaterThanOrEqual(8 * worker.engine.threads);
  });

  it('embeds base64 and data-URI images into the reference vectors', async () => {
    const refs = images.map((img, i) =>
      i % 2 === 0
        ? { kind: 'base64' as const, data: b64(img.path) }
        : { kind: 'base64' as const, data: `data:image/png;base64,${b64(img.path)}` },
    );
    const { result, vectors } = await score(refs);
    expect(result.failures).toEqual([]);
    expect(result.dim).toBe(ref.dim);
    images.forEach((img, i) =>
      expect(cosine(row(vectors, result.dim, i), img.reference!)).toBeGreaterThan(0.999),
    );
  });

  it('fetches URLs on the allow list and refuses the rest, one row at a time', async () => {
    const { result, vectors } = await score([
      { kind: 'url', url: `${baseUrl}/${images[0]!.name}` },
      { kind: 'url', url: `${baseUrl}/missing.png` },
      { kind: 'url', url: 'ftp://127.0.0.1/x.png' },
    ]);
    expect(cosine(row(vectors, result.dim, 0), images[0]!.reference!)).toBeGreaterThan(0.999);
    expect(result.failures.map((f) => [f.index, f.code])).toEqual([
      [1, 'URL_HTTP_STATUS'],
      [2, 'URL_SCHEME_NOT_ALLOWED'],
    ]);
  });

  it('fails only the corrupt image of a job', async () => {
    const { result, vectors } = await score([
      { kind: 'base64', data: b64(images[0]!.path) },
      { kind: 'base64', data: Buffer.from('not an image at all').toString('base64') },
      { kind: 'base64', data: b64(images[1]!.path) },
    ]);
    expect(result.failures.map((f) => f.index)).toEqual([1]);
    expect(result.failures[0]!.code).toBe('IMAGE_UNSUPPORTED_FORMAT');
    expect(cosine(row(vectors, result.dim, 2), images[1]!.reference!)).toBeGreaterThan(0.999);
  });

  it('packs 16 concurrent single-image jobs into fewer than 16 model runs', async () => {
    const before = (await worker.metrics.modelRuns.get()).values[0]?.value ?? 0;
    const outs = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        score([{ kind: 'base64', data: b64(images[i % images.length]!.path) }]),
      ),
    );
    outs.forEach((o, i) =>
      expect(cosine(o.vectors, images[i % images.length]!.reference!)).toBeGreaterThan(0.999),
    );
    const runs = ((await worker.metrics.modelRuns.get()).values[0]?.value ?? 0) - before;
    expect(runs).toBeGreaterThan(0);
    expect(runs).toBeLessThan(16);
  });

  it('answers a 40-image job in order across batches of 8', async () => {
    const order = Array.from({ length: 40 }, (_, i) => images[(i * 5) % images.length]!);
    const { result, vectors } = await score(
      order.map((img) => ({ kind: 'base64' as const, data: b64(img.path) })),
    );
    expect(result.count).toBe(40);
    order.forEach((img, i) =>
      expect(cosine(row(vectors, result.dim, i), img.reference!)).toBeGreaterThan(0.999),
    );
  });

  it('drops a job whose caller has stopped waiting, without retrying it', async () => {
    const requestId = randomUUID();
    await queue.add({
      requestId,
      images: [{ kind: 'base64', data: b64(images[0]!.path) }],
      deadline: Date.now() - 1,
    });
    const job = (await queue.queue.getJob(requestId))!;
    await expect(job.waitUntilFinished(events)).rejects.toThrow(/TIMEOUT/);
    const failed = (await queue.queue.getJob(requestId))!;
    expect(failed.attemptsMade).toBe(1);
  });
});
