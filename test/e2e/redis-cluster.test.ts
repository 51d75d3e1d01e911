import { readFileSync } from 'node:fs';
import { startApi } from '@embedpool/api';
import type { Config } from '@embedpool/core/config';
import { createRedis, keys, QUEUES, ScoreQueue } from '@embedpool/core/queue';
import { PrivateRedisCluster, parityImages } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { JobEvents, parityModel, postJson, testConfig, waitJobFinal } from '../support/stack';
import { blobService, IngestEvents, makeBlobs, postIngestion, upload } from './ingest-support';

const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

/**
 * The whole service on a 3-master Redis Cluster (as Azure Managed Redis's OSS cluster policy presents it):
 * every key carries the `{QUEUE_PREFIX}` hash tag, so BullMQ's and the project's multi-key scripts run on
 * one slot; REDIS_CLUSTER=true connects with ioredis's Cluster client from a list of seed nodes.
 */
describe('Redis Cluster (3 masters on loopback)', () => {
  let cluster: PrivateRedisCluster;
  let azurite: Azurite;
  let config: Config;
  let api: Awaited<ReturnType<typeof startApi>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let jobs: JobEvents;
  let ingests: IngestEvents;

  beforeAll(async () => {
    [cluster, azurite] = await Promise.all([PrivateRedisCluster.start(3), startAzurite()]);
    config = testConfig({
      REDIS_URL: cluster.url,
      REDIS_CLUSTER: 'true',
      BLOB_CONNECTION_STRING: azurite.connectionString,
      INGEST_CHUNK_SIZE: '8',
      LOG_LEVEL: 'silent',
    });
    worker = await startWorker({ config, model: parityModel });
    api = await startApi({ config });
    jobs = new JobEvents(config.QUEUE_PREFIX, config);
    ingests = new IngestEvents(config.QUEUE_PREFIX, config);
    await Promise.all([jobs.ready(), ingests.ready()]);
    await upload(blobService(azurite.connectionString).getContainerClient('photos'), await makeBlobs(20));
  });
  afterAll(async () => {
    await jobs?.close();
    await ingests?.close();
    await api?.close();
    await worker?.close();
    await azurite?.dispose();
    await cluster?.stop();
  });

  const score = async () => {
    const res = await fetch(`${api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_data: { columns: ['image'], index: [0, 1], data: images.slice(0, 2).map((i) => [b64(i.path)]) },
      }),
    });
    return { status: res.status, json: (await res.json()) as unknown[] };
  };
  const job = async () => {
    const submitted = await postJson(`${api.url}/v1/jobs`, {
      images: images.slice(0, 3).map((i) => ({ id: i.name, base64: b64(i.path) })),
    });
    expect(submitted.status).toBe(202);
    return waitJobFinal(api.url, jobs, submitted.json.id);
  };

  it('keeps every key of the deployment in the slot of its hash tag', async () => {
    expect(config.QUEUE_PREFIX).toMatch(/^\{t-[0-9a-f]{8}\}$/);
    const redis = createRedis(config, 'consumer');
    try {
      const slot = await redis.call('CLUSTER', 'KEYSLOT', keys.backlog(config.QUEUE_PREFIX));
      expect(await redis.call('CLUSTER', 'KEYSLOT', `${config.QUEUE_PREFIX}:embed:wait`)).toBe(slot);
      expect(await redis.call('CLUSTER', 'KEYSLOT', `${config.QUEUE_PREFIX}:ingest:x:failures`)).toBe(slot);
    } finally {
      redis.disconnect();
    }
  });

  it('refuses a queue without the hash tag (what the tag prevents: CROSSSLOT)', async () => {
    const queue = new ScoreQueue(createRedis(config, 'consumer'), { prefix: 'untagged' });
    try {
      await expect(
        queue.add({
          requestId: 'r1',
          images: [{ kind: 'base64', data: 'eA==' }],
          deadline: Date.now() + 60_000,
        }),
      ).rejects.toThrow(/CROSSSLOT/);
    } finally {
      await queue.close();
    }
  });

  it('answers /score, runs an async job and completes an ingestion', async () => {
    const s = await score();
    expect(s.status).toBe(200);
    expect(s.json).toHaveLength(2);
    expect((await job()).state).toBe('completed');

    const res = await postIngestion(api.url, {
      source: { container: 'photos' },
      output: { container: 'vectors', prefix: 'cluster' },
    });
    expect(res.status).toBe(202);
    const view = await ingests.final(api.url, res.json.id);
    expect(view.state).toBe('completed');
    expect(view.counts).toMatchObject({ discovered: 20, done: 20, failed: 0 });
  });

  it('survives a kill -9 and restart of the node that owns the deployment slot', async () => {
    const owner = await cluster.nodeFor(`${config.QUEUE_PREFIX}:embed:wait`);
    // The queue paused, so the accepted job is still waiting in Redis (on that node) when it dies.
    const control = new Queue(QUEUES.embed, {
      connection: createRedis(config, 'consumer'),
      prefix: config.QUEUE_PREFIX,
    });
    await control.pause();
    const submitted = await postJson(`${api.url}/v1/jobs`, {
      images: images.slice(0, 2).map((i) => ({ id: i.name, base64: b64(i.path) })),
    });
    expect(submitted.status).toBe(202);
    const counts = await control.getJobCounts('paused', 'prioritized', 'waiting', 'active', 'completed');
    expect(counts.paused! + counts.prioritized! + counts.waiting!).toBe(1);
    expect(counts.active).toBe(0);
    await owner.kill();
    await owner.start();
    await cluster.waitHealthy();
    await control.resume();
    await control.close();
    expect((await waitJobFinal(api.url, jobs, submitted.json.id)).state).toBe('completed');
    // And new work flows again through the same clients.
    expect((await score()).status).toBe(200);
    expect((await job()).state).toBe('completed');
  });
});
