/**
 * Shared by the ingestion end-to-end tests: a synthetic image container, an in-process API + worker with
 * ingestion, worker child processes, readers of the output, and waits driven by queue events.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { MicroBatcher } from '@embedpool/core/batching';
import type { Config } from '@embedpool/core/config';
import { Engine } from '@embedpool/core/engine';
import {
  type DecodedShardRow,
  decodeShard,
  INGEST_QUEUES,
  type IndexEntry,
  type IngestionManifest,
  IngestionService,
  type IngestionView,
  type IngestSettings,
  ingestJobIds,
  readIndexLines,
} from '@embedpool/core/ingest';
import { DINOV2_PREPROCESSOR_CONFIG, preprocess } from '@embedpool/core/preprocess';
import { createRedis, type RedisSettings } from '@embedpool/core/queue';
import { PARITY_MODEL, parityImages, REPO_ROOT } from '@embedpool/testkit';
import { startWorker } from '@embedpool/worker';
import { QueueEvents } from 'bullmq';
import express from 'express';
import type { Redis } from 'ioredis';
import sharp from 'sharp';
import { errorHandler } from '../../apps/api/src/http-errors';
import { requestContext } from '../../apps/api/src/request-context';
import { ingestionsRouter } from '../../apps/api/src/routes/ingestions';
import { type IngestWorkerHandle, startIngestWorker } from '../../apps/worker/src/ingest';
import { type Azurite, startAzurite } from '../support/azurite';
import { cleanPrefix, parityModel, REDIS_URL, testConfig } from '../support/stack';

export interface TestBlob {
  name: string;
  body: Buffer;
  /** Expected to embed (false for the corrupt ones). */
  good: boolean;
}

/** Sources: fixture photos that decode to a single RGB(A) picture. */
const SOURCES = [
  'china.jpg',
  'flower.jpg',
  'grace_hopper.jpg',
  'hopper.webp',
  'logo_wide_rgba.png',
  'present_rgba.png',
];
const PREFIXES = ['photos/2023/', 'photos/2024/', 'scans/', 'misc/deep/nested/'];

let decoded: Promise<{ data: Buffer; width: number; height: number; channels: 3 | 4 }[]> | undefined;

function sources() {
  if (decoded) return decoded;
  const images = parityImages();
  decoded = Promise.all(
    SOURCES.map(async (name) => {
      const path = images.find((i) => i.name === name)!.path;
      const { data, info } = await sharp(path)
        .resize(240, 240, { fit: 'inside' })
        .raw()
        .toBuffer({ resolveWithObject: true });
      return { data, width: info.width, height: info.height, channels: info.channels as 3 | 4 };
    }),
  );
  return decoded;
}

/** Image `i`: a fixture photo at its own size (64-240 px) and encoding, so every blob is distinct. */
export async function makeImage(i: number, salt = 0): Promise<{ ext: string; body: Buffer }> {
  const src = (await sources())[(i + salt) % SOURCES.length]!;
  const width = 64 + ((i * 37 + salt * 101) % 177);
  const height = 64 + ((i * 53 + salt * 71) % 177);
  const img = sharp(src.data, {
    raw: { width: src.width, height: src.height, channels: src.channels },
  }).resize(width, height, { fit: 'fill' });
  // Mostly JPEG (cheap to make), some PNG and WebP.
  const kind = (i + salt) % 10;
  if (kind < 6) return { ext: 'jpg', body: await img.jpeg({ quality: 70 + (i % 25) }).toBuffer() };
  if (kind < 9) return { ext: 'png', body: await img.png({ compressionLevel: 2 }).toBuffer() };
  return { ext: 'webp', body: await img.webp({ quality: 75, effort: 0 }).toBuffer() };
}

