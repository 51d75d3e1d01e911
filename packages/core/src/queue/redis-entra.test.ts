import type { AccessToken, TokenCredential } from '@azure/identity';
import { PrivateRedis, PrivateRedisCluster } from '@embedpool/testkit';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRedis, useEntraRedisAuth } from './connection';
import { EntraRedisAuth, nextRefreshDelay, REDIS_ENTRA_SCOPE, tokenObjectId } from './redis-entra';

/** An unsigned token shaped like Entra's: Redis only compares it with the user's password. */
const fakeJwt = (oid: string, n: number) =>
  [
    Buffer.from('{"alg":"none"}').toString('base64url'),
    Buffer.from(JSON.stringify({ oid, aud: 'https://redis.azure.com' })).toString('base64url'),
    `sig${n}`,
  ].join('.');

describe('Entra token timing', () => {
  it('refreshes at the credential hint, else 5 minutes (or a quarter of the lifetime) before expiry', () => {
    const now = 1_000_000;
    expect(nextRefreshDelay({ token: 't', expiresOnTimestamp: now + 3_600_000 }, now)).toBe(3_300_000);
    expect(nextRefreshDelay({ token: 't', expiresOnTimestamp: now + 8_000 }, now)).toBe(6_000);
    expect(
      nextRefreshDelay(
        { token: 't', expiresOnTimestamp: now + 3_600_000, refreshAfterTimestamp: now + 1_800_000 },
        now,
      ),
    ).toBe(1_800_000);
    // An already expired token is fetched again soon, not in a tight loop.
    expect(nextRefreshDelay({ token: 't', expiresOnTimestamp: now - 5 }, now)).toBe(1_000);
  });
  it("reads the principal's object id from the token", () => {
    expect(tokenObjectId(fakeJwt('oid-1', 1))).toBe('oid-1');
    expect(tokenObjectId('not-a-jwt')).toBeUndefined();
  });
});

