import type { IncomingHttpHeaders } from 'node:http';
import { ingestionDeliveryId, ingestionDeliveryQueueJobId, verifySignature } from '@embedpool/core/delivery';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { startLoopbackServer } from '@embedpool/testkit/loopback-test-kit';
import { QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeliveryWorkerHandle, startDeliveryWorker } from '../../apps/worker/src/delivery-worker';
import { type Azurite, startAzurite } from '../support/azurite';
import { testConfig } from '../support/stack';
import {
  blobService,
  getJson,
  type IngestStack,
  makeBlobs,
  postIngestion,
  startIngestStack,
  upload,
} from './ingest-support';

const SECRET = 'test-callback-secret-0123456789';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * An ingestion's completion callback end to end: the finalizer queues it on `deliveries`, and the same
 * delivery worker as job callbacks signs and POSTs it (docs/ingestion.md#callback).
 */
describe('ingestion callback (Azurite, Redis, fixture model, loopback receiver)', () => {
  let azurite: Azurite;
  let stack: IngestStack;
  let delivery: DeliveryWorkerHandle;
  let events: QueueEvents;
  let receiver: Awaited<ReturnType<typeof startLoopbackServer>>;
  const received: Received[] = [];
  const waiters: (() => void)[] = [];

  beforeAll(async () => {
    receiver = await startLoopbackServer('127.0.0.1', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        // The first attempt fails: the retry must come from the deliveries queue.
        res.writeHead(received.length === 1 ? 503 : 204).end();
        if (received.length >= 2) for (const wake of waiters.splice(0)) wake();
      });
    });
    azurite = await startAzurite();
    const blob = blobService(azurite.connectionString);
    await upload(blob.getContainerClient('photos'), await makeBlobs(6, { corrupt: 1 }));
    const config = testConfig({
      BLOB_CONNECTION_STRING: azurite.connectionString,
      CALLBACK_SECRET: SECRET,
      CALLBACK_BACKOFF_MS: '20',
      FETCH_ALLOW: '127.0.0.0/8',
      LOG_LEVEL: 'warn',
    });
    stack = await startIngestStack(config);
    delivery = await startDeliveryWorker({ config });
    // From the start of the stream: the delivery's completion cannot slip past before the test listens.
    events = new QueueEvents(QUEUES.deliveries, {
      connection: createRedis(config.REDIS_URL, 'consumer'),
      prefix: config.QUEUE_PREFIX,
      lastEventId: '0-0',
    });
    await events.waitUntilReady();
  });
  afterAll(async () => {
    await events?.close();
    await delivery?.close();
    await stack?.stop();
    await azurite?.dispose();
    await receiver?.close();
  });

  it('POSTs the final state once, signed, as ingestion.finished, and records it delivered', async () => {
    const delivered = new Promise<void>((resolve) => waiters.push(resolve));
    const res = await postIngestion(stack.url, {
      source: { container: 'photos' },
      output: { container: 'vectors', prefix: 'cb/v1' },
      callbackUrl: receiver.url('/hooks/ingestion'),
    });
    expect(res.status).toBe(202);
    const id: string = res.json.id;
    const queueJobId = ingestionDeliveryQueueJobId(id, 0);
    // The outcome is written before the delivery job completes.
    const completed = new Promise<void>((resolve) => {
      events.on('completed', (e) => {
        if (e.jobId === queueJobId) resolve();
      });
    });
    await delivered;
    await completed;

    expect(received).toHaveLength(2);
    for (const r of received) {
      expect(r.headers['embedpool-event']).toBe('ingestion.finished');
      expect(r.headers['embedpool-delivery-id']).toBe(ingestionDeliveryId(id, 0));
      expect(r.headers['user-agent']).toBe('embedpool');
      expect(verifySignature(SECRET, String(r.headers['embedpool-signature']), r.body)).toBe(true);
    }
    const body = JSON.parse(received[1]!.body);
    expect(body).toMatchObject({
      event: 'ingestion.finished',
      ingestion: { id, state: 'partially_failed', counts: { done: 6, failed: 1 } },
    });

    const view = await getJson(`${stack.url}/v1/ingestions/${id}`);
    expect(view.callback).toMatchObject({
      url: receiver.url('/hooks/ingestion'),
      state: 'delivered',
      attempts: 2,
      lastStatus: 204,
    });
  });
});
