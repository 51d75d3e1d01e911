import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startApi } from '@embedpool/api';
import { loadConfig } from '@embedpool/core/config';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { cosine, PARITY_MODEL, PrivateRedis, parityImages } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const image = parityImages().find((i) => i.reference)!;
const body = JSON.stringify({
  input_data: { columns: ['image'], index: [0], data: [[readFileSync(image.path).toString('base64')]] },
});

/** Bounded wait for a state the service reaches by itself (reconnection), checked every 100 ms. */
async function until(check: () => Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not reached');
}

describe('Redis going away and coming back (a private redis-server)', () => {
  let redis: PrivateRedis;
  beforeAll(async () => {
    redis = await PrivateRedis.start();
  });
  afterAll(() => redis.kill());

  it('answers 503 fast while Redis is down, says why in /readyz, and heals without a restart', async () => {
    const config = loadConfig({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: `t-outage-${randomUUID().slice(0, 8)}`,
      PORT: '0',
      LOG_LEVEL: 'silent',
      READY_WORKER_TTL_S: '2',
    });
    const registry = new Registry();
    const worker = await startWorker({
      config,
      registry,
      model: {
        path: PARITY_MODEL,
        modelId: 'parity',
        randomWeights: false,
        preprocessor: DINOV2_PREPROCESSOR_CONFIG,
      },
    });
    const api = await startApi({ config, registry });
    const score = () =>
      fetch(`${api.url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    try {
      expect((await score()).status).toBe(200);

      await redis.kill();
      const down = await score();
      expect(down.status).toBe(503);
      expect(((await down.json()) as { error: { code: string } }).error.code).toBe('UNAVAILABLE');
      const ready = await fetch(`${api.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(JSON.stringify(await ready.json())).toMatch(/redis/i);

      await redis.start();
      await until(async () => (await fetch(`${api.url}/readyz`)).status === 200);
      const healed = await score();
      expect(healed.status).toBe(200);
      const vec = ((await healed.json()) as { image_features: number[] }[])[0]!.image_features;
      expect(cosine(vec, image.reference!)).toBeGreaterThan(0.999);
    } finally {
      await api.close();
      await worker.close();
    }
  });
});
