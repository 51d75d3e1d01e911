import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '@embedpool/core/config';
import {
  DeliveryQueue,
  deliveryIdFor,
  REDRIVE_FIELD,
  redriveDelivery,
  verifySignature,
} from '@embedpool/core/delivery';
import { decodeJobFailure, EmbedpoolError } from '@embedpool/core/errors';
import { type JobLocation, type JobOutput, JobStore, jobKeys } from '@embedpool/core/jobs';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { readyRedis } from '@embedpool/testkit';
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { type Counter, type Gauge, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type DeliveryWorkerHandle, startDeliveryWorker } from './delivery-worker';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SECRET = 'test-callback-secret-0123456789';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** A loopback receiver answering each request with `status(n)` (n counts from 1); counts connections. */
async function startReceiver(status: (n: number) => number) {
  const requests: Received[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const code = status(requests.length + 1);
      requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status: code });
      res.writeHead(code, { 'content-type': 'text/plain' }).end(code < 300 ? 'ok' : 'nope');
      for (const w of waiters.filter((w) => requests.length >= w.count)) w.resolve();
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    requests,
    get connections() {
      return connections;
    },
    url: (path = '/hook') => `http://127.0.0.1:${port}${path}`,
    /** Resolves once `count` requests have been answered. */
    received(count: number) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push({ count, resolve }));
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

interface Harness {
  prefix: string;
  redis: Redis;
  store: JobStore;
  queue: DeliveryQueue;
  events: QueueEvents;
  worker: DeliveryWorkerHandle;
  registry: Registry;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(env: Record<string, string> = {}): Promise<Harness> {
  const prefix = `{t-delivery-${randomUUID().slice(0, 8)}}`;
  const config = loadConfig(
    {
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      CALLBACK_SECRET: SECRET,
      CALLBACK_ATTEMPTS: '5',
      CALLBACK_BACKOFF_MS: '20',
      FETCH_ALLOW: '127.0.0.0/8',
      ...env,
    },
    { LOG_LEVEL: 'silent' },
  );
  const redis = await readyRedis(REDIS_URL);
  const store = new JobStore(redis, prefix, config.JOB_TTL_S);
  const queue = DeliveryQueue.fromConfig(redis, config);
  // From the start of the (fresh) stream, so no event can slip past before the first read.
  const events = new QueueEvents(QUEUES.deliveries, {
    connection: createRedis(REDIS_URL, 'consumer'),
    prefix,
    lastEventId: '0-0',
  });
  await events.waitUntilReady();
  const registry = new Registry();
  const worker = await startDeliveryWorker({ config, registry });
  cleanups.push(async () => {
    await worker.close();
    await events.close();
    await queue.queue.obliterate({ force: true });
    await queue.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });
  return { prefix, redis, store, queue, events, worker, registry };
}

async function receiver(status: (n: number) => number): Promise<Receiver> {
  const r = await startReceiver(status);
  cleanups.push(() => r.close());
  return r;
}

/** Resolves with the first completion or final failure of the BullMQ job `queueJobId`. */
function settled(events: QueueEvents, queueJobId: string) {
  return new Promise<{ outcome: 'completed' | 'failed'; reason?: string }>((resolve) => {
    const onCompleted = ({ jobId }: { jobId: string }) => {
      if (jobId === queueJobId) done({ outcome: 'completed' });
    };
    const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }) => {
      if (jobId === queueJobId) done({ outcome: 'failed', reason: failedReason });
    };
    const done = (r: { outcome: 'completed' | 'failed'; reason?: string }) => {
      events.off('completed', onCompleted);
      events.off('failed', onFailed);
      resolve(r);
    };
    events.on('completed', onCompleted);
    events.on('failed', onFailed);
  });
}

const VECTORS = [
  [0.5, -1.25, 2, 0.125],
  [0, 0, 0, 0], // the failed item's zero row
  [-0.5, 3, 1.5, -2],
];