describe('Entra token refresh failures', () => {
  it('keeps the current token, reports the error and tries again well before it expires', async () => {
    vi.useFakeTimers();
    try {
      const now = Date.now();
      const answers: (() => AccessToken)[] = [
        () => ({
          token: fakeJwt('p', 1),
          expiresOnTimestamp: now + 3_600_000,
          refreshAfterTimestamp: now + 1_000,
        }),
        () => {
          throw new Error('IMDS unreachable');
        },
        () => ({ token: fakeJwt('p', 3), expiresOnTimestamp: now + 7_200_000 }),
      ];
      const credential: TokenCredential = { getToken: async () => answers.shift()!() };
      const errors: string[] = [];
      const auth = new EntraRedisAuth(credential, { onError: (e) => errors.push(e.message) });
      await auth.ready();
      expect(auth.credentials()).toEqual({ username: 'p', password: fakeJwt('p', 1) });
      await vi.advanceTimersByTimeAsync(1_000);
      expect(errors).toEqual(['IMDS unreachable']);
      expect(auth.credentials().password).toBe(fakeJwt('p', 1));
      await vi.advanceTimersByTimeAsync(30_000);
      expect(auth.credentials().password).toBe(fakeJwt('p', 3));
      expect(answers).toHaveLength(0);
      auth.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('fails the start when the first token cannot be had', async () => {
    const auth = new EntraRedisAuth({
      getToken: async () => {
        throw new Error('no identity');
      },
    });
    await expect(auth.ready()).rejects.toThrow('no identity');
  });
});

describe('Entra authentication on a real Redis (ACL users stand in for Entra principals)', () => {
  let server: PrivateRedis;
  let admin: Redis;
  beforeAll(async () => {
    server = await PrivateRedis.start();
    admin = createRedis(server.url, 'consumer');
  });
  afterAll(async () => {
    useEntraRedisAuth(undefined);
    admin?.disconnect();
    await server?.kill();
  });

  it('logs in with the token, refreshes it before expiry and re-authenticates open connections and duplicates', async () => {
    await admin.call(
      'ACL',
      'SETUSER',
      'principal-a',
      'on',
      `>${fakeJwt('principal-a', 1)}`,
      '~*',
      '&*',
      '+@all',
    );
    const scopes: string[] = [];
    let calls = 0;
    const credential: TokenCredential = {
      async getToken(scope) {
        scopes.push(String(scope));
        calls++;
        if (calls === 1)
          return {
            token: fakeJwt('principal-a', 1),
            expiresOnTimestamp: Date.now() + 3_600_000,
            refreshAfterTimestamp: Date.now() + 1_000,
          } as AccessToken;
        // The next token belongs to another principal: a connection that answers WHOAMI with it re-sent AUTH.
        await admin.call(
          'ACL',
          'SETUSER',
          'principal-b',
          'on',
          `>${fakeJwt('principal-b', 2)}`,
          '~*',
          '&*',
          '+@all',
        );
        return { token: fakeJwt('principal-b', 2), expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    let refreshed!: () => void;
    const second = new Promise<void>((r) => {
      refreshed = r;
    });
    let refreshes = 0;
    const auth = new EntraRedisAuth(credential, { onRefresh: () => ++refreshes === 2 && refreshed() });
    await auth.ready();
    useEntraRedisAuth(auth);
    const settings = { REDIS_URL: server.url, REDIS_AUTH: 'entra' as const };
    const client = createRedis(settings, 'consumer');
    const dup = client.duplicate();
    try {
      expect(await client.call('ACL', 'WHOAMI')).toBe('principal-a');
      expect(await dup.call('ACL', 'WHOAMI')).toBe('principal-a');
      expect(auth.tracked).toBe(2);

      await second;
      expect(scopes).toEqual([REDIS_ENTRA_SCOPE, REDIS_ENTRA_SCOPE]);
      expect(await client.call('ACL', 'WHOAMI')).toBe('principal-b');
      expect(await dup.call('ACL', 'WHOAMI')).toBe('principal-b');

      // The old principal is gone: a reconnect must log in with the new token from the client's options.
      await admin.call('ACL', 'DELUSER', 'principal-a');
      await admin.call('CLIENT', 'KILL', 'USER', 'principal-b');
      expect(await client.call('ACL', 'WHOAMI')).toBe('principal-b');
      const fresh = createRedis(settings, 'producer');
      await new Promise((r) => fresh.once('ready', r));
      expect(await fresh.call('ACL', 'WHOAMI')).toBe('principal-b');
      fresh.disconnect();
    } finally {
      auth.close();
      client.disconnect();
      dup.disconnect();
    }
  });

  it('refuses to connect with REDIS_AUTH=entra before a token was fetched', () => {
    useEntraRedisAuth(undefined);
    expect(() => createRedis({ REDIS_URL: server.url, REDIS_AUTH: 'entra' }, 'producer')).toThrow(
      /prepareRedisAuth/,
    );
  });
});

describe('Entra authentication on a real Redis Cluster', () => {
  let cluster: PrivateRedisCluster;
  beforeAll(async () => {
    cluster = await PrivateRedisCluster.start(3);
  });
  afterAll(async () => {
    useEntraRedisAuth(undefined);
    await cluster?.stop();
  });

  const onEveryNode = async (command: string, ...args: string[]) => {
    for (const node of cluster.nodes) {
      const r = createRedis(node.url, 'consumer');
      await r.call(command, ...args);
      r.disconnect();
    }
  };

  it('logs every node connection in, and re-authenticates all of them after a refresh', async () => {
    await onEveryNode(
      'ACL',
      'SETUSER',
      'principal-a',
      'on',
      `>${fakeJwt('principal-a', 1)}`,
      '~*',
      '&*',
      '+@all',
    );
    let calls = 0;
    const credential: TokenCredential = {
      async getToken() {
        if (++calls === 1)
          return {
            token: fakeJwt('principal-a', 1),
            expiresOnTimestamp: Date.now() + 3_600_000,
            refreshAfterTimestamp: Date.now() + 1_000,
          };
        await onEveryNode(
          'ACL',
          'SETUSER',
          'principal-b',
          'on',
          `>${fakeJwt('principal-b', 2)}`,
          '~*',
          '&*',
          '+@all',
        );
        return { token: fakeJwt('principal-b', 2), expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    let refreshed!: () => void;
    const second = new Promise<void>((r) => {
      refreshed = r;
    });
    let refreshes = 0;
    const auth = new EntraRedisAuth(credential, { onRefresh: () => ++refreshes === 2 && refreshed() });
    await auth.ready();
    useEntraRedisAuth(auth);
    const client = createRedis(
      { REDIS_URL: cluster.url, REDIS_CLUSTER: true, REDIS_AUTH: 'entra' },
      'consumer',
    );
    const nodes = () => (client as unknown as Cluster).nodes('all');
    try {
      // Touch a key on every master so the client holds a connection to each.
      for (let i = 0; i < 30; i++) await client.set(`{k${i}}:x`, '1');
      expect(nodes()).toHaveLength(3);
      for (const n of nodes()) expect(await n.call('ACL', 'WHOAMI')).toBe('principal-a');
      await second;
      for (const n of nodes()) expect(await n.call('ACL', 'WHOAMI')).toBe('principal-b');
      // A node that reconnects logs in with the new token.
      await onEveryNode('ACL', 'DELUSER', 'principal-a');
      await onEveryNode('CLIENT', 'KILL', 'USER', 'principal-b');
      for (let i = 0; i < 30; i++) expect(await client.get(`{k${i}}:x`)).toBe('1');
    } finally {
      auth.close();
      client.disconnect();
    }
  });
});
