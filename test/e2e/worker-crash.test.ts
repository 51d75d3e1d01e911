import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startApi } from '@embedpool/api';
import { loadConfig } from '@embedpool/core/config';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { cosine, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../support/cli-process';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const image = parityImages().find((i) => i.reference)!;

describe('worker processes dying or draining mid-request', () => {
  const prefix = `{t-crash-${randomUUID().slice(0, 8)}}`;
  const procs: CliProcess[] = [];
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    const redis = createRedis(REDIS_URL, 'consumer');
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  const workerEnv = {
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    MODEL_PATH: PARITY_MODEL,
    JOB_LOCK_MS: '1500',
    FETCH_ALLOW: '127.0.0.0/8',
    WORKER_METRICS_PORT: '0',
  };
  /** `embedpool worker`, or (entry) the worker process's own entry point, as the images run it. */
  const startWorkerProcess = async (entry?: string) => {
    const p = entry ? new CliProcess([], workerEnv, entry) : new CliProcess(['worker'], workerEnv);
    procs.push(p);
    await p.waitForLog((l) => l.msg === 'worker started');
    return p;
  };

  it('is replaced by another worker that completes the request, leaving nothing in Redis', async () => {
    // The image server holds the first download open: that is the moment the job is in flight.
    const held = new EventEmitter();
    const stuck: ServerResponse[] = [];
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      if (requests === 1) {
        stuck.push(res);
        held.emit('held');
        return;
      }
      res.writeHead(200).end(readFileSync(image.path));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${image.name}`;

    const api = await startApi({
      config: loadConfig({
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        PORT: '0',
        LOG_LEVEL: 'silent',
        REQUEST_TIMEOUT_MS: '60000',
      }),
    });
    try {
      const first = await startWorkerProcess();
      const isHeld = once(held, 'held');
      const answer = fetch(`${api.url}/score`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input_data: { columns: ['image'], index: [0], data: [[url]] } }),
      });
      await isHeld;
      expect(await first.kill('SIGKILL')).toBe(null);
      for (const res of stuck) res.destroy();

      await startWorkerProcess();
      const res = await answer;
      expect(res.status).toBe(200);
      const body = (await res.json()) as { image_features: number[] }[];
      expect(cosine(body[0]!.image_features, image.reference!)).toBeGreaterThan(0.999);
      expect(requests).toBe(2);

      const queue = new Queue(QUEUES.embed, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
      const counts = await queue.getJobCounts(
        'waiting',
        'active',
        'delayed',
        'failed',
        'completed',
        'paused',
      );
      await queue.close();
      expect(counts).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0, paused: 0 });
      const redis = createRedis(REDIS_URL, 'consumer');
      const results = await redis.keys(`${prefix}:result:*`);
      redis.disconnect();
      expect(results).toEqual([]);
    } finally {
      await api.close();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);

  it('drains on SIGTERM to its entry point: the request in flight is answered, then the worker exits 0', async () => {
    const held = new EventEmitter();
    const stuck: ServerResponse[] = [];
    const server = createServer((_req, res) => {
      stuck.push(res);
      held.emit('held');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${image.name}`;
    const api = await startApi({
      config: loadConfig({ REDIS_URL, QUEUE_PREFIX: prefix, PORT: '0', LOG_LEVEL: 'silent' }),
    });
    try {
      const worker = await startWorkerProcess('apps/worker/src/main.ts');
      const isHeld = once(held, 'held');
      const answer = fetch(`${api.url}/score`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input_data: { columns: ['image'], index: [0], data: [[url]] } }),
      });
      await isHeld;
      const exited = once(worker.child, 'exit') as Promise<[number | null, string | null]>;
      worker.child.kill('SIGTERM');
      await worker.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down'));
      // The worker is draining: the image it was waiting for arrives now, and the request completes.
      for (const res of stuck) res.writeHead(200).end(readFileSync(image.path));
      const res = await answer;
      expect(res.status).toBe(200);
      const body = (await res.json()) as { image_features: number[] }[];
      expect(cosine(body[0]!.image_features, image.reference!)).toBeGreaterThan(0.999);
      expect((await exited)[0]).toBe(0);
    } finally {
      await api.close();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);
});
