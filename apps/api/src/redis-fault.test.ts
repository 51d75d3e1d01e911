import { once } from 'node:events';
import { newJobId } from '@embedpool/core/jobs';
import { PrivateRedis, readyRedis } from '@embedpool/testkit';
import {
  cleanupPrefix,
  type ErrorJson,
  getJson,
  postJson,
  scoreBody,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import { FakeWorker } from '@embedpool/testkit/fake-worker';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningApi, startApi } from './index';

type Ready = { status: string; reason?: string };
const PNG_B64 = Buffer.from('fake image').toString('base64');

/** Polls /readyz until `want` (bounded): readiness follows reconnects the test cannot await directly. */
async function readyzUntil(url: string, want: number): Promise<Ready> {
  let last: { status: number; json: Ready } | undefined;
  for (let i = 0; i < 200; i++) {
    last = await getJson<Ready>(`${url}/readyz`);
    if (last.status === want) return last.json;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`readyz never answered ${want}; last: ${JSON.stringify(last)}`);
}

// Never the shared Redis: this file kills and restarts a private redis-server of its own.
describe('API when Redis goes away and comes back', () => {
  const prefix = uniquePrefix('fault');
  let redisServer: PrivateRedis;
  let api: RunningApi;
  let worker: FakeWorker;
  let admin: Redis;

  beforeAll(async () => {
    redisServer = await PrivateRedis.start();
    api = await startApi({
      config: testConfig({ QUEUE_PREFIX: prefix, REDIS_URL: redisServer.url, REQUEST_TIMEOUT_MS: 20_000 }),
    });
    worker = new FakeWorker(redisServer.url, prefix);
    await worker.ready();
    admin = await readyRedis(redisServer.url);
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    admin?.disconnect();
    if (redisServer) {
      await cleanupPrefix(redisServer.url, prefix).catch(() => {});
      await redisServer.kill();
    }
  });

  it('answers 503 fast while Redis is down and heals without a restart', async () => {
    await worker.heartbeat();
    await readyzUntil(api.url, 200);
    expect((await postJson(`${api.url}/score`, scoreBody([PNG_B64]))).status).toBe(200);

    const adminGone = once(admin, 'close');
    await redisServer.kill();
    await adminGone;

    const down = await readyzUntil(api.url, 503);
    expect(down.reason).toMatch(/redis/i);
    const refused = await postJson<ErrorJson>(`${api.url}/score`, scoreBody([PNG_B64]));
    expect(refused.status).toBe(503);
    expect(refused.json.error.code).toBe('UNAVAILABLE');
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    // Liveness does not depend on Redis.
    expect((await getJson(`${api.url}/healthz`)).status).toBe(200);

    await redisServer.start();
    await once(admin, 'ready');
    // A restarted Redis without persistence has forgotten the worker: it announces itself again.
    await worker.resultsReady();
    await worker.heartbeat();
    await readyzUntil(api.url, 200);

    const healed = await postJson<{ image_features: number[] }[]>(`${api.url}/score`, scoreBody([PNG_B64]));
    expect(healed.status).toBe(200);
    expect(healed.json).toHaveLength(1);
  });
});

describe('API started while Redis is down', () => {
  const prefix = uniquePrefix('late');
  let redisServer: PrivateRedis;
  let api: RunningApi;
  let worker: FakeWorker | undefined;

  beforeAll(async () => {
    redisServer = await PrivateRedis.start();
    await redisServer.kill();
    api = await startApi({
      config: testConfig({ QUEUE_PREFIX: prefix, REDIS_URL: redisServer.url, REQUEST_TIMEOUT_MS: 20_000 }),
      readyTimeoutMs: 100,
    });
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    if (redisServer) {
      await cleanupPrefix(redisServer.url, prefix).catch(() => {});
      await redisServer.kill();
    }
  });

  it('serves 503 until Redis appears, then scores without a restart', async () => {
    expect((await getJson(`${api.url}/healthz`)).status).toBe(200);
    expect((await readyzUntil(api.url, 503)).reason).toMatch(/redis/i);
    const refused = await postJson<ErrorJson>(`${api.url}/score`, scoreBody([PNG_B64]));
    expect(refused.status).toBe(503);

    await redisServer.start();
    worker = new FakeWorker(redisServer.url, prefix);
    await worker.ready();
    await worker.heartbeat();
    await readyzUntil(api.url, 200);
    const res = await postJson(`${api.url}/score`, scoreBody([PNG_B64]));
    expect(res.status).toBe(200);
  });
});

