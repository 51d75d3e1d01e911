import { randomUUID } from 'node:crypto';
import { startApi } from '@embedpool/api';
import { type Config, loadConfig } from '@embedpool/core/config';
import type { ErrorBody } from '@embedpool/core/errors';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { createRedis, QUEUES, type RedisSettings } from '@embedpool/core/queue';
import { PARITY_MODEL } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { QueueEvents } from 'bullmq';
import { Registry } from 'prom-client';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export const parityModel = {
  path: PARITY_MODEL,
  modelId: 'parity',
  randomWeights: false,
  preprocessor: DINOV2_PREPROCESSOR_CONFIG,
};

/** A config on a queue prefix of the test's own (keys are deleted by `cleanPrefix`). */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    REDIS_URL,
    QUEUE_PREFIX: `t-${randomUUID().slice(0, 8)}`,
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...env,
  });
}

export async function cleanPrefix(prefix: string): Promise<void> {
  const redis = createRedis(REDIS_URL, 'consumer');
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
}

/** API and (optionally) a worker in this process, sharing a registry. */
export async function startStack(config: Config, opts: { worker?: boolean } = {}) {
  const registry = new Registry();
  const worker =
    opts.worker === false ? undefined : await startWorker({ config, registry, model: parityModel });
  const api = await startApi({ config, registry });
  return {
    config,
    api,
    worker,
    registry,
    async stop() {
      await api.close();
      await worker?.close();
      await cleanPrefix(config.QUEUE_PREFIX);
    },
  };
}

/** Resolves when BullMQ reports the job completed or failed (for good), via the events stream. */
export class JobEvents {
  readonly events: QueueEvents;
  constructor(prefix: string, redis: string | RedisSettings = REDIS_URL) {
    this.events = new QueueEvents(QUEUES.embed, { connection: createRedis(redis, 'consumer'), prefix });
    this.events.setMaxListeners(100);
  }
  ready(): Promise<void> {
    return this.events.waitUntilReady().then(() => undefined);
  }
  /** 'completed' | 'failed' | 'delayed' (a retry with backoff was scheduled). */
  next(jobId: string, kinds: ('completed' | 'failed' | 'delayed')[]): Promise<string> {
    return new Promise((resolve) => {
      const handlers = kinds.map((kind) => {
        const h = (e: { jobId: string }) => {
          if (e.jobId !== jobId) return;
          for (const [k, fn] of handlers) this.events.off(k, fn as never);
          resolve(kind);
        };
        this.events.on(kind, h as never);
        return [kind, h] as const;
      });
    });
  }
  close(): Promise<void> {
    return this.events.close();
  }
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const FINAL = ['completed', 'partially_failed', 'failed', 'cancelled'];

/** `GET /v1/jobs/{id}`, the fields these tests read (the OpenAPI document has the whole shape). */
export interface JobStatusBody {
  state: string;
  counts?: { total: number; succeeded: number; failed: number };
  items?: { id: string; status: string; error?: ErrorBody }[];
  error?: ErrorBody;
  location?: { container: string; [k: string]: unknown };
  delivery?: { state: string; [k: string]: unknown };
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
}

/** `GET /v1/jobs/{id}/result` as JSON: one item per input, a vector or an error. */
export interface JobResultBody {
  items: { id: string; image_features?: number[]; error?: ErrorBody }[];
}

export async function jobStatus(apiUrl: string, jobId: string): Promise<JobStatusBody> {
  return (await (await fetch(`${apiUrl}/v1/jobs/${jobId}`)).json()) as JobStatusBody;
}

export async function jobResult(apiUrl: string, jobId: string): Promise<JobResultBody> {
  return (await (await fetch(`${apiUrl}/v1/jobs/${jobId}/result`)).json()) as JobResultBody;
}

/**
 * Waits for a job's record to reach a final state: listens for BullMQ's completed/failed event first,
 * then reads the record (which covers an event that fired before we listened).
 */
export async function waitJobFinal(apiUrl: string, events: JobEvents, jobId: string): Promise<JobStatusBody> {
  const read = () => jobStatus(apiUrl, jobId);
  for (;;) {
    const event = events.next(jobId, ['completed', 'failed']);
    const now = await read();
    if (FINAL.includes(now.state)) return now;
    await event;
    const after = await read();
    // A 'failed' event can precede a retry's record update only for the last attempt; re-check.
    if (FINAL.includes(after.state)) return after;
  }
}
