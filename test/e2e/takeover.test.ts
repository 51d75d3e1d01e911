/**
 * A worker that dies (SIGKILL) or freezes (SIGSTOP, past its lock) holding a /score request: another worker
 * takes the request over within the request's deadline, with the DEFAULT lock settings (JOB_LOCK_MS,
 * JOB_STALLED_CHECK_MS), and the frozen worker, once thawed, neither answers twice nor leaves anything behind.
 * With the old defaults (30 s lock, 30 s stalled check) these requests waited 33-60 s or got 504.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type RunningApi, startApi } from '@embedpool/api';
import { loadConfig } from '@embedpool/core/config';
import { createRedis, keys, QUEUES } from '@embedpool/core/queue';
import { cosine, PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliProcess } from '../support/cli-process';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const image = parityImages().find((i) => i.reference)!;
// Starting the second worker on a busy machine eats into the deadline: it counts from the submission.
const REQUEST_TIMEOUT_MS = 25_000;
// The old defaults could not take over before 15 s (a 30 s lock, renewed every 15 s) and usually took 30-60 s.
const TAKEOVER_BOUND_MS = 15_000;

describe('a /score request whose worker dies or freezes is taken over in seconds', () => {
  const prefix = `{t-takeover-${randomUUID().slice(0, 8)}}`;
  const procs: CliProcess[] = [];
  const held = new EventEmitter();
  const stuck: ServerResponse[] = [];
  let requests = 0;
  let server: Server;
  let url: string;
  let api: RunningApi;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      requests++;
      if (requests % 2 === 1) {
        // The first download of each request hangs mid-body (past FETCH_HEADERS_TIMEOUT_MS, within
        // FETCH_TOTAL_TIMEOUT_MS): that is the moment its job is in flight.
        stuck.push(res);
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        res.write(readFileSync(image.path).subarray(0, 100));
        held.emit('held');
        return;
      }
      res.writeHead(200).end(readFileSync(image.path));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${image.name}`;
    api = await startApi({
      config: loadConfig({
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        PORT: '0',
        LOG_LEVEL: 'silent',
        REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      }),
    });
  });
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await api?.close();
    await new Promise((r) => server?.close(r));
    const redis = createRedis(REDIS_URL, 'consumer');
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis.disconnect();
  });

  const startWorker = async () => {
    const p = new CliProcess(['worker'], {
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      MODEL_PATH: PARITY_MODEL,
      FETCH_ALLOW: '127.0.0.0/8',
      WORKER_METRICS_PORT: '0',
    });
    procs.push(p);
    await p.waitForLog((l) => l.msg === 'worker started');
    return p;
  };
  const score = () =>
    fetch(`${api.url}/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input_data: { columns: ['image'], index: [0], data: [[url]] } }),
    });
  const expectCleanQueue = async () => {
    const queue = new Queue(QUEUES.embed, { connection: createRedis(REDIS_URL, 'consumer'), prefix });
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'paused');
    await queue.close();
    expect(counts).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0, paused: 0 });
    const redis = createRedis(REDIS_URL, 'consumer');
    expect(await redis.hlen(keys.backlog(prefix))).toBe(0);
    redis.disconnect();
  };

  it('SIGKILL: another worker answers the request within its deadline', async () => {
    const first = await startWorker();
    const isHeld = once(held, 'held');
    const answer = score();
    await isHeld;
    await startWorker();
    const killedAt = Date.now();
    expect(await first.kill('SIGKILL')).toBe(null);
    const res = await answer;
    const takeoverMs = Date.now() - killedAt;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { image_features: number[] }[];
    expect(cosine(body[0]!.image_features, image.reference!)).toBeGreaterThan(0.999);
    expect(takeoverMs).toBeLessThan(TAKEOVER_BOUND_MS);
    await expectCleanQueue();
  }, 90_000);

  it('SIGSTOP past the lock: taken over; once thawed, the frozen worker finishes nothing twice', async () => {
    for (const p of procs.splice(0)) await p.kill('SIGKILL');
    const fetchesBefore = requests;
    const first = await startWorker();
    const isHeld = once(held, 'held');
    const answer = score();
    await isHeld;
    await startWorker();
    first.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    // The frozen worker's download fails the moment it thaws; the job is another worker's by then.
    for (const res of stuck.splice(0)) res.destroy();
    const res = await answer;
    const tookMs = Date.now() - frozenAt;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { image_features: number[] }[];
    expect(cosine(body[0]!.image_features, image.reference!)).toBeGreaterThan(0.999);
    expect(tookMs).toBeLessThan(TAKEOVER_BOUND_MS);

    first.child.kill('SIGCONT');
    // The thawed worker learns that its lock is gone; its stale attempt must neither fail nor re-queue the job.
    await first.waitForLog((l) => /Missing (key|lock) for job .*moveTo/.test(String(l.err ?? '')));
    await expectCleanQueue();
    expect(requests - fetchesBefore).toBe(2);
  }, 90_000);
});
