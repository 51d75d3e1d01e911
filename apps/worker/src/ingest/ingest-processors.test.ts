import { createHash, randomUUID } from 'node:crypto';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { loadConfig } from '@embedpool/core/config';
import {
  chunkId,
  decodeShard,
  encodeIndexLine,
  encodeShard,
  IndexCursor,
  type IngestionManifest,
  IngestionService,
  ingestSettingsFrom,
  OutputLayout,
  readIndexLines,
} from '@embedpool/core/ingest';
import { createLogger } from '@embedpool/core/logger';
import { readyRedis } from '@embedpool/testkit';
import { type Azurite, startAzurite } from '@embedpool/testkit/azurite-kit';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbedPipeline } from '../embed-pipeline';
import { createChunkProcessor } from './chunk-processor';
import type { IngestDeps } from './deps';
import { runFinalize } from './finalizer';
import { runPlanner } from './planner';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Stands in for the model: a vector from the bytes' hash; `bad` bytes fail to decode. */
const pipeline = {
  async embed(ref: { kind: string; data?: string; bytes?: Uint8Array }) {
    // Chunks hand downloaded bytes over as they are (`bytes`); base64 is the older form.
    const bytes = ref.bytes ? Buffer.from(ref.bytes) : Buffer.from(ref.data ?? '', 'base64');
    if (bytes.toString() === 'bad') {
      throw Object.assign(new Error('image could not be decoded'), { code: 'IMAGE_DECODE_FAILED' });
    }
    const h = createHash('sha256').update(bytes).digest();
    return Float32Array.from({ length: 4 }, (_, i) => h[i]!);
  },
} as unknown as EmbedPipeline;

const fakeJob = <T>(data: T, over: Partial<Job> = {}) =>
  ({
    data,
    attemptsMade: 0,
    stalledCounter: 0,
    opts: { attempts: 3 },
    moveToDelayed: async () => {},
    ...over,
  }) as unknown as Job<T>;