/** A finished job record, plus its inline float32 result unless `vectors` is null. */
async function finishedJob(
  h: Harness,
  output: JobOutput,
  opts: { vectors?: number[][] | null; location?: JobLocation } = {},
): Promise<string> {
  const id = randomUUID();
  await h.store.create({ id, itemIds: ['a', 'b', 'c'], normalize: false, output, createdAt: Date.now() });
  await h.store.markRunning(id);
  await h.store.finish(id, {
    succeeded: 2,
    failed: 1,
    failures: [{ index: 1, code: 'IMAGE_DECODE_FAILED', message: 'not an image' }],
    model: 'dinov2-test',
    dim: 4,
    location: opts.location ?? { type: 'callback', url: output.type === 'callback' ? output.url : '' },
  });
  const vectors = opts.vectors === undefined ? VECTORS : opts.vectors;
  if (vectors) {
    const f32 = new Float32Array(vectors.flat());
    await h.redis.set(jobKeys.result(h.prefix, id), Buffer.from(f32.buffer), 'EX', 600);
  }
  return id;
}

/** Checks the signature the documented way, independently of verifySignature, and returns t. */
function checkSigned(r: Received): number {
  const header = String(r.headers['embedpool-signature']);
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  expect(match, header).not.toBeNull();
  const [, t, v1] = match!;
  const expected = createHmac('sha256', SECRET).update(`${t}.${r.body}`).digest('hex');
  expect(v1).toBe(expected);
  expect(Math.abs(Number(t) - Date.now() / 1000)).toBeLessThan(60);
  expect(verifySignature(SECRET, header, r.body)).toBe(true);
  expect(verifySignature(SECRET, header, r.body.replace('dinov2-test', 'dinov2-evil'))).toBe(false);
  return Number(t);
}

