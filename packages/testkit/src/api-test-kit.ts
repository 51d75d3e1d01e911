import { randomUUID } from 'node:crypto';
import { type Config, loadConfig } from '@embedpool/core/config';
import { QUEUES } from '@embedpool/core/queue';
import { Queue } from 'bullmq';
import { readyRedis } from './ready-redis';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function uniquePrefix(name: string): string {
  return `t-api-${name}-${randomUUID().slice(0, 8)}`;
}

export function testConfig(overrides: Partial<Config>): Config {
  return loadConfig(
    { LOG_LEVEL: 'silent' },
    { HOST: '127.0.0.1', PORT: 0, REDIS_URL: TEST_REDIS_URL, ...overrides },
  );
}

/** Obliterates the test's queue and deletes every key under its prefix. */
export async function cleanupPrefix(redisUrl: string, prefix: string): Promise<void> {
  const redis = await readyRedis(redisUrl);
  try {
    const queue = new Queue(QUEUES.embed, { connection: redis, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (found.length > 0) await redis.del(...found);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export interface ScoreBody {
  input_data: { columns: string[]; index?: (string | number)[]; data: unknown[][] };
}

export function scoreBody(images: string[]): ScoreBody {
  return { input_data: { columns: ['image'], index: images.map((_, i) => i), data: images.map((x) => [x]) } };
}

export interface ErrorJson {
  error: {
    code: string;
    message: string;
    row?: number;
    failures?: { row: number; code: string; message: string }[];
  };
}

export interface JsonAnswer<T> {
  status: number;
  headers: Headers;
  text: string;
  json: T;
}

export async function postJson<T = unknown>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<JsonAnswer<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as T };
}

export async function getJson<T = unknown>(url: string): Promise<JsonAnswer<T>> {
  const res = await fetch(url);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as T };
}
