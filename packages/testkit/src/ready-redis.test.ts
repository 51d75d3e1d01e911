import { describe, expect, it } from 'vitest';
import { freePort, PrivateRedis } from './private-redis';
import { readyRedis } from './ready-redis';

describe('readyRedis', () => {
  it('resolves only once the producer client can take commands, riding out refused connections', async () => {
    // Nothing listens yet: the client's first attempts are refused, which must not reject the wait.
    const server = new PrivateRedis(await freePort());
    const pending = readyRedis(server.url);
    // redis-server takes tens of milliseconds to start; the client's first connect is refused long before.
    await server.start();
    try {
      const redis = await pending;
      expect(redis.status).toBe('ready');
      // No offline queue on a producer client: this fails unless the connection is up.
      expect(await redis.ping()).toBe('PONG');
      redis.disconnect();
    } finally {
      await server.stop();
    }
  });
});