/** `count` good images under several prefixes, plus corrupt ones (named `*-corrupt-*`). */
export async function makeBlobs(
  count: number,
  opts: { corrupt?: number; first?: number } = {},
): Promise<TestBlob[]> {
  const first = opts.first ?? 0;
  const out: TestBlob[] = await Promise.all(
    Array.from({ length: count }, async (_, k) => {
      const i = first + k;
      const { ext, body } = await makeImage(i);
      return {
        name: `${PREFIXES[i % PREFIXES.length]}img-${String(i).padStart(5, '0')}.${ext}`,
        body,
        good: true,
      };
    }),
  );
  const corrupt: Buffer[] = [
    Buffer.from('this is not an image at all'),
    Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(64, 7)]),
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
    Buffer.alloc(0),
    Buffer.from('<svg><script>nope</script>'),
  ];
  for (let i = 0; i < (opts.corrupt ?? 0); i++) {
    out.push({
      name: `${PREFIXES[i % PREFIXES.length]}img-corrupt-${i}.jpg`,
      body: corrupt[i % corrupt.length]!,
      good: false,
    });
  }
  return out;
}

export async function upload(
  container: ContainerClient,
  blobs: readonly TestBlob[],
  concurrency = 16,
): Promise<void> {
  await container.createIfNotExists();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < blobs.length) {
        const b = blobs[next++]!;
        await container.getBlockBlobClient(b.name).uploadData(b.body);
      }
    }),
  );
}

/** Every blob's vector embedded alone (a batch of one), for comparison with the ingested rows. */
export async function embedAlone(blobs: readonly TestBlob[]): Promise<Map<string, Float32Array>> {
  // One intra-op thread per session, two sessions: no spinning threads competing with the decodes.
  const engine = await Engine.load({ modelPath: PARITY_MODEL, threads: 2, runtime: { intraOpThreads: 1 } });
  const batcher = new MicroBatcher(engine, { maxBatchSize: 1, batchWaitMs: 0, height: 224, width: 224 });
  const out = new Map<string, Float32Array>();
  try {
    // Decodes overlap (libuv pool); the model still runs each image alone.
    const good = blobs.filter((b) => b.good);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < good.length) {
          const b = good[next++]!;
          const pixels = await preprocess(b.body, { config: DINOV2_PREPROCESSOR_CONFIG });
          out.set(b.name, await batcher.embed({ fill: (dst, offset) => dst.set(pixels, offset) }));
        }
      }),
    );
  } finally {
    await batcher.close();
    await engine.close();
  }
  return out;
}

export interface IngestStack {
  config: Config;
  url: string;
  redis: Redis;
  service: IngestionService;
  ingest: IngestWorkerHandle | undefined;
  stop(opts?: { keepKeys?: boolean }): Promise<void>;
}

/**
 * The ingestion API (its router on express, as app.ts mounts it) and, unless `worker: false`, a worker
 * (startWorker + startIngestWorker over its micro-batcher), all in this process.
 */
