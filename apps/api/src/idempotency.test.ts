import { randomUUID } from 'node:crypto';
import { readyRedis } from '@embedpool/testkit';
import {
  cleanupPrefix,
  postJson,
  TEST_REDIS_URL,
  testConfig,
  uniquePrefix,
} from '@embedpool/testkit/api-test-kit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningApi, startApi } from './index';

const PNG_B64 = Buffer.from('not decoded by the API').toString('base64');

describe('one Idempotency-Key sent many times at once', () => {
  const prefix = uniquePrefix('idem');
  let api: RunningApi;
  let redis: Redis;

  beforeAll(async () => {
    api = await startApi({ config: testConfig({ QUEUE_PREFIX: prefix }) });
    redis = await readyRedis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    await api?.close();
    redis?.disconnect();
    await cleanupPrefix(TEST_REDIS_URL, prefix).catch(() => {});
  });

  it('creates one job per key: every concurrent repeat answers with that job (or 409, never another)', async () => {
    const keys = Array.from({ length: 20 }, () => `k-${randomUUID()}`);
    const body = { images: [{ id: 'a', base64: PNG_B64 }], output: { type: 'inline' } };
    const answers = await Promise.all(
      keys.flatMap((key) =>
        Array.from({ length: 8 }, () =>
          postJson<{ id?: string; error?: { code: string } }>(`${api.url}/v1/jobs`, body, {
            'idempotency-key': key,
          }).then((a) => ({ key, ...a })),
        ),
      ),
    );
    for (const key of keys) {
      const mine = answers.filter((a) => a.key === key);
      expect(mine.filter((a) => a.status === 202)).toHaveLength(1);
      for (const a of mine) {
        expect([200, 202, 409]).toContain(a.status);
        if (a.status === 409) {
          expect(a.json.error?.code).toBe('CONFLICT');
          expect(a.headers.get('retry-after')).toMatch(/^\d+$/);
        }
      }
      const ids = new Set(mine.filter((a) => a.status !== 409).map((a) => a.json.id));
      expect(ids.size).toBe(1);
    }
    // Exactly one record and one queued job per key, nothing else.
    const records = await redis.keys(`${prefix}:job:*`);
    expect(records).toHaveLength(keys.length);
    expect(await redis.hlen(`${prefix}:backlog`)).toBe(keys.length);
  });

  it('a repeat after its job exists gets 200 with the same id', async () => {
    const key = `k-${randomUUID()}`;
    const body = { images: [{ id: 'a', base64: PNG_B64 }], output: { type: 'inline' } };
    const first = await postJson<{ id: string }>(`${api.url}/v1/jobs`, body, { 'idempotency-key': key });
    const again = await postJson<{ id: string; idempotent: boolean }>(`${api.url}/v1/jobs`, body, {
      'idempotency-key': key,
    });
    expect(first.status).toBe(202);
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id: first.json.id, idempotent: true });
    // The claim lasts as long as the record, not the short claim of a request still creating its job.
    expect(await redis.ttl(`${prefix}:idem:anonymous:${key}`)).toBeGreaterThan(3600);
  });
});
