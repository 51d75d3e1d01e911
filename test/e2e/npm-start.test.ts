import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { freePort, PARITY_MODEL, PrivateRedis, parityImages, REPO_ROOT } from '@embedpool/testkit';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { JobEvents, postJson, waitJobFinal } from '../support/stack';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
// The random ViT-B/14 is built once (343 MB) and reused by later runs.
const CACHE = join(REPO_ROOT, '.cache/test-models');
const image = parityImages().find((i) => i.reference)!;

interface Started {
  child: ChildProcess;
  url: string;
  /** The service's own pid (npm runs it through a shell). */
  pid: number;
  log: string[];
}

/** `npm start` exactly as the README says, in its own process group so nothing outlives the test. */
async function npmStart(env: Record<string, string>): Promise<Started> {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: REPO_ROOT,
    detached: true,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const { url, pid } = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        log.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string; pid?: number };
          if (entry.msg?.includes('listening') && entry.url && entry.pid)
            resolve({ url: entry.url, pid: entry.pid });
        } catch {
          // not JSON
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`npm start exited (${code}): ${stderr.slice(-3000)}`)));
  });
  return { child, url, pid, log };
}

async function stop(s: Started): Promise<number | null> {
  // SIGTERM to the service itself, as an orchestrator would; npm then exits with the service's code.
  const exited = once(s.child, 'exit') as Promise<[number | null]>;
  process.kill(s.pid, 'SIGTERM');
  const [code] = await exited;
  try {
    process.kill(-s.child.pid!, 'SIGKILL');
  } catch {
    // the group is already gone
  }
  return code;
}

const score = (url: string) =>
  fetch(`${url}/score`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      input_data: { columns: ['image'], index: [0], data: [[readFileSync(image.path).toString('base64')]] },
    }),
  });

describe('npm start on a machine with no internet', () => {
  const prefixes: string[] = [];
  afterAll(async () => {
    const redis = createRedis(REDIS_URL, 'consumer');
    for (const p of prefixes) {
      const keys = await redis.keys(`${p}:*`);
      if (keys.length) await redis.del(...keys);
    }
    redis.disconnect();
  });

  it('serves /score with a random-weight ViT-B/14 within 60 s, warns about it, and drains on SIGTERM', async () => {
    const prefix = `{t-start-${randomUUID().slice(0, 8)}}`;
    prefixes.push(prefix);
    const t0 = Date.now();
    const s = await npmStart({
      PORT: String(await freePort()),
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      MODEL_FETCH: 'false',
      EMBEDPOOL_CACHE_DIR: CACHE,
    });
    try {
      const res = await score(s.url);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { image_features: number[] }[];
      expect(body[0]!.image_features).toHaveLength(768);
      expect(Date.now() - t0).toBeLessThan(60_000);

      const ready = (await (await fetch(`${s.url}/readyz`)).json()) as { warning?: string };
      expect(ready.warning).toMatch(/random/i);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/embedpool_model_info\{[^}]*random_weights="true"/);
      expect(s.log.some((l) => /RANDOM WEIGHTS/.test(l))).toBe(true);
      // A clean start logs no connection trouble: the job-events listener waits for Redis to be ready.
      expect(s.log.filter((l) => /connection error|isn't writeable/.test(l))).toEqual([]);
    } finally {
      expect(await stop(s)).toBe(0);
    }
  });

  it('starts a private redis-server when none answers at REDIS_URL, and stops it on exit', async () => {
    const port = await freePort();
    const prefix = `{t-start-${randomUUID().slice(0, 8)}}`;
    const s = await npmStart({
      PORT: String(await freePort()),
      REDIS_URL: `redis://127.0.0.1:${port}`,
      QUEUE_PREFIX: prefix,
      MODEL_FETCH: 'false',
      EMBEDPOOL_CACHE_DIR: CACHE,
    });
    const probe = new PrivateRedis(port);
    try {
      expect(s.log.some((l) => l.includes('private redis-server'))).toBe(true);
      expect(await probe.ping()).toBe(true);
      expect((await score(s.url)).status).toBe(200);
    } finally {
      expect(await stop(s)).toBe(0);
      rmSync(join(CACHE, `redis-${port}`), { recursive: true, force: true });
    }
    expect(await probe.ping()).toBe(false);
  });

  it('keeps accepted async jobs across a restart: the private Redis writes an append-only file in the cache', async () => {
    const port = await freePort();
    const cacheDir = mkdtempSync(join(tmpdir(), 'embedpool-start-aof-'));
    const prefix = `{t-start-${randomUUID().slice(0, 8)}}`;
    const env = {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      QUEUE_PREFIX: prefix,
      EMBEDPOOL_CACHE_DIR: cacheDir,
      // The small fixture model: this test is about Redis, not the model.
      MODEL_PATH: PARITY_MODEL,
      MODEL_ID: 'parity',
    };
    const probe = new PrivateRedis(port);
    const ids: string[] = [];
    let s = await npmStart({ ...env, PORT: String(await freePort()) });
    try {
      // Paused, so the accepted jobs are still waiting in Redis when the process stops.
      const queue = new Queue(QUEUES.embed, { connection: createRedis(env.REDIS_URL, 'consumer'), prefix });
      await queue.pause();
      for (let i = 0; i < 5; i++) {
        const res = await postJson(`${s.url}/v1/jobs`, {
          images: [{ base64: readFileSync(image.path).toString('base64') }],
        });
        expect(res.status).toBe(202);
        ids.push(res.json.id);
      }
      const counts = await queue.getJobCounts('paused', 'prioritized', 'waiting', 'completed');
      expect(counts.paused! + counts.prioritized! + counts.waiting!).toBe(5);
      await queue.close();
    } finally {
      expect(await stop(s)).toBe(0);
    }
    expect(await probe.ping()).toBe(false);
    expect(existsSync(join(cacheDir, `redis-${port}`, 'appendonlydir'))).toBe(true);

    s = await npmStart({ ...env, PORT: String(await freePort()) });
    const events = new JobEvents(prefix, env.REDIS_URL);
    try {
      await events.ready();
      const queue = new Queue(QUEUES.embed, { connection: createRedis(env.REDIS_URL, 'consumer'), prefix });
      await queue.resume();
      await queue.close();
      for (const id of ids) expect((await waitJobFinal(s.url, events, id)).state).toBe('completed');
    } finally {
      await events.close();
      expect(await stop(s)).toBe(0);
      rmSync(cacheDir, { recursive: true, force: true });
    }
  }, 150_000);
});
