/**
 * Redis killed with -9 while accepted async jobs and a bulk ingestion are in flight, restarted on the same
 * disk with the append-only file the shipped deployments use (`--appendonly yes --appendfsync everysec`):
 * every accepted job and the ingestion finish, each vector exactly once. The work was accepted (202) and
 * on disk before the crash: a finished AOF rewrite (BGREWRITEAOF) is the event that says so; Redis 7.0 has
 * no WAITAOF. Writes of the last second before the crash may be lost (docs/hardening.md); those are the
 * workers' progress, which they redo.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { startApi } from '@embedpool/api';
import { loadConfig } from '@embedpool/core/config';
import { cosine, freePort, parityImages } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { parityModel, postJson } from '../support/stack';

const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');

/** A redis-server with the deployments' persistence settings, on a port and directory of its own. */
class AofRedis {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'embedpool-aof-'));
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir];
    args.push(
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    );
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        log += d.toString();
        if (log.includes('Ready to accept connections')) {
          child.stdout!.off('data', onData);
          child.stdout!.resume();
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
    });
  }
  /** Until a rewrite finishes, the dataset as of its start is fsynced in the new base file. */
  async persistNow(): Promise<void> {
    const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    try {
      await r.bgrewriteaof();
      for (let i = 0; i < 600; i++) {
        const info = await r.info('persistence');
        if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) {
          if (!/aof_last_bgrewrite_status:ok/.test(info)) throw new Error(`AOF rewrite failed:\n${info}`);
          return;
        }
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error('AOF rewrite did not finish');
    } finally {
      r.disconnect();
    }
  }
  async kill9(): Promise<void> {
    const child = this.child!;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
  async dispose(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function poll<T>(url: string, done: (v: T) => boolean, timeoutMs = 180_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    const res = await fetch(url).catch(() => undefined);
    // Redis answers only once it has loaded its AOF: a 404 now is accepted work that was lost.
    if (res?.status === 404) throw new Error(`${url}: 404, lost: ${await res.text()}`);
    if (res?.ok) {
      last = (await res.json()) as T;
      if (done(last)) return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url}: not done within ${timeoutMs} ms; last ${JSON.stringify(last)}`);
}

describe('Redis kill -9 with AOF everysec: accepted jobs and an ingestion finish', () => {
  let redis: AofRedis;
  let azurite: Azurite;
  beforeAll(async () => {
    redis = new AofRedis(await freePort());
    await redis.start();
    azurite = await startAzurite();
  });
  afterAll(async () => {
    await redis?.dispose();
    await azurite?.dispose();
  });

  it('20 accepted jobs and a 24-image ingestion complete after the crash, each vector once', async () => {
    const config = loadConfig({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: `t-aof-${randomUUID().slice(0, 8)}`,
      PORT: '0',
      LOG_LEVEL: 'silent',
      BLOB_CONNECTION_STRING: azurite.connectionString,
      // One image at a time, so work is still in flight when Redis dies; stalled jobs come back fast.
      MAX_BATCH_SIZE: '1',
      WORKER_CONCURRENCY: '1',
      JOB_LOCK_MS: '2000',
      INGEST_CHUNK_SIZE: '4',
      INGEST_CHUNK_CONCURRENCY: '1',
      READY_WORKER_TTL_S: '2',
    });
    const blob = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const source = blob.getContainerClient('aof-photos');
    await source.createIfNotExists();
    for (let i = 0; i < 24; i++) {
      const img = images[i % images.length]!;
      await source
        .getBlockBlobClient(`p/${String(i).padStart(2, '0')}-${img.name}`)
        .uploadData(readFileSync(img.path));
    }

    const registry = new Registry();
    const worker = await startWorker({ config, registry, model: parityModel });
    const api = await startApi({ config, registry });
    try {
      const jobs: { id: string; names: string[] }[] = [];
      for (let j = 0; j < 20; j++) {
        const picked = [0, 1, 2].map((k) => images[(j + k) % images.length]!);
        const res = await postJson(`${api.url}/v1/jobs`, {
          images: picked.map((p, k) => ({ id: `${j}-${k}-${p.name}`, base64: b64(p.path) })),
        });
        expect(res.status).toBe(202);
        jobs.push({ id: res.json.id, names: picked.map((p) => p.name) });
      }
      const ing = await postJson(`${api.url}/v1/ingestions`, {
        source: { container: 'aof-photos' },
        output: { container: 'aof-vectors', prefix: 'v1' },
      });
      expect(ing.status).toBe(202);

      // Accepted work on disk, then the crash while the worker is busy with it.
      await redis.persistNow();
      const states = await Promise.all(
        jobs.map(
          async (j) =>
            ((await (await fetch(`${api.url}/v1/jobs/${j.id}`)).json()) as { state: string }).state,
        ),
      );
      await redis.kill9();
      expect(
        states.filter((s) => s !== 'completed').length,
        'jobs still in flight at the crash',
      ).toBeGreaterThan(0);

      await redis.start();
      for (const [j, job] of jobs.entries()) {
        const final = await poll<{ state: string }>(`${api.url}/v1/jobs/${job.id}`, (v) =>
          ['completed', 'partially_failed', 'failed', 'cancelled'].includes(v.state),
        );
        expect(final.state, job.id).toBe('completed');
        const result = (await (await fetch(`${api.url}/v1/jobs/${job.id}/result`)).json()) as {
          items: { id: string; image_features: number[] }[];
        };
        expect(result.items.map((it) => it.id)).toEqual(job.names.map((n, k) => `${j}-${k}-${n}`));
        result.items.forEach((it, k) => {
          const ref = images.find((i) => i.name === job.names[k])!.reference!;
          expect(cosine(it.image_features, ref)).toBeGreaterThan(0.999);
        });
      }
      const done = await poll<{ state: string; counts: { done: number; failed: number } }>(
        `${api.url}/v1/ingestions/${ing.json.id}`,
        (v) => ['completed', 'partially_failed', 'failed', 'cancelled'].includes(v.state),
      );
      expect(done.state).toBe('completed');
      expect(done.counts).toMatchObject({ done: 24, failed: 0 });
      const manifest = JSON.parse(
        (
          await blob.getContainerClient('aof-vectors').getBlobClient('v1/_manifest.json').downloadToBuffer()
        ).toString(),
      ) as { counts: { rows: number } };
      expect(manifest.counts.rows).toBe(24);
    } finally {
      await api.close();
      await worker.close();
    }
  }, 300_000);
});
