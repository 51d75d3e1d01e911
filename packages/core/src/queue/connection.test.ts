import { BlobServiceClient } from '@azure/storage-blob';
import { freePort } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { clusterSeeds, createRedis, isRedisConnectionError } from './connection';

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

describe('isRedisConnectionError', () => {
  it('is true for ioredis meeting a closed port and false for the storage SDK meeting one', async () => {
    const port = await freePort(); // nothing listens there
    const redis = createRedis(`redis://127.0.0.1:${port}`, 'producer', { lazyConnect: true });
    const redisErr = await redis.connect().then(
      () => null,
      (e: unknown) => e,
    );
    redis.disconnect();
    expect(isRedisConnectionError(redisErr)).toBe(true);

    const blobs = new BlobServiceClient(`http://127.0.0.1:${port}/devstoreaccount1`, undefined, {
      retryOptions: { maxTries: 1 },
    });
    const blobErr = await blobs
      .getContainerClient('c')
      .exists()
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect((blobErr as { code?: string }).code).toBe('ECONNREFUSED');
    expect(isRedisConnectionError(blobErr)).toBe(false);
  });
});