export async function startIngestStack(
  config: Config,
  opts: { worker?: boolean; settings?: Partial<IngestSettings> } = {},
): Promise<IngestStack> {
  const redis = createRedis(REDIS_URL, 'producer');
  await new Promise<void>((resolve) =>
    redis.status === 'ready' ? resolve() : redis.once('ready', () => resolve()),
  );
  const service = new IngestionService({
    redis,
    config,
    ...(opts.settings ? { settings: opts.settings } : {}),
  });
  const app = express();
  app.use(
    requestContext((await import('@embedpool/core/logger')).createLogger({ name: 'api', level: 'silent' })),
  );
  app.use(ingestionsRouter({ config, redis, service }));
  app.use(errorHandler);
  const server: http.Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const worker = opts.worker === false ? undefined : await startWorker({ config, model: parityModel });
  // Once worker.ts starts ingestion itself (its handle has `ingest`), that one is used as it is.
  const wired = (worker as { ingest?: IngestWorkerHandle } | undefined)?.ingest;
  const own =
    worker && !wired
      ? await startIngestWorker({ config, worker, ...(opts.settings ? { settings: opts.settings } : {}) })
      : undefined;
  const ingest = wired ?? own;
  return {
    config,
    url,
    redis,
    service,
    ingest,
    async stop(stopOpts = {}) {
      await own?.close();
      await worker?.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await service.close();
      redis.disconnect();
      if (!stopOpts.keepKeys) await cleanPrefix(config.QUEUE_PREFIX);
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary API answers
type Json = any;

export async function postIngestion(url: string, body: unknown): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${url}/v1/ingestions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

export async function getJson(url: string): Promise<Json> {
  return (await fetch(url)).json();
}

const FINAL = ['completed', 'partially_failed', 'failed', 'cancelled'];

/** Events of the ingest queues (finalize completions, chunk completions, added jobs). */
export class IngestEvents {
  readonly plan: QueueEvents;
  readonly chunks: QueueEvents;
  constructor(prefix: string, redis: string | RedisSettings = REDIS_URL) {
    this.plan = new QueueEvents(INGEST_QUEUES.plan, {
      connection: createRedis(redis, 'consumer'),
      prefix,
    });
    this.chunks = new QueueEvents(INGEST_QUEUES.chunks, {
      connection: createRedis(redis, 'consumer'),
      prefix,
    });
    this.plan.setMaxListeners(100);
    this.chunks.setMaxListeners(100);
  }
  async ready(): Promise<void> {
    await Promise.all([this.plan.waitUntilReady(), this.chunks.waitUntilReady()]);
  }
  /** Resolves on the n-th chunk completion from now. */
  chunksCompleted(n: number): Promise<void> {
    return new Promise((resolve) => {
      let seen = 0;
      const h = () => {
        if (++seen >= n) {
          this.chunks.off('completed', h);
          resolve();
        }
      };
      this.chunks.on('completed', h);
    });
  }
  /** Counts chunk jobs added (by job id) from now on; `until(id)` resolves once that one was added. */
  watchAdded() {
    const added = new Map<string, number>();
    const waiters: { id: string; resolve: () => void }[] = [];
    const h = (e: { jobId: string }) => {
      added.set(e.jobId, (added.get(e.jobId) ?? 0) + 1);
      for (const w of waiters.filter((x) => x.id === e.jobId)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    };
    this.chunks.on('waiting', h);
    return {
      added,
      until: (id: string) =>
        added.has(id) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ id, resolve })),
      stop: () => this.chunks.off('waiting', h),
    };
  }
  private finalized(jobId: string): Promise<void> {
    return new Promise((resolve) => {
      const h = (e: { jobId: string }) => {
        if (e.jobId === jobId) {
          this.plan.off('completed', h);
          resolve();
        }
      };
      this.plan.on('completed', h);
    });
  }
  /** Waits for the ingestion's finalize job of `round` to complete, then answers its view. */
  async final(apiUrl: string, id: string, round = 0): Promise<IngestionView> {
    const done = this.finalized(ingestJobIds.finalize(id, round));
    const now = (await getJson(`${apiUrl}/v1/ingestions/${id}`)) as IngestionView;
    if (FINAL.includes(now.state) && now.round === round) return now;
    await done;
    return (await getJson(`${apiUrl}/v1/ingestions/${id}`)) as IngestionView;
  }
  async close(): Promise<void> {
    await this.plan.close();
    await this.chunks.close();
  }
}

/** The whole output: manifest, every shard's rows (by shard), the index. */
export async function readOutput(container: ContainerClient, prefix: string) {
  const path = (rel: string) => (prefix ? `${prefix}/${rel}` : rel);
  const manifest = JSON.parse(
    (await container.getBlobClient(path('_manifest.json')).downloadToBuffer()).toString('utf8'),
  ) as IngestionManifest;
  const shards = new Map<string, DecodedShardRow[]>();
  for (const s of manifest.shards) {
    const bytes = await container.getBlobClient(path(s.name)).downloadToBuffer();
    shards.set(s.name, await decodeShard(manifest.shardFormat, bytes));
  }
  const index: IndexEntry[] = [];
  for await (const line of readIndexLines(container.getBlobClient(path(manifest.index.name))))
    index.push(line.entry);
  const listed: string[] = [];
  for await (const b of container.listBlobsFlat({ prefix: path('shards/') })) listed.push(b.name);
  return { manifest, shards, index, listedShards: listed };
}

/** The latest row of each blob (what a reader keeps: rows named by the index). */
export function liveRows(
  out: Awaited<ReturnType<typeof readOutput>>,
): Map<string, DecodedShardRow & { shard: string }> {
  const live = new Map<string, DecodedShardRow & { shard: string }>();
  const byChunk = new Map(out.manifest.shards.map((s) => [s.chunk, s.name]));
  for (const e of out.index) {
    if (e.shard === undefined) continue;
    const rows = out.shards.get(byChunk.get(e.shard)!)!;
    const row = rows.find((r) => r.name === e.name)!;
    live.set(e.name, { ...row, shard: e.shard });
  }
  return live;
}

/** A worker in a child process: startWorker + startIngestWorker, as `embedpool worker` will run them. */
export class WorkerChild {
  readonly child: ChildProcess;
  readonly lines: { msg?: string; [k: string]: unknown }[] = [];
  stderr = '';
  private waiters: { match: (l: { msg?: string }) => boolean; resolve: () => void }[] = [];

  constructor(env: Record<string, string>) {
    this.child = spawn(
      process.execPath,
      ['--import', 'tsx', join(REPO_ROOT, 'test/e2e/ingest-worker.entry.ts')],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/tmp',
          ORT_DISABLE_TELEMETRY: '1',
          LOG_LEVEL: 'info',
          MODEL_PATH: PARITY_MODEL,
          REDIS_URL,
          WORKER_METRICS_PORT: '0',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let buf = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const line = JSON.parse(text) as { msg?: string };
          this.lines.push(line);
          for (const w of [...this.waiters]) {
            if (w.match(line)) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.resolve();
            }
          }
        } catch {
          // not a log line
        }
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
  }

  waitForLog(match: (l: { msg?: string; [k: string]: unknown }) => boolean): Promise<void> {
    if (this.lines.some(match)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ match, resolve });
      this.child.once('exit', (code) => reject(new Error(`worker exited (${code}): ${this.stderr}`)));
    });
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill(signal);
    await exited;
  }
}

