import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import { startApi } from '@embedpool/api';
import type { Config } from '@embedpool/core/config';
import { cosine, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { CliProcess } from '../support/cli-process';
import {
  cleanPrefix,
  JobEvents,
  jobStatus,
  postJson,
  REDIS_URL,
  startStack,
  testConfig,
  waitJobFinal,
} from '../support/stack';

const images = parityImages().filter((i) => i.reference);
const byName = new Map(images.map((i) => [i.name, i]));
/** 50 items cycling through the fixture, each with its own id. */
const fifty = Array.from({ length: 50 }, (_, i) => ({ id: `img-${i}`, image: images[i % images.length]! }));

async function readJsonl(client: BlobServiceClient, container: string, name: string) {
  const buf = await client.getContainerClient(container).getBlobClient(name).downloadToBuffer();
  return buf
    .toString('utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; image_features: number[] });
}

async function listBlobs(client: BlobServiceClient, container: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of client.getContainerClient(container).listBlobsFlat()) names.push(b.name);
  return names.sort();
}

function expectFiftyMatching(rows: { id: string; image_features: number[] }[]) {
  expect(rows).toHaveLength(50);
  expect(new Set(rows.map((r) => r.id)).size).toBe(50);
  for (const row of rows) {
    const item = fifty.find((f) => f.id === row.id)!;
    expect(cosine(row.image_features, item.image.reference!)).toBeGreaterThan(0.999);
  }
}

/** Serves fixture images; can hold one request open to freeze a job mid-flight. */
function imageServer() {
  const held = new EventEmitter();
  const stuck: ServerResponse[] = [];
  let holdAt = -1;
  let count = 0;
  const server: Server = createServer((req, res) => {
    count++;
    if (count === holdAt) {
      stuck.push(res);
      held.emit('held');
      return;
    }
    const img = byName.get(decodeURIComponent(req.url!.slice(1)).split('?')[0]!);
    if (!img) return res.writeHead(404).end();
    res.writeHead(200).end(readFileSync(img.path));
  });
  return {
    server,
    held,
    /** Holds the n-th request from now (n < 0: none). */
    holdRequest: (n: number) => {
      holdAt = n < 0 ? -1 : count + n;
    },
    releaseStuck: () => {
      for (const r of stuck) r.destroy();
    },
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  };
}

describe('async jobs writing to Azure Blob storage (Azurite)', () => {
  let azurite: Azurite;
  let blob: BlobServiceClient;
  const images = imageServer();
  beforeAll(async () => {
    azurite = await startAzurite();
    blob = BlobServiceClient.fromConnectionString(azurite.connectionString);
    await new Promise<void>((r) => images.server.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    await azurite.dispose();
    await new Promise((r) => images.server.close(r));
  });

  const envFor = () => ({
    BLOB_CONNECTION_STRING: azurite.connectionString,
    BLOB_MAX_TRIES: '1',
    BLOB_RETRY_DELAY_MS: '50',
    FETCH_ALLOW: '127.0.0.0/8',
  });
  const blobJob = (container: string) => ({
    images: fifty.map((f) => ({ id: f.id, url: `${images.url()}/${f.image.name}?${f.id}` })),
    output: { type: 'blob', container, path: 'runs/{jobId}', npy: true },
  });

  it('writes exactly 50 matching vectors, once, for a job submitted twice with one Idempotency-Key', async () => {
    const stack = await startStack(testConfig(envFor()));
    const events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
    try {
      const body = blobJob('fifty');
      const first = await postJson(`${stack.api.url}/v1/jobs`, body, { 'idempotency-key': 'fifty-1' });
      const second = await postJson(`${stack.api.url}/v1/jobs`, body, { 'idempotency-key': 'fifty-1' });
      expect(first.status).toBe(202);
      expect(second.json.id).toBe(first.json.id);
      const status = await waitJobFinal(stack.api.url, events, first.json.id);
      expect(status.state).toBe('completed');
      expect(status.location?.container).toBe('fifty');
      const names = await listBlobs(blob, 'fifty');
      expect(names).toEqual(
        [
          `runs/${first.json.id}.ids.json`,
          `runs/${first.json.id}.jsonl`,
          `runs/${first.json.id}.manifest.json`,
          `runs/${first.json.id}.npy`,
        ].sort(),
      );
      expectFiftyMatching(await readJsonl(blob, 'fifty', `runs/${first.json.id}.jsonl`));
    } finally {
      await events.close();
      await stack.stop();
    }
  });

  it('still leaves exactly 50 when the worker is killed mid-job and another takes over', async () => {
    const config: Config = testConfig({ ...envFor(), JOB_LOCK_MS: '1500' });
    const api = await startApi({ config });
    const events = new JobEvents(config.QUEUE_PREFIX);
    await events.ready();
    const workers: CliProcess[] = [];
    const startWorker = async () => {
      const w = new CliProcess(['worker'], {
        REDIS_URL,
        QUEUE_PREFIX: config.QUEUE_PREFIX,
        MODEL_PATH: PARITY_MODEL,
        JOB_LOCK_MS: '1500',
        WORKER_METRICS_PORT: '0',
        ...envFor(),
      });
      workers.push(w);
      await w.waitForLog((l) => l.msg === 'worker started');
      return w;
    };
    try {
      images.holdRequest(20);
      const first = await startWorker();
      const isHeld = once(images.held, 'held');
      const submitted = await postJson(`${api.url}/v1/jobs`, blobJob('crash'));
      await isHeld;
      await first.kill('SIGKILL');
      images.releaseStuck();
      images.holdRequest(-1);
      await startWorker();
      const status = await waitJobFinal(api.url, events, submitted.json.id);
      expect(status.state).toBe('completed');
      const names = await listBlobs(blob, 'crash');
      expect(names.filter((n) => n.endsWith('.jsonl'))).toEqual([`runs/${submitted.json.id}.jsonl`]);
      expect(names).toHaveLength(4);
      expectFiftyMatching(await readJsonl(blob, 'crash', `runs/${submitted.json.id}.jsonl`));
    } finally {
      for (const w of workers) await w.kill('SIGKILL');
      await events.close();
      await api.close();
      await cleanPrefix(config.QUEUE_PREFIX);
    }
  }, 120_000);

  it('retries while Azurite is down and completes once it is back', async () => {
    const stack = await startStack(testConfig({ ...envFor(), JOB_ATTEMPTS: '6' }));
    const events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
    try {
      await azurite.stop();
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, blobJob('outage'));
      // The first attempt failed on storage and BullMQ scheduled a retry: bring storage back.
      expect(await events.next(submitted.json.id, ['delayed', 'failed'])).toBe('delayed');
      expect((await jobStatus(stack.api.url, submitted.json.id)).state).toBe('running');
      await azurite.restart();
      const status = await waitJobFinal(stack.api.url, events, submitted.json.id);
      expect(status.state).toBe('completed');
      expectFiftyMatching(await readJsonl(blob, 'outage', `runs/${submitted.json.id}.jsonl`));
    } finally {
      await events.close();
      await stack.stop();
    }
  });

  it('fails with the storage error code when Azurite stays down, and reports nothing as complete', async () => {
    const stack = await startStack(testConfig({ ...envFor(), JOB_ATTEMPTS: '2' }));
    const events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
    try {
      await azurite.stop();
      const submitted = await postJson(`${stack.api.url}/v1/jobs`, blobJob('down'));
      const status = await waitJobFinal(stack.api.url, events, submitted.json.id);
      expect(status.state).toBe('failed');
      expect(status.error?.code).toMatch(/^STORAGE_/);
      expect(status.location).toBeUndefined();
      expect(status.items?.every((i) => i.status !== 'succeeded')).toBe(true);
    } finally {
      await azurite.restart();
      await events.close();
      await stack.stop();
    }
  });
});
