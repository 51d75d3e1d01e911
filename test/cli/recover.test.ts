import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBlobServiceClient, writeJobVectors } from '@embedpool/core/blob';
import { JobStore, newJobId } from '@embedpool/core/jobs';
import type { RecoveryReport } from '@embedpool/core/recovery';
import { readyRedis } from '@embedpool/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { REDIS_URL } from '../support/stack';
import { runCli } from './run-cli';

describe('embedpool recover', () => {
  const prefix = `{t-recover-${randomUUID().slice(0, 8)}}`;
  let azurite: Azurite;
  let redis: Redis;

  beforeAll(async () => {
    azurite = await startAzurite();
    redis = await readyRedis(REDIS_URL);
  }, 60_000);
  afterAll(async () => {
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
    await azurite?.dispose();
  });

  it('lists the job outputs and ingestion shards whose records are gone, and only those', async () => {
    const blob = createBlobServiceClient({
      kind: 'connection-string',
      connectionString: azurite.connectionString,
    });
    const store = new JobStore(redis, prefix, 3600);
    const kept = newJobId();
    const lost = newJobId();
    for (const jobId of [kept, lost]) {
      await writeJobVectors({
        client: blob,
        container: 'out',
        pathTemplate: 'jobs/{jobId}',
        jobId,
        items: [{ id: 'a', vector: Float32Array.from([1, 2, 3]) }],
        model: 'm',
        dim: 3,
        formats: { jsonl: true, npy: false },
        createContainer: true,
      });
    }
    await store.create({
      id: kept,
      itemIds: ['a'],
      normalize: false,
      output: { type: 'blob', container: 'out', path: 'jobs/{jobId}', npy: false },
      createdAt: Date.now(),
    });
    const ingestion = `ing-${Date.now().toString(36).padStart(9, '0')}-0a1b2c3d`;
    const shards = blob.getContainerClient('shards');
    await shards.createIfNotExists();
    await shards.getBlockBlobClient(`emb/shards/${ingestion}-c00000001.parquet`).upload('x', 1);

    const file = join(tmpdir(), `recover-${randomUUID()}.json`);
    const res = await runCli(['recover', '--output', file, '--fail-on-lost'], {
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      BLOB_CONNECTION_STRING: azurite.connectionString,
    });
    expect(res.stderr).toMatch(/1 job output\(s\) and 1 ingestion output\(s\) without a record \(2 lost/);
    expect(res.code).toBe(2);
    const report = JSON.parse(await readFile(file, 'utf8')) as RecoveryReport;
    expect(report.jobs.map((j) => [j.jobId, j.why, j.container])).toEqual([[lost, 'lost', 'out']]);
    expect(report.jobs[0]!.files).toEqual([`jobs/${lost}.jsonl`]);
    expect(report.ingestions.map((i) => [i.ingestionId, i.why, i.blobs])).toEqual([[ingestion, 'lost', 1]]);
    expect(report.scanned.jobManifests).toBe(2);
  }, 120_000);
});