export function blobService(connectionString: string): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(connectionString);
}

/** What every ingestion e2e test starts: Azurite, the in-process ingestion stack over it, the queues' events. */
export interface IngestFixture {
  azurite: Azurite;
  blob: BlobServiceClient;
  config: Config;
  stack: IngestStack;
  events: IngestEvents;
  /** Stops the events, the stack (and its keys) and Azurite. */
  close(): Promise<void>;
}

/**
 * Starts Azurite, then (after `seed`, which uploads the source blobs) the stack with `env` on top of the test
 * config and the account's connection string. A start that fails part-way releases what it started.
 */
export async function startIngestFixture(
  opts: {
    env?: Record<string, string>;
    settings?: Partial<IngestSettings>;
    worker?: boolean;
    seed?: (blob: BlobServiceClient) => Promise<void>;
  } = {},
): Promise<IngestFixture> {
  const azurite = await startAzurite();
  const blob = blobService(azurite.connectionString);
  let stack: IngestStack | undefined;
  try {
    await opts.seed?.(blob);
    const config = testConfig({ BLOB_CONNECTION_STRING: azurite.connectionString, ...opts.env });
    stack = await startIngestStack(config, {
      ...(opts.settings ? { settings: opts.settings } : {}),
      ...(opts.worker === false ? { worker: false } : {}),
    });
    const events = new IngestEvents(config.QUEUE_PREFIX);
    await events.ready();
    const started = stack;
    return {
      azurite,
      blob,
      config,
      stack: started,
      events,
      async close() {
        await events.close();
        await started.stop();
        await azurite.dispose();
      },
    };
  } catch (err) {
    await stack?.stop().catch(() => {});
    await azurite.dispose();
    throw err;
  }
}
