import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { EmbedpoolError } from '../errors';
import type { EntraRedisAuth } from './redis-entra';

export type RedisRole = 'producer' | 'consumer';

/**
 * Where Redis is and how to log in: REDIS_URL alone (one server), or with REDIS_CLUSTER a comma-separated
 * list of seed nodes, and with REDIS_AUTH=entra a Microsoft Entra token as the password. A parsed Config
 * fits this shape, so entry points pass their config as it is.
 */
export interface RedisSettings {
  REDIS_URL: string;
  REDIS_CLUSTER?: boolean;
  REDIS_AUTH?: 'key' | 'entra';
}

let entraAuth: EntraRedisAuth | undefined;

/**
 * Registers the process's Entra authentication (see `prepareRedisAuth`): one token source for every
 * connection, so a refresh reaches all of them. `undefined` removes it (tests).
 */
export function useEntraRedisAuth(auth: EntraRedisAuth | undefined): void {
  entraAuth = auth;
}

function seedUrls(url: string): URL[] {
  return url
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      try {
        return new URL(s);
      } catch {
        throw new EmbedpoolError('CONFIG_INVALID', `REDIS_URL entry is not a URL: ${JSON.stringify(s)}`);
      }
    });
}

/** Host, port, credentials and TLS of the first seed: Redis Cluster nodes share one login. */
export function clusterSeeds(url: string): {
  nodes: { host: string; port: number }[];
  redisOptions: RedisOptions;
} {
  const urls = seedUrls(url);
  if (urls.length === 0) throw new EmbedpoolError('CONFIG_INVALID', 'REDIS_URL lists no Redis node');
  const first = urls[0]!;
  const nodes = urls.map((u) => ({
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || (u.protocol === 'rediss:' ? 6380 : 6379)),
  }));
  const redisOptions: RedisOptions = {};
  if (first.username) redisOptions.username = decodeURIComponent(first.username);
  if (first.password) redisOptions.password = decodeURIComponent(first.password);
  // Nodes may announce IP addresses; the certificate names the seed's host, so verify against that.
  if (first.protocol === 'rediss:') redisOptions.tls = { servername: nodes[0]!.host };
  return { nodes, redisOptions };
}

/**
 * Producers (the API) fail fast when Redis is gone, so a request answers 503 instead of hanging in an
 * offline queue. Consumers (BullMQ workers, QueueEvents) block on Redis and must retry forever:
 * BullMQ requires `maxRetriesPerRequest: null` for them.
 *
 * With REDIS_CLUSTER the client is ioredis's Cluster. It is typed as `Redis` because every call this
 * project makes (commands, MULTI, EVAL, duplicate, events, status) exists on both, and BullMQ takes either.
 */
export function createRedis(
  target: string | RedisSettings,
  role: RedisRole,
  extra: RedisOptions = {},
): Redis {
  const settings: RedisSettings = typeof target === 'string' ? { REDIS_URL: target } : target;
  const common: RedisOptions = {
    connectTimeout: 5_000,
    // Reconnect forever with a capped backoff: Redis coming back must heal the service without a restart.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3_000),
    lazyConnect: false,
  };
  const roleOptions: RedisOptions =
    role === 'producer'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 5_000 }
      : { maxRetriesPerRequest: null, enableReadyCheck: true };
  const auth = settings.REDIS_AUTH === 'entra' ? entraAuth : undefined;
  if (settings.REDIS_AUTH === 'entra' && !auth)
    throw new EmbedpoolError('INTERNAL', 'REDIS_AUTH=entra: call prepareRedisAuth(config) before connecting');
  const login = auth ? auth.credentials() : {};

  if (settings.REDIS_CLUSTER) {
    const { nodes, redisOptions } = clusterSeeds(settings.REDIS_URL);
    const { lazyConnect, enableOfflineQueue, retryStrategy, ...perNode } = { ...roleOptions, ...extra };
    const clusterOptions: ClusterOptions = {
      redisOptions: { connectTimeout: common.connectTimeout, ...redisOptions, ...perNode, ...login },
      // Keep host names as given: TLS verifies them, and Azure's nodes sit behind one DNS name.
      dnsLookup: (address, callback) => callback(null, address),
      clusterRetryStrategy: common.retryStrategy as (times: number) => number,
      enableOfflineQueue: enableOfflineQueue ?? true,
      enableReadyCheck: true,
      lazyConnect: lazyConnect ?? false,
      // A failover moves slots; follow MOVED/ASK and retry while the cluster settles. Each retry counts as
      // a redirection: ioredis's default of 16 gives up after ~5 s of CLUSTERDOWN, and BullMQ's QueueEvents
      // stops for good on that error (it only rides out connection errors). 100 x 300 ms covers ~30 s.
      slotsRefreshTimeout: 2_000,
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 300,
      maxRedirections: 100,
    };
    const cluster = new Cluster(nodes, clusterOptions);
    cluster.on('error', () => {});
    auth?.track(cluster);
    return cluster as unknown as Redis;
  }

  const urls = seedUrls(settings.REDIS_URL);
  if (urls.length !== 1)
    throw new EmbedpoolError('CONFIG_INVALID', 'REDIS_URL lists several nodes: set REDIS_CLUSTER=true');
  const redis = new Redis(settings.REDIS_URL.trim(), { ...common, ...roleOptions, ...extra, ...login });
  // ioredis emits 'error' on every failed reconnect; an unhandled 'error' event would kill the process.
  redis.on('error', () => {});
  auth?.track(redis);
  return redis;
}

// What ioredis (and BullMQ through it) throws when a command cannot reach Redis: the offline queue is off,
// the connection closed or timed out, or the retries ran out. None of these is the caller's doing.
const CONNECTION_MESSAGES = [
  "Stream isn't writeable",
  'Connection is closed',
  'Command timed out',
  'Reached the max retries per request limit',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'connect ETIMEDOUT',
  'LOADING',
];

/** Whether an error means Redis is unreachable (answer 503 and retry), not that a command was wrong. */
export function isRedisConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // The storage SDK's errors carry the same socket codes (ECONNREFUSED to the storage account): not Redis.
  if (err.name === 'RestError') return false;
  if (err.name === 'MaxRetriesPerRequestError') return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code))
    return true;
  return CONNECTION_MESSAGES.some((m) => err.message.includes(m));
}
