/**
 * Per-caller rate limits, counted in Redis (so every API replica shares them): above
 * RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW_S a caller gets 429 with Retry-After; other callers and the
 * probes are unaffected, and the window opens again when it ends.
 */
import { hashKey, newKey } from '@embedpool/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testConfig } from '../support/stack';
import { call, guardNetwork, sleep } from './support';

guardNetwork();

const alice = newKey();
const bob = newKey();
const LIMIT = 3;
const WINDOW_S = 2;
const missing = '/v1/jobs/00000000-0000-4000-8000-000000000000';

describe('rate limits per API key', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  beforeAll(async () => {
    stack = await startStack(
      testConfig({
        API_KEYS: `alice:${hashKey(alice)},bob:${hashKey(bob)}`,
        RATE_LIMIT_REQUESTS: String(LIMIT),
        RATE_LIMIT_WINDOW_S: String(WINDOW_S),
      }),
      { worker: false },
    );
  });
  afterAll(() => stack?.stop());

  it('answers 429 with Retry-After past the limit, per key, and opens again after the window', async () => {
    const as = (key: string) =>
      call(`${stack.api.url}${missing}`, { headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < LIMIT; i++) {
      const res = await as(alice);
      expect(res.status).toBe(404);
      expect(res.headers.get('ratelimit-remaining')).toBe(String(LIMIT - i - 1));
    }
    const limited = await as(alice);
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('RATE_LIMITED');
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(WINDOW_S);

    // Another key has its own budget; probes have none.
    expect((await as(bob)).status).toBe(404);
    for (let i = 0; i < 5; i++) expect((await call(`${stack.api.url}/healthz`)).status).toBe(200);
    // Unauthenticated requests are refused before they could spend anyone's budget.
    expect((await call(`${stack.api.url}${missing}`)).status).toBe(401);

    await sleep(retryAfter * 1000 + 100);
    expect((await as(alice)).status).toBe(404);
  });

  it('answers /v1/embeddings in the OpenAI shape (rate_limit_error), which SDKs retry after Retry-After', async () => {
    const headers = { 'api-key': bob };
    let res = await call(`${stack.api.url}/v1/embeddings`, { body: { model: 'm', input: [] }, headers });
    for (let i = 0; i < LIMIT + 1 && res.status !== 429; i++) {
      res = await call(`${stack.api.url}/v1/embeddings`, { body: { model: 'm', input: [] }, headers });
    }
    expect(res.status).toBe(429);
    expect(res.json.error).toMatchObject({ code: 'RATE_LIMITED', type: 'rate_limit_error' });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });
});
