import { BlobServiceClient } from '@azure/storage-blob';
import { type Azurite, startAzurite } from '@embedpool/testkit/azurite-kit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InlineReader, packImages } from '../queue/inline-images';
import { BlobStaging } from './staging';

describe('staged images read back by windows (BlobStaging + InlineReader)', () => {
  let az: Azurite;
  let staging: BlobStaging;
  beforeAll(async () => {
    az = await startAzurite();
    staging = new BlobStaging(BlobServiceClient.fromConnectionString(az.connectionString), 'staging');
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
  });

  // Sizes around the 16-byte window: inside one, across two, across three, and a short last window.
  const images = [5, 11, 16, 40, 1, 7].map((n, i) => Buffer.alloc(n, 65 + i));
  const { buffer, refs } = packImages(images);
  // Redis is not touched by blob sources.
  const noRedis = undefined as unknown as Redis;

  it('hands every image its own bytes, in any order and all at once, however the windows cut them', async () => {
    const source = await staging.stage('job-1', buffer);
    const reader = new InlineReader(source, noRedis, {
      timeoutMs: 5_000,
      blobs: staging,
      blobWindowBytes: 16,
    });
    const order = [3, 0, 5, 1, 4, 2];
    const got = await Promise.all(order.map((i) => reader.read(refs[i]!)));
    order.forEach((i, k) => {
      expect(Buffer.from(got[k]!.bytes).equals(images[i]!)).toBe(true);
    });
    // Read again after the windows were dropped: fetched afresh, same bytes.
    expect(Buffer.from((await reader.read(refs[2]!)).bytes).equals(images[2]!)).toBe(true);
  });

  it('says the bytes are gone when the blob is shorter than the job says', async () => {
    const source = await staging.stage('job-2', buffer.subarray(0, 30));
    const reader = new InlineReader(source, noRedis, {
      timeoutMs: 5_000,
      blobs: staging,
      blobWindowBytes: 16,
    });
    expect(Buffer.from((await reader.read(refs[1]!)).bytes).equals(images[1]!)).toBe(true);
    await expect(reader.read(refs[3]!)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
