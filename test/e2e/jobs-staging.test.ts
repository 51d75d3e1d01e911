import { readFileSync } from 'node:fs';
import { BlobServiceClient } from '@azure/storage-blob';
import { createRedis } from '@embedpool/core/queue';
import { cosine, parityImages } from '@embedpool/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { JobEvents, postJson, REDIS_URL, startStack, testConfig, waitJobFinal } from '../support/stack';

const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

describe('async jobs with images staged in blob storage (JOB_STAGING_CONTAINER)', () => {
  let azurite: Azurite;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let events: JobEvents;
  beforeAll(async () => {
    azurite = await startAzurite();
    stack = await startStack(
      testConfig({ BLOB_CONNECTION_STRING: azurite.connectionString, JOB_STAGING_CONTAINER: 'staging' }),
    );
    events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
  });
  afterAll(async () => {
    await events?.close();
    await stack?.stop();
    await azurite?.dispose();
  });

  it('embeds the staged images into the reference vectors, with no image bytes in Redis, and removes the blob', async () => {
    const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
      'staging',
    );
    const redis = createRedis(REDIS_URL, 'consumer');
    const submitted = await postJson(`${stack.api.url}/v1/jobs`, {
      images: images.map((img) => ({ id: img.name, base64: b64(img.path) })),
    });
    expect(submitted.status).toBe(202);
    const id = submitted.json.id as string;
    // Staged before the 202: one blob holding every image back to back; nothing of them in Redis.
    const total = images.reduce((n, img) => n + readFileSync(img.path).byteLength, 0);
    const staged = await container
      .getBlockBlobClient(id)
      .getProperties()
      .catch(() => null);
    // The worker may already be done and have deleted it; when it is still there, it holds all the bytes.
    if (staged) expect(staged.contentLength).toBe(total);
    expect(await redis.keys(`${stack.config.QUEUE_PREFIX}:inline:*`)).toEqual([]);

    const status = (await waitJobFinal(stack.api.url, events, id)) as { state: string };
    expect(status.state).toBe('completed');
    const result = (await (await fetch(`${stack.api.url}/v1/jobs/${id}/result`)).json()) as {
      items: { id: string; image_features: number[] }[];
    };
    images.forEach((img, i) => {
      expect(result.items[i]!.id).toBe(img.name);
      expect(cosine(result.items[i]!.image_features, img.reference!)).toBeGreaterThan(0.999);
    });
    expect(await container.getBlockBlobClient(id).exists()).toBe(false);
    redis.disconnect();
  });

  it('answers 503 naming blob storage (not Redis) while the storage account is down, and carries on after', async () => {
    // Last in this file: it stops the emulator. One try per storage request (BLOB_MAX_TRIES=1), so the
    // failure comes at once instead of after the SDK's back-off.
    const quick = await startStack(
      testConfig({
        BLOB_CONNECTION_STRING: azurite.connectionString,
        JOB_STAGING_CONTAINER: 'staging',
        BLOB_MAX_TRIES: '1',
      }),
      { worker: false },
    );
    const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
      'staging',
    );
    try {
      const body = { images: [{ id: 'a', base64: b64(images[0]!.path) }] };
      await azurite.stop();
      const refused = await postJson(`${quick.api.url}/v1/jobs`, body);
      expect(refused.status).toBe(503);
      expect(refused.json.error).toMatchObject({ code: 'UNAVAILABLE' });
      expect(String((refused.json.error as { message: string }).message)).toMatch(
        /^could not stage the job's images in blob storage \(ECONNREFUSED\); retry shortly$/,
      );
      await azurite.restart();
      const accepted = await postJson(`${quick.api.url}/v1/jobs`, body);
      expect(accepted.status).toBe(202);
      expect(await container.getBlockBlobClient(accepted.json.id as string).exists()).toBe(true);
    } finally {
      await quick.stop();
    }
  });
});
