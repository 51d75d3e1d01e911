import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { loadConfig } from '@embedpool/core/config';
import {
  DeliveryQueue,
  ingestionDeliveryId,
  ingestionDeliveryQueueJobId,
  verifySignature,
} from '@embedpool/core/delivery';
import {
  createIngestionRequestSchema,
  IngestionStore,
  newIngestionId,
  outputKey,
} from '@embedpool/core/ingest';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { readyRedis } from '@embedpool/testkit';
import { type LoopbackServer, startLoopbackServer } from '@embedpool/testkit/loopback-test-kit';
import { QueueEvents } from 'bullmq';
import { type Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { startDeliveryWorker } from '../delivery-worker';
import { queueIngestionCallback } from './callback';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SECRET = 'test-callback-secret-0123456789';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A loopback receiver answering the n-th request (from 1) with `status(n)`. */
async function receiver(status: (n: number) => number) {
  const requests: Received[] = [];
  const server: LoopbackServer = await startLoopbackServer('127.0.0.1', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(status(requests.length)).end();
    });
  });
  cleanups.push(() => server.close());
  return { requests, url: server.url('/hooks/ingestion') };
}

/** The ingestion store, a delivery queue and the delivery worker on a fresh prefix. */
async function harness() {
  const prefix = `{t-ingest-cb-${randomUUID().slice(0, 8)}}`;
  const config = loadConfig(
    {
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      CALLBACK_SECRET: SECRET,
      CALLBACK_ATTEMPTS: '3',
      CALLBACK_BACKOFF_MS: '20',
      FETCH_ALLOW: '127.0.0.0/8',
    },
    { LOG_LEVEL: 'silent' },
  );
  const redis = await readyRedis(REDIS_URL);
  const store = new IngestionStore(redis, prefix, config.JOB_TTL_S);
  const deliveries = DeliveryQueue.fromConfig(redis, config);
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
    await deliveries.queue.obliterate({ force: true });
    await deliveries.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });
  /** Resolves once the BullMQ job `queueJobId` completes or fails for good. */
  const settled = (queueJobId: string) =>
    new Promise<string>((resolve) => {
      const on = (outcome: string) => (e: { jobId: string }) => {
        if (e.jobId === queueJobId) resolve(outcome);
      };
      events.on('completed', on('completed'));
      events.on('failed', on('failed'));
    });
  return { store, deliveries, registry, settled };
}

async function ingestion(store: IngestionStore, callbackUrl: string): Promise<string> {
  const id = newIngestionId();
  const request = createIngestionRequestSchema.parse({
    source: { container: 'photos' },
    output: { container: 'vectors', prefix: 'v1' },
    callbackUrl,
  });
  await store.create({ id, request, outputKey: outputKey('vectors', randomUUID()), createdAt: Date.now() });
  return id;
}

describe('ingestion completion callback (through the deliveries queue)', () => {
  it('is delivered by the delivery worker: signed, ingestion.finished, retried, recorded', async () => {
    const h = await harness();
    const rx = await receiver((n) => (n === 1 ? 503 : 204));
    const id = await ingestion(h.store, rx.url);
    const done = h.settled(ingestionDeliveryQueueJobId(id, 0));

    expect(await queueIngestionCallback(h, id, 0)).toBe('queued');
    expect(await done).toBe('completed');

    expect(rx.requests).toHaveLength(2);
    for (const r of rx.requests) {
      expect(r.headers['embedpool-event']).toBe('ingestion.finished');
      expect(r.headers['embedpool-delivery-id']).toBe(ingestionDeliveryId(id, 0));
      expect(verifySignature(SECRET, String(r.headers['embedpool-signature']), r.body)).toBe(true);
    }
    const body = JSON.parse(rx.requests[1]!.body);
    expect(body).toMatchObject({ event: 'ingestion.finished', ingestion: { id } });
    expect((await h.store.get(id))?.callback).toMatchObject({
      url: rx.url,
      state: 'delivered',
      attempts: 2,
      lastStatus: 204,
    });
    const metric = h.registry.getSingleMetric('embedpool_callback_deliveries_total') as Counter;
    const values = (await metric.get()).values;
    expect(values.find((v) => v.labels.outcome === 'delivered')?.value).toBe(1);
    expect(values.find((v) => v.labels.outcome === 'failed_attempt')?.value).toBe(1);

    // Delivered: queueing it again (a replayed finalize) sends nothing.
    expect(await queueIngestionCallback(h, id, 0)).toBe('delivered');
  });

  it('is dead-lettered after CALLBACK_ATTEMPTS failures, with the last status on the record', async () => {
    const h = await harness();
    const rx = await receiver(() => 500);
    const id = await ingestion(h.store, rx.url);
    const done = h.settled(ingestionDeliveryQueueJobId(id, 0));
    await queueIngestionCallback(h, id, 0);
    expect(await done).toBe('failed');
    expect(rx.requests).toHaveLength(3);
    expect((await h.store.get(id))?.callback).toMatchObject({ state: 'dead', attempts: 3, lastStatus: 500 });
  });

  it('is recorded dead at once when the worker has no CALLBACK_SECRET', async () => {
    const h = await harness();
    const id = await ingestion(h.store, 'http://127.0.0.1:9/hook');
    expect(await queueIngestionCallback({ store: h.store }, id, 0)).toBe('dead');
    expect((await h.store.get(id))?.callback).toMatchObject({
      state: 'dead',
      attempts: 0,
      lastError: 'callbacks are not configured on the worker (CALLBACK_SECRET)',
    });
  });
});
