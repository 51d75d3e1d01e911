import { describe, expect, it } from 'vitest';
import { clusterSeeds, createRedis } from './connection';

describe('Redis connection settings', () => {
  it('reads seed nodes, the access key and TLS (Azure Managed Redis: rediss, port 10000) from REDIS_URL', () => {
    const seeds = clusterSeeds(
      'rediss://:k%40ey@amr.westeurope.redis.azure.net:10000, rediss://amr-2.westeurope.redis.azure.net:10000',
    );
    expect(seeds.nodes).toEqual([
      { host: 'amr.westeurope.redis.azure.net', port: 10000 },
      { host: 'amr-2.westeurope.redis.azure.net', port: 10000 },
    ]);
    expect(seeds.redisOptions).toEqual({
      password: 'k@ey',
      // Certificates name the cache's host, also when a node announces an IP address.
      tls: { servername: 'amr.westeurope.redis.azure.net' },
    });
    expect(clusterSeeds('redis://user:pw@127.0.0.1:7000').redisOptions).toEqual({
      username: 'user',
      password: 'pw',
    });
  });

  it('refuses a list of nodes without REDIS_CLUSTER', () => {
    expect(() => createRedis('redis://127.0.0.1:7000,redis://127.0.0.1:7001', 'producer')).toThrow(
      /REDIS_CLUSTER=true/,
    );
  });
});
