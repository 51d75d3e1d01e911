import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@embedpool/core/logger';
import { Redis } from 'ioredis';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export interface LocalRedis {
  /** Set when this process started its own redis-server. */
  child?: ChildProcess;
  stop(): Promise<void>;
}

/**
 * The all-in-one start's embedded default: use the Redis at REDIS_URL; if nothing answers there, the URL
 * is local and `redis-server` is installed, start a private one (noeviction) for this process's lifetime.
 * Otherwise explain how to get one. Its data lives in `<dataDir>/redis-<port>` as an append-only file
 * (fsync every second, no RDB snapshots): accepted async jobs and ingestions survive a restart of the
 * process, and a crash loses at most the last second of acknowledgements.
 */
export async function ensureRedis(
  url: string,
  autostart: boolean,
  logger: Logger,
  dataDir: string,
): Promise<LocalRedis> {
  if (await answers(url)) return { stop: async () => {} };
  const parsed = new URL(url);
  if (!autostart || !LOOPBACK.has(parsed.hostname)) {
    throw new Error(
      `Redis does not answer at ${url}. Start one (e.g. \`redis-server\`) or point REDIS_URL at it.`,
    );
  }
  if (!onPath('redis-server')) {
    throw new Error(
      `Redis does not answer at ${url} and redis-server is not installed. Install it (Debian/Ubuntu: \`apt-get install redis-server\`; macOS: \`brew install redis\`) or set REDIS_URL.`,
    );
  }
  const port = parsed.port || '6379';
  // One directory per port: two all-in-one processes on one cache must not share an append-only file.
  const dir = join(dataDir, `redis-${port}`);
  mkdirSync(dir, { recursive: true });
  logger.warn(
    { port, dir },
    `no Redis at ${url}: starting a private redis-server for this process (append-only file in ${dir})`,
  );
  const child = spawn(
    'redis-server',
    [
      '--port',
      port,
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--maxmemory-policy',
      'noeviction',
    ],
    // Its own process group: a Ctrl-C or group SIGTERM must reach us first, so we drain while Redis is up.
    { stdio: 'ignore', detached: true },
  );
  // However this process ends, the private Redis ends with it.
  process.once('exit', () => child.kill('SIGTERM'));
  const exited = once(child, 'exit').then(() => {
    throw new Error('private redis-server exited during start');
  });
  // A fresh redis-server answers within milliseconds; poll briefly rather than guess a delay.
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    up = await Promise.race([answers(url), exited]);
    if (!up) await new Promise((r) => setTimeout(r, 50));
  }
  if (!up) throw new Error('private redis-server did not answer');
  exited.catch(() => {});
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}