describe('ingestion processors (Azurite, Redis, a stand-in pipeline)', () => {
  let azurite: Azurite;
  let blob: BlobServiceClient;
  let redis: Redis;
  let service: IngestionService;
  let deps: IngestDeps;
  let out: ContainerClient;
  const prefix = `{t-ingp-${randomUUID().slice(0, 8)}}`;

  beforeAll(async () => {
    azurite = await startAzurite();
    blob = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const src = blob.getContainerClient('src');
    await src.createIfNotExists();
    for (let i = 0; i < 12; i++) {
      await src
        .getBlockBlobClient(`a/${String(i).padStart(2, '0')}.jpg`)
        .uploadData(Buffer.from(i === 5 ? 'bad' : `img-${i}`));
    }
    out = blob.getContainerClient('out');
    redis = await readyRedis(REDIS_URL);
    const config = loadConfig({
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      BLOB_CONNECTION_STRING: azurite.connectionString,
    });
    const settings = ingestSettingsFrom(config, { INGEST_CHUNK_SIZE: 4, INGEST_LIST_PAGE_SIZE: 5 });
    service = new IngestionService({ redis, config, settings });
    deps = {
      store: service.store,
      queues: service.queues,
      blob,
      settings,
      pipeline,
      modelId: 'stand-in',
      dim: () => 4,
      preprocessor: {},
      maxImageBytes: 1024,
      logger: createLogger({ name: 'test', level: 'silent' }),
      closing: () => false,
    };
  });
  afterAll(async () => {
    await service?.queues.plan.obliterate({ force: true });
    await service?.queues.chunks.obliterate({ force: true });
    await service?.close();
    const left = await redis.keys(`${prefix}:*`);
    if (left.length) await redis.del(...left);
    redis?.disconnect();
    await azurite?.dispose();
  });

  /** Plans, then runs every queued chunk (in seq order unless `order` says otherwise). */
  async function planAndChunks(id: string, round = 0, before?: (seq: number) => Promise<void>) {
    await runPlanner(deps, fakeJob({ ingestionId: id, round }), undefined, id, round);
    const chunk = createChunkProcessor(deps);
    const jobs = await service.queues.chunks.getJobs(['waiting']);
    const mine = jobs.filter((j) => j.data.ingestionId === id).sort((a, b) => a.data.seq - b.data.seq);
    for (const j of mine) {
      await before?.(j.data.seq);
      await chunk(fakeJob(j.data));
      await j.remove();
    }
    return mine.length;
  }

  async function index(prefixPath: string) {
    const m = JSON.parse(
      (await out.getBlobClient(`${prefixPath}/_manifest.json`).downloadToBuffer()).toString(),
    ) as IngestionManifest;
    const lines = [];
    for await (const l of readIndexLines(out.getBlobClient(`${prefixPath}/${m.index.name}`)))
      lines.push(l.entry);
    return { m, lines };
  }

  it('resumes an index cursor from the byte offset it reported, whatever the chunking of the stream', async () => {
    const entries = Array.from({ length: 3000 }, (_, i) => ({
      name: `ü/${String(i).padStart(5, '0')}-😀.jpg`,
      etag: `0x${i}`,
      ...(i % 7 === 0 ? { failure: 'IMAGE_DECODE_FAILED' } : { shard: `c${i % 13}` }),
    }));
    const text = entries.map(encodeIndexLine).join('');
    const idx = out.getBlockBlobClient('cursor/index.ndjson');
    await out.createIfNotExists();
    await idx.uploadData(Buffer.from(text.slice(0, -1))); // no newline after the last line
    const first = new IndexCursor(idx, 0);
    for (let i = 0; i < 1234; i++) {
      expect(await first.peek()).toEqual(entries[i]);
      await first.advance();
    }
    const offset = first.offset;
    await first.close();
    const resumed = new IndexCursor(idx, offset);
    const rest = [];
    for (let e = await resumed.peek(); e; e = await resumed.peek()) {
      rest.push(e);
      await resumed.advance();
    }
    expect(rest).toEqual(entries.slice(1234));
    expect(resumed.offset).toBe(Buffer.byteLength(text) - 1);
    expect(await new IndexCursor(idx, resumed.offset).peek()).toBeUndefined();
    expect(await new IndexCursor(undefined, 0).peek()).toBeUndefined();
  });

  it('plans, embeds and finalizes: rows, a permanent failure, and the index in name order', async () => {
    const r = await service.create({
      source: { container: 'src' },
      output: { container: 'out', prefix: 'p1' },
    });
    expect(await planAndChunks(r.id)).toBe(3);
    expect(await runFinalize(deps, r.id, 0)).toBe('partially_failed');
    const { m, lines } = await index('p1');
    expect(lines.map((e) => e.name)).toEqual(
      Array.from({ length: 12 }, (_, i) => `a/${String(i).padStart(2, '0')}.jpg`),
    );
    expect(lines[5]).toMatchObject({ failure: 'IMAGE_DECODE_FAILED' });
    expect(m.counts).toMatchObject({ rows: 11, liveRows: 11 });
    const rec = (await service.store.get(r.id))!;
    expect(rec).toMatchObject({
      state: 'partially_failed',
      done: 11,
      failed: 1,
      discovered: 12,
      listCalls: 3,
    });
  });

  it('rebuilds a chunk index from its shard when a racing attempt rewrote the shard afterwards', async () => {
    const r = await service.create({
      source: { container: 'src' },
      output: { container: 'out', prefix: 'p2' },
    });
    await planAndChunks(r.id);
    // A second attempt of chunk 0 (its lock lost, say) rewrote the shard with only two rows.
    const layout = new OutputLayout('p2');
    const c0 = chunkId(r.id, 0, 0);
    const name = layout.shard(c0, 'parquet');
    const rows = (await decodeShard('parquet', await out.getBlobClient(name).downloadToBuffer())).slice(0, 2);
    await out.getBlockBlobClient(name).uploadData(
      encodeShard('parquet', rows, {
        container: 'src',
        modelId: 'stand-in',
        dim: 4,
        ingestionId: r.id,
        run: 1,
        chunk: c0,
      }),
    );
    expect(await runFinalize(deps, r.id, 0)).toBe('partially_failed');
    const { m, lines } = await index('p2');
    expect(m.shards.find((s) => s.chunk === c0)!.rows).toBe(2);
    expect(lines.filter((e) => e.shard === c0).map((e) => e.name)).toEqual(rows.map((x) => x.name));
    expect(m.counts.liveRows).toBe(m.counts.rows);
  });

  it('merges in memory when a round lists names out of order', async () => {
    const r = await service.create({
      source: { container: 'src' },
      output: { container: 'out', prefix: 'p3' },
    });
    await planAndChunks(r.id);
    // Swap what chunks 0 and 2 hold, as a listing in another order would have: their entries now run
    // backwards across chunks.
    const layout = new OutputLayout('p3');
    const [c0, c2] = [chunkId(r.id, 0, 0), chunkId(r.id, 0, 2)];
    const read = async (c: string) =>
      JSON.parse((await out.getBlobClient(layout.chunkIndex(c)).downloadToBuffer()).toString());
    const [f0, f2] = [await read(c0), await read(c2)];
    const swap = async (c: string, from: { rows: [string, string][]; failures: unknown[] }) => {
      const vectorRows = from.rows.map(([n, e]) => ({
        name: n,
        etag: e,
        size: 1,
        vector: new Float32Array(4),
      }));
      const up = await out.getBlockBlobClient(layout.shard(c, 'parquet')).uploadData(
        encodeShard('parquet', vectorRows, {
          container: 'src',
          modelId: 'stand-in',
          dim: 4,
          ingestionId: r.id,
          run: 1,
          chunk: c,
        }),
      );
      const file = {
        ...from,
        chunk: c,
        shard: layout.shardRel(c, 'parquet'),
        shardEtag: up.etag!.replace(/"/g, ''),
      };
      await out.getBlockBlobClient(layout.chunkIndex(c)).uploadData(Buffer.from(JSON.stringify(file)));
    };
    await swap(c0, f2);
    await swap(c2, f0);
    expect(await runFinalize(deps, r.id, 0)).toBe('partially_failed');
    const { lines } = await index('p3');
    const names = lines.map((e) => e.name);
    expect(names).toEqual([...names].sort());
    expect(names).toHaveLength(12);
  });

  it('records a chunk that keeps killing its worker as WORKER_CRASHED failures, and a vanished blob', async () => {
    const r = await service.create({
      source: { container: 'src' },
      output: { container: 'out', prefix: 'p4' },
    });
    await runPlanner(deps, fakeJob({ ingestionId: r.id, round: 0 }), undefined, r.id, 0);
    const jobs = (await service.queues.chunks.getJobs(['waiting'])).filter(
      (j) => j.data.ingestionId === r.id,
    );
    const chunk = createChunkProcessor(deps);
    const [first, second, third] = jobs.sort((a, b) => a.data.seq - b.data.seq);
    await chunk(fakeJob(first!.data, { stalledCounter: 3 }));
    await blob.getContainerClient('src').getBlobClient(second!.data.blobs[0]![0]).delete();
    await chunk(fakeJob(second!.data));
    await chunk(fakeJob(third!.data));
    for (const j of jobs) await j.remove();
    await runFinalize(deps, r.id, 0);
    const failures = await service.store.failures(r.id, { limit: 100 });
    const codes = new Map(failures.map((f) => [f.name, f.code]));
    for (const [name] of first!.data.blobs) expect(codes.get(name)).toBe('WORKER_CRASHED');
    expect(codes.get(second!.data.blobs[0]![0])).toBe('STORAGE_BlobNotFound');
    const rec = (await service.store.get(r.id))!;
    expect(rec.done + rec.failed).toBe(12);
  });
});