async function counter(registry: Registry, outcome: string): Promise<number> {
  const metric = registry.getSingleMetric('embedpool_callback_deliveries_total') as Counter;
  return (await metric.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

async function deadLetters(registry: Registry): Promise<number> {
  const metric = registry.getSingleMetric('embedpool_callback_dead_letters') as Gauge;
  return (await metric.get()).values[0]?.value ?? Number.NaN;
}

describe('callback delivery worker (real Redis, loopback receivers)', () => {
  it('retries a failing receiver and delivers exactly once, signed, with one delivery id', async () => {
    const h = await harness();
    const rx = await receiver((n) => (n <= 3 ? 500 : 204));
    const jobId = await finishedJob(h, { type: 'callback', url: rx.url() });
    const done = settled(h.events, jobId);

    const enqueued = await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    expect(enqueued).toMatchObject({
      outcome: 'queued',
      queueJobId: jobId,
      deliveryId: deliveryIdFor(jobId),
    });
    expect((await h.store.get(jobId))?.delivery).toMatchObject({ state: 'pending', attempts: 0 });
    expect(await done).toEqual({ outcome: 'completed' });

    expect(rx.requests.map((r) => r.status)).toEqual([500, 500, 500, 204]);
    for (const r of rx.requests) {
      checkSigned(r);
      expect(r.headers['embedpool-delivery-id']).toBe(deliveryIdFor(jobId));
      expect(r.headers['embedpool-event']).toBe('job.completed');
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['user-agent']).toBe('embedpool');
    }
    const body = JSON.parse(rx.requests[3]!.body);
    expect(body).toMatchObject({
      event: 'job.completed',
      jobId,
      state: 'partially_failed',
      model: 'dinov2-test',
      dim: 4,
      items: [
        { id: 'a', image_features: VECTORS[0] },
        { id: 'b', error: { code: 'IMAGE_DECODE_FAILED', message: 'not an image' } },
        { id: 'c', image_features: VECTORS[2] },
      ],
    });
    expect(body.items[1]).not.toHaveProperty('image_features');
    expect(typeof body.createdAt).toBe('number');
    expect(typeof body.finishedAt).toBe('number');

    const record = await h.store.get(jobId);
    expect(record?.delivery).toMatchObject({
      state: 'delivered',
      deliveryId: deliveryIdFor(jobId),
      url: rx.url(),
      attempts: 4,
      lastStatus: 204,
    });
    expect(record?.delivery?.deliveredAt).toBeGreaterThan(0);
    // Read, not consumed: GET /v1/jobs/{id}/result still has it.
    expect(await h.redis.exists(jobKeys.result(h.prefix, jobId))).toBe(1);
    expect(await counter(h.registry, 'delivered')).toBe(1);
    expect(await counter(h.registry, 'failed_attempt')).toBe(3);
    expect(await counter(h.registry, 'dead')).toBe(0);
  });

  it('dead-letters after CALLBACK_ATTEMPTS, then a redrive delivers once with the same delivery id', async () => {
    const h = await harness({ CALLBACK_ATTEMPTS: '3' });
    let down = true;
    const rx = await receiver(() => (down ? 503 : 200));
    const jobId = await finishedJob(h, { type: 'callback', url: rx.url() });
    const failed = settled(h.events, jobId);
    await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    expect((await failed).outcome).toBe('failed');

    expect(rx.requests).toHaveLength(3);
    const dead = (await h.store.get(jobId))?.delivery;
    expect(dead).toMatchObject({ state: 'dead', attempts: 3, lastStatus: 503 });
    expect(dead?.lastError).toMatch(/URL_HTTP_STATUS/);
    expect(await counter(h.registry, 'dead')).toBe(1);
    expect(await counter(h.registry, 'failed_attempt')).toBe(2);
    expect(await deadLetters(h.registry)).toBe(1);

    // A retried embed job enqueueing again does not resurrect a dead letter.
    expect((await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' })).outcome).toBe('dead_lettered');

    down = false;
    const redriven = settled(h.events, `${jobId}-redrive-1`);
    const result = await redriveDelivery(h.store, h.queue, jobId);
    expect(result).toMatchObject({ outcome: 'queued', queueJobId: `${jobId}-redrive-1`, redrive: 1 });
    expect((await h.store.get(jobId))?.delivery?.state).toBe('pending');
    expect(await redriven).toEqual({ outcome: 'completed' });

    expect(rx.requests.map((r) => r.status)).toEqual([503, 503, 503, 200]);
    expect(new Set(rx.requests.map((r) => r.headers['embedpool-delivery-id']))).toEqual(
      new Set([deliveryIdFor(jobId)]),
    );
    for (const r of rx.requests) checkSigned(r);
    expect((await h.store.get(jobId))?.delivery).toMatchObject({
      state: 'delivered',
      attempts: 4,
      lastStatus: 200,
    });
    expect(await h.redis.hget(jobKeys.record(h.prefix, jobId), REDRIVE_FIELD)).toBe('1');
    expect(await deadLetters(h.registry)).toBe(0);
    expect(await counter(h.registry, 'delivered')).toBe(1);

    // Only a dead letter can be redriven; an unknown job is NOT_FOUND.
    await expect(redriveDelivery(h.store, h.queue, jobId)).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: 'delivery is not dead-lettered',
    });
    await expect(redriveDelivery(h.store, h.queue, randomUUID())).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('enqueueing the same job twice (or again after delivery) delivers once', async () => {
    const h = await harness();
    const rx = await receiver(() => 200);
    const jobId = await finishedJob(h, { type: 'callback', url: rx.url() });
    const done = settled(h.events, jobId);
    const first = await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    const second = await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    expect(first.outcome).toBe('queued');
    expect(second).toMatchObject({ outcome: 'already_queued', queueJobId: first.queueJobId });
    expect(await done).toEqual({ outcome: 'completed' });
    expect((await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' })).outcome).toBe(
      'already_delivered',
    );

    expect(rx.requests).toHaveLength(1);
    expect(await h.queue.queue.getJob(jobId)).toBeUndefined();
    const counts = await h.queue.queue.getJobCounts('waiting', 'delayed', 'active', 'failed');
    expect(Object.values(counts).every((n) => n === 0)).toBe(true);
    expect((await h.store.get(jobId))?.delivery).toMatchObject({ state: 'delivered', attempts: 1 });
  });

  it('a callback on a denied address fails unrecoverably at once and opens no connection', async () => {
    const h = await harness({ FETCH_ALLOW: '' });
    const rx = await receiver(() => 200);
    const jobId = await finishedJob(h, { type: 'callback', url: rx.url() });
    const failed = settled(h.events, jobId);
    await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    const outcome = await failed;
    expect(outcome.outcome).toBe('failed');
    expect(outcome.reason).toMatch(/URL_ADDRESS_NOT_ALLOWED/);

    const delivery = (await h.store.get(jobId))?.delivery;
    expect(delivery).toMatchObject({ state: 'dead', attempts: 1 });
    expect(delivery?.lastError).toMatch(/URL_ADDRESS_NOT_ALLOWED/);
    expect(delivery?.lastStatus).toBeUndefined();
    expect(rx.connections).toBe(0);
    expect(await counter(h.registry, 'dead')).toBe(1);
    expect(await counter(h.registry, 'failed_attempt')).toBe(0);
    expect(await deadLetters(h.registry)).toBe(1);
  });

  it('a blob-pointer body carries the record location', async () => {
    const h = await harness();
    const rx = await receiver(() => 200);
    const location: JobLocation = {
      type: 'blob',
      container: 'embeddings',
      blobs: ['2024-05-01/job/vectors.jsonl', '2024-05-01/job/vectors.npy'],
    };
    const output: JobOutput = {
      type: 'blob',
      container: 'embeddings',
      path: '{date}/{jobId}',
      npy: true,
      callbackUrl: rx.url('/blob'),
    };
    const jobId = await finishedJob(h, output, { vectors: null, location });
    const done = settled(h.events, jobId);
    await h.queue.enqueue({ jobId, url: rx.url('/blob'), kind: 'blob-pointer' });
    expect(await done).toEqual({ outcome: 'completed' });

    expect(rx.requests).toHaveLength(1);
    checkSigned(rx.requests[0]!);
    const body = JSON.parse(rx.requests[0]!.body);
    expect(body).toMatchObject({
      event: 'job.completed',
      jobId,
      state: 'partially_failed',
      location,
      counts: { total: 3, succeeded: 2, failed: 1 },
      failures: [{ index: 1, id: 'b', code: 'IMAGE_DECODE_FAILED' }],
    });
    expect(body).not.toHaveProperty('items');
  });

  it('an expired inline result fails unrecoverably without contacting the receiver', async () => {
    const h = await harness();
    const rx = await receiver(() => 200);
    const jobId = await finishedJob(h, { type: 'callback', url: rx.url() }, { vectors: null });
    const failed = settled(h.events, jobId);
    await h.queue.enqueue({ jobId, url: rx.url(), kind: 'vectors' });
    expect((await failed).reason).toMatch(/RESULT_EXPIRED/);
    const delivery = (await h.store.get(jobId))?.delivery;
    expect(delivery).toMatchObject({ state: 'dead', attempts: 1 });
    expect(delivery?.lastError).toMatch(/RESULT_EXPIRED/);
    expect(rx.connections).toBe(0);
  });

  it('refuses to enqueue without CALLBACK_SECRET, or for a job that does not exist', async () => {
    const h = await harness();
    const unsigned = new DeliveryQueue(h.redis, {
      prefix: h.prefix,
      secret: undefined,
      attempts: 3,
      backoffMs: 20,
    });
    cleanups.push(() => unsigned.close());
    const jobId = await finishedJob(h, { type: 'callback', url: 'http://127.0.0.1:9/hook' });
    const err = await unsigned
      .enqueue({ jobId, url: 'http://127.0.0.1:9/hook', kind: 'vectors' })
      .catch((e) => e);
    expect(err).toBeInstanceOf(EmbedpoolError);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(unsigned.configured).toBe(false);
    expect((await h.store.get(jobId))?.delivery).toBeUndefined();
    await expect(
      h.queue.enqueue({ jobId: randomUUID(), url: 'http://127.0.0.1:9/hook', kind: 'vectors' }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('dead-letters a delivery whose payload fails its schema on dequeue, or whose name is unknown, at once', async () => {
    const h = await harness();
    for (const [name, data] of [
      ['deliver', { jobId: 'j', url: 'not a url' }],
      ['no-such-job', { jobId: 'j', url: 'http://127.0.0.1:9/hook' }],
    ] as const) {
      const id = randomUUID();
      const done = settled(h.events, id);
      // As a producer of another version would queue it: past the catalogue, straight into BullMQ.
      await h.queue.queue.add(name, data, { jobId: id, attempts: 5 });
      const result = await done;
      expect(result.outcome).toBe('failed');
      expect(decodeJobFailure(result.reason)?.code).toBe('BAD_REQUEST');
      expect((await h.queue.queue.getJob(id))?.attemptsMade).toBe(1);
    }
    expect(await counter(h.registry, 'dead')).toBe(2);
  });
});
