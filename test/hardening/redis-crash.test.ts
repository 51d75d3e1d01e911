/**
 * Redis killed with -9 while accepted async jobs and an ingestion are in flight, then restarted from its
 * append-only file (what compose, AKS and `npm start` run): every accepted job and the ingestion complete,
 * without restarting the API or the worker.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApi } from '@embedpool/api';
import type { Config } from '@embedpool/core/config';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { PrivateRedis } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobService, IngestEvents, makeBlobs, postIngestion, upload } from '../e2e/ingest-support';
import { type Azurite, startAzurite } from '../support/azurite';
import { JobEvents, parityModel, postJson, testConfig, waitJobFinal } from '../support/stack';
import { fixtures, guardNetwork } from './support';

guardNetwork();

const image = readFileSync(fixtures.find((i) => i.name === 'china.jpg')!.path).toString('base64');

describe('Redis kill -9 with accepted jobs and an ingestion in flight (append-only file)', () => {
  let dir: string;
  let server: PrivateRedis;
  let azurite: Azurite;
  let config: Config;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let jobs: JobEvents;
  let ingests: IngestEvents;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'embedpool-aof-'));
    // fsync on every write: the assertion below is exact. With `everysec` (the shipped setting) a crash
    // may also drop the last second of acknowledgements.
    server = await PrivateRedis.start(['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always']);
    azurite = await startAzurite();
    await upload(blobService(azurite.connectionString).getContainerClient('photos'), await makeBlobs(40));
    config = testConfig({
      REDIS_URL: server.url,
      BLOB_CONNECTION_STRING: azurite.connectionString,
      INGEST_CHUNK_SIZE: '4',
      INGEST_MAX_QUEUED_CHUNKS: '4',
      INGEST_CHUNK_CONCURRENCY: '1',
      // A chunk whose completion was cut off by the crash is taken back once its lock lapses: keep it short.
      JOB_LOCK_MS: '3000',
    });
    worker = await startWorker({ config, model: parityModel });
    api = await startApi({ config });
    jobs = new JobEvents(config.QUEUE_PREFIX, server.url);
    ingests = new IngestEvents(config.QUEUE_PREFIX, server.url);
    await Promise.all([jobs.ready(), ingests.ready()]);
  });
  afterAll(async () => {
    await jobs?.close();
    await ingests?.close();
    await api?.close();
    await worker?.close();
    await azurite?.dispose();
    await server?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('completes every accepted job and the ingestion after Redis comes back', async () => {
    // The embed queue paused: the accepted jobs are certainly still waiting in Redis when it dies.
    const embed = new Queue(QUEUES.embed, {
      connection: createRedis(server.url, 'consumer'),
      prefix: config.QUEUE_PREFIX,
    });
    await embed.pause();
    const accepted: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await postJson(`${api.url}/v1/jobs`, {
        images: Array.from({ length: 4 }, () => ({ base64: image })),
      });
      expect(res.status).toBe(202);
      accepted.push(res.json.id);
    }
    const firstChunk = ingests.chunksCompleted(1);
    const ingestion = await postIngestion(api.url, {
      source: { container: 'photos' },
      output: { container: 'vectors', prefix: 'crash' },
    });
    expect(ingestion.status).toBe(202);
    await firstChunk;
    const before = await (await fetch(`${api.url}/v1/ingestions/${ingestion.json.id}`)).json();
    expect(before.state).toBe('running');

    await server.kill();
    await server.start();
    await embed.resume();
    await embed.close();

    const view = await ingests.final(api.url, ingestion.json.id);
    expect(view.state).toBe('completed');
    expect(view.counts).toMatchObject({ discovered: 40, done: 40, failed: 0 });
    for (const id of accepted) {
      const job = await waitJobFinal(api.url, jobs, id);
      expect(job.state).toBe('completed');
      expect(job.counts).toEqual({ total: 4, succeeded: 4, failed: 0 });
    }
  }, 120_000);
});
