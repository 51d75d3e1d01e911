import { freePort } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { ensureTestRedis, pongs, RedisMissingError, stopRedis } from './global-redis';

describe("the test run's Redis", () => {
  it('uses a Redis that answers and starts nothing', async () => {
    expect(await pongs(6379)).toBe(true);
    expect(await ensureTestRedis(6379)).toBeUndefined();
  });

  it('starts a private redis-server where none answers, and stops it', async () => {
    const port = await freePort();
    expect(await pongs(port)).toBe(false);
    const child = await ensureTestRedis(port);
    try {
      expect(child).toBeDefined();
      expect(await pongs(port)).toBe(true);
    } finally {
      await stopRedis(child);
    }
    expect(await pongs(port)).toBe(false);
  });

  it('says in one line what to install when redis-server is missing', async () => {
    const port = await freePort();
    const err = await ensureTestRedis(port, '/nonexistent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisMissingError);
    expect((err as Error).message).toMatch(/redis-server is not installed\. Install it/);
    expect((err as Error).message).not.toContain('\n');
  });
});