describe('status routes while Redis is down, and after it came back empty', () => {
  const prefix = uniquePrefix('lost');
  let redisServer: PrivateRedis;
  let api: RunningApi;
  let worker: FakeWorker;

  beforeAll(async () => {
    redisServer = await PrivateRedis.start();
    api = await startApi({
      config: testConfig({ QUEUE_PREFIX: prefix, REDIS_URL: redisServer.url, REQUEST_TIMEOUT_MS: 20_000 }),
    });
    worker = new FakeWorker(redisServer.url, prefix);
    await worker.ready();
  });
  afterAll(async () => {
    await api?.close();
    await worker?.close();
    if (redisServer) {
      await cleanupPrefix(redisServer.url, prefix).catch(() => {});
      await redisServer.kill();
    }
  });

  it('answers 503 with Retry-After on every route, then 410 STATE_LOST for ids from before the loss', async () => {
    await worker.heartbeat();
    await readyzUntil(api.url, 200);
    const job = { images: [{ id: 'a', base64: PNG_B64 }], output: { type: 'inline' } };
    const made = await postJson<{ id: string }>(`${api.url}/v1/jobs`, job);
    expect(made.status).toBe(202);
    const before = made.json.id;
    expect((await getJson(`${api.url}/v1/jobs/${before}`)).status).toBe(200);
    const ingestion = `ing-${(Date.now() - 1000).toString(36).padStart(9, '0')}-0123abcd`;

    await redisServer.kill();
    await readyzUntil(api.url, 503);
    for (const path of [
      `/v1/jobs/${before}`,
      `/v1/jobs/${before}/result`,
      `/v1/ingestions/${ingestion}`,
      '/v1/ingestions',
    ]) {
      const down = await getJson<ErrorJson>(`${api.url}${path}`);
      expect({ path, status: down.status, code: down.json.error.code }).toEqual({
        path,
        status: 503,
        code: 'UNAVAILABLE',
      });
      expect(down.headers.get('retry-after')).toMatch(/^\d+$/);
    }
    expect((await postJson<ErrorJson>(`${api.url}/v1/jobs`, job)).status).toBe(503);

    // Back without its data (no persistence): the loss is detected, reported, and lost ids say so.
    await redisServer.start();
    await worker.resultsReady();
    await worker.heartbeat();
    let ready: { status: number; json: Ready & { dataLoss?: { lostAt: string }; warning?: string } };
    for (let i = 0; ; i++) {
      ready = await getJson(`${api.url}/readyz`);
      if (ready.status === 200 && ready.json.dataLoss) break;
      if (i > 200) throw new Error(`readyz never reported the loss: ${JSON.stringify(ready.json)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(ready.json.warning).toMatch(/REDIS LOST ITS DATA/);
    const lost = await getJson<ErrorJson>(`${api.url}/v1/jobs/${before}`);
    expect(lost.status).toBe(410);
    expect(lost.json.error.code).toBe('STATE_LOST');
    expect((await getJson<ErrorJson>(`${api.url}/v1/ingestions/${ingestion}`)).status).toBe(410);
    // Ids minted after the loss, and ids that were never job ids, are plainly unknown.
    expect((await getJson<ErrorJson>(`${api.url}/v1/jobs/${newJobId()}`)).status).toBe(404);
    expect((await getJson<ErrorJson>(`${api.url}/v1/jobs/nope`)).status).toBe(404);
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toMatch(/^embedpool_redis_data_lost 1$/m);

    const after = await postJson<{ id: string }>(`${api.url}/v1/jobs`, job);
    expect(after.status).toBe(202);
    expect((await getJson(`${api.url}/v1/jobs/${after.json.id}`)).status).toBe(200);
  });
});
