/**
 * Scale checks of bulk ingestion (the numbers in docs/ingestion.md come from here):
 *
 *  1. plan:        list N tiny blobs (default 100,000) in Azurite into chunk jobs, back-pressure off so every
 *                  chunk sits in Redis at once: planner RSS growth (sampled), Redis used_memory growth, time.
 *  2. incremental: plan the same N again against an output index of N entries (every blob unchanged):
 *                  the listing and the index are walked in step, so RSS stays flat; all N are skipped.
 *  3. commands:    M real images (fixture photos, small) embedded by an ingestion vs. as M one-image async
 *                  jobs (/v1/jobs), on a private redis-server: Redis commands per image, total and client
 *                  round trips (MONITOR tells script-internal commands apart).
 *
 *   node --expose-gc --import tsx bench/ingest-scale.ts [--blobs 100000] [--images 1000] [--skip-commands]
 */

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { loadConfig } from '@embedpool/core/config';
import {
  BlobTextWriter,
  encodeIndexLine,
  INGEST_JOBS,
  INGEST_QUEUES,
  type IngestionManifest,
  IngestionService,
  ingestSettingsFrom,
  MANIFEST_FORMAT,
  SHARD_COLUMNS,
} from '@embedpool/core/ingest';
import { JobQueue, JobStore } from '@embedpool/core/jobs';
import { createLogger } from '@embedpool/core/logger';
import { DINOV2_PREPROCESSOR_CONFIG } from '@embedpool/core/preprocess';
import { createRedis, QUEUES } from '@embedpool/core/queue';
import { PARITY_MODEL, parityImages } from '@embedpool/testkit';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '@embedpool/testkit/azurite-kit';
import { startWorker } from '@embedpool/worker';
import { QueueEvents, Worker } from 'bullmq';
import sharp from 'sharp';
import type { EmbedPipeline } from '../apps/worker/src/embed-pipeline';
import { createIngestProcessors, startIngestWorker } from '../apps/worker/src/ingest';
import { freePort, RedisMonitor, RedisProbe, redisDelta, startBenchRedis, sumCounts } from './lib/redis';

const { values: args } = parseArgs({
  options: {
    blobs: { type: 'string', default: '100000' },
    images: { type: 'string', default: '1000' },
    'skip-commands': { type: 'boolean', default: false },
    /** `emulated`: the source listing comes from a List Blobs emulator (Azurite's metadata store slows
     *  down with every blob it holds: 20,000 uploads take 2 minutes, the next 20,000 over 6); `azurite`:
     *  N real tiny blobs uploaded to Azurite first (use N <= 20,000). */
    listing: { type: 'string', default: 'emulated' },
    'page-size': { type: 'string', default: '500' },
  },
});
const N = Number(args.blobs);
const M = Number(args.images);
const MiB = 2 ** 20;
const log = (msg: string) => process.stderr.write(`[ingest-scale] ${msg}\n`);
const gc = () => (globalThis as { gc?: () => void }).gc?.();

async function uploadMany(
  container: ContainerClient,
  count: number,
  body: (i: number) => Buffer,
  name: (i: number) => string,
) {
  await container.createIfNotExists();
  let next = 0;
  let done = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < count) {
        const i = next++;
        await container.getBlockBlobClient(name(i)).uploadData(body(i));
        if (++done % 20_000 === 0)
          log(`uploaded ${done}/${count} (${Math.round(done / ((Date.now() - started) / 1000))}/s)`);
      }
    }),
  );
}

/** Samples this process's RSS until stopped: the peak over a phase, and the heap left after a GC. */
function rssSampler() {
  gc();
  const base = process.memoryUsage();
  let peak = base.rss;
  let peakHeap = base.heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      gc();
      const after = process.memoryUsage();
      return {
        baseMiB: base.rss / MiB,
        peakMiB: peak / MiB,
        growthMiB: (peak - base.rss) / MiB,
        peakHeapGrowthMiB: (peakHeap - base.heapUsed) / MiB,
        heapRetainedMiB: (after.heapUsed - base.heapUsed) / MiB,
      };
    },
  };
}

const fmt = (n: number, d = 1) => n.toFixed(d);

/** The i-th synthetic blob: names in listing order, ETags as the service spells them. */
const synthName = (i: number) =>
  `photos/${String(Math.floor(i / 1000)).padStart(4, '0')}/img-${String(i).padStart(8, '0')}.jpg`;
const synthEtag = (i: number) => `0x8DC${i.toString(16).toUpperCase().padStart(11, '0')}`;

/**
 * Answers List Blobs (the XML the SDK parses) for `count` synthetic blobs, page by page from the marker, and
 * `exists` for the container. Pages are made on request (no listing held in memory), in a child process of
 * its own so that its garbage is not counted as the planner's.
 */
const EMULATOR = `
const { createServer } = require('node:http');
const count = Number(process.argv[1]);
const synthName = ${synthName.toString()};
const synthEtag = ${synthEtag.toString()};
const server = createServer((req, res) => {
  const u = new URL(req.url || '/', 'http://x');
  if (u.searchParams.get('comp') !== 'list') {
    res.writeHead(200, { 'x-ms-version': '2025-01-05', etag: '"0x1"', 'last-modified': new Date().toUTCString() });
    return res.end();
  }
  const start = Number(u.searchParams.get('marker') || 0);
  const max = Number(u.searchParams.get('maxresults') || 5000);
  const end = Math.min(count, start + max);
  const parts = [];
  for (let i = start; i < end; i++) {
    parts.push('<Blob><Name>' + synthName(i) + '</Name><Properties><Last-Modified>Sat, 28 Nov 2026 21:00:00 GMT</Last-Modified>' +
      '<Etag>' + synthEtag(i) + '</Etag><Content-Length>1</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>');
  }
  res.writeHead(200, { 'content-type': 'application/xml', 'x-ms-version': '2025-01-05' });
  res.end('<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1/" ContainerName="scale">' +
    '<MaxResults>' + max + '</MaxResults><Blobs>' + parts.join('') + '</Blobs><NextMarker>' + (end < count ? end : '') +
    '</NextMarker></EnumerationResults>');
});
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

async function startListingEmulator(count: number) {
  const child = spawn(process.execPath, ['-e', EMULATOR, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`listing emulator exited (${code})`)));
  });
  const connectionString =
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
    `BlobEndpoint=http://127.0.0.1:${port}/${AZURITE_ACCOUNT};`;
  return { client: BlobServiceClient.fromConnectionString(connectionString), close: async () => kill() };
}

/**
 * Azurite with in-memory persistence (the test kit always gives it a data directory, and its on-disk
 * metadata store slows to a crawl past some ten thousand blobs).
 */
async function startMemoryAzurite() {
  const port = await freePort();
  const child = spawn(
    'node_modules/.bin/azurite-blob',
    [
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      String(port),
      '--inMemoryPersistence',
      '--silent',
      '--skipApiVersionCheck',
      '--loose',
      '--disableTelemetry',
    ],
    { stdio: 'ignore' },
  );
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${blobEndpoint};`;
  const client = BlobServiceClient.fromConnectionString(connectionString);
  for (let i = 0; ; i++) {
    try {
      await client.getProperties();
      break;
    } catch {
      if (i > 300) throw new Error('azurite did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { connectionString, dispose: async () => kill() };
}

async function main() {
  const redis = await startBenchRedis();
  const azurite = await startMemoryAzurite();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void azurite.dispose();
      void redis.stop().finally(() => process.exit(1));
    });
  }
  const blob = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const results: Record<string, unknown> = { blobs: N, images: M };
  try {
    const prefix = `{bench-${randomUUID().slice(0, 8)}}`;
    const config = loadConfig({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      BLOB_CONNECTION_STRING: azurite.connectionString,
      LOG_LEVEL: 'warn',
      PORT: '0',
    });
    const probe = new RedisProbe(redis.url);
    const producer = createRedis(redis.url, 'producer');
    await new Promise((r) => producer.once('ready', r));

    // 1. plan ------------------------------------------------------------------------------------------
    const emulated = args.listing === 'emulated';
    const emulator = emulated ? await startListingEmulator(N) : undefined;
    if (!emulated) {
      log(`uploading ${N} tiny blobs`);
      await uploadMany(blob.getContainerClient('scale'), N, () => Buffer.from('x'), synthName);
    }
    // The source container from the emulator (or Azurite), everything else (the output) from Azurite.
    const sourceClient = emulator?.client ?? blob;
    const routed = {
      getContainerClient: (name: string) =>
        name === 'scale' ? sourceClient.getContainerClient(name) : blob.getContainerClient(name),
    } as unknown as BlobServiceClient;
    const settings = ingestSettingsFrom(config, {
      INGEST_MAX_QUEUED_CHUNKS: 1_000_000_000,
      INGEST_LIST_PAGE_SIZE: Number(args['page-size']),
    });
    const service = new IngestionService({
      redis: producer,
      config,
      settings,
      blob: { client: routed, container: undefined, credentialKind: 'shared-key' },
    });
    const consumer = createRedis(redis.url, 'consumer');
    const deps = {
      store: service.store,
      queues: service.queues,
      blob: routed,
      settings,
      pipeline: {} as EmbedPipeline, // the planner never embeds
      modelId: 'parity',
      dim: () => 192,
      preprocessor: DINOV2_PREPROCESSOR_CONFIG,
      maxImageBytes: config.MAX_IMAGE_BYTES,
      logger: createLogger({ name: 'bench', level: 'warn' }),
      closing: () => false,
    };
    // Planner only: no chunk worker, so every chunk stays queued (the worst case for Redis memory).
    const planner = new Worker(INGEST_QUEUES.plan, createIngestProcessors(deps).plan, {
      connection: consumer,
      prefix,
      concurrency: 1,
      autorun: false,
    });
    planner.on('error', () => {});
    const before = await probe.counters();
    const rss = rssSampler();
    const t0 = Date.now();
    const created = await service.create({
      source: { container: 'scale' },
      output: { container: 'scale-out' },
    });
    const planned = new Promise<void>((resolve) => {
      planner.on('completed', (job) => {
        if (job.name === INGEST_JOBS.plan) resolve();
      });
    });
    void planner.run();
    await planned;
    const seconds = (Date.now() - t0) / 1000;
    const mem = rss.stop();
    const after = await probe.counters();
    const rec = (await service.store.get(created.id))!;
    const chunkJobs = await service.queues.chunks.getWaitingCount();
    results.plan = {
      listing: emulated ? 'emulated List Blobs' : 'Azurite',
      seconds,
      blobsPerSecond: Math.round(N / seconds),
      discovered: rec.discovered,
      chunksQueued: chunkJobs,
      listCalls: rec.listCalls,
      rss: mem,
      redisUsedMemoryGrowthMiB: (after.usedMemoryBytes - before.usedMemoryBytes) / MiB,
      redisCommands: redisDelta(before, after, seconds).commands,
    };
    log(`plan: ${JSON.stringify(results.plan)}`);
    await planner.close();
    await service.queues.chunks.obliterate({ force: true });

    // 2. incremental planning against an index of N entries ---------------------------------------
    // Fabricate what a finished run leaves: an index naming every blob with its etag, and a manifest.
    const out = blob.getContainerClient('scale-out2');
    await out.createIfNotExists();
    const writer = new BlobTextWriter(
      out.getBlockBlobClient('_index/index-fake-r0.ndjson'),
      'application/x-ndjson',
    );
    if (emulated) {
      for (let i = 0; i < N; i++) {
        await writer.write(
          encodeIndexLine({ name: synthName(i), etag: synthEtag(i), shard: 'fake-c00000000' }),
        );
      }
    } else {
      for await (const b of blob.getContainerClient('scale').listBlobsFlat()) {
        await writer.write(
          encodeIndexLine({
            name: b.name,
            etag: (b.properties.etag ?? '').replace(/"/g, ''),
            shard: 'fake-c00000000',
          }),
        );
      }
    }
    const idx = await writer.close();
    const manifest: IngestionManifest = {
      format: MANIFEST_FORMAT,
      version: 1,
      model: 'parity',
      dim: 192,
      preprocessing: DINOV2_PREPROCESSOR_CONFIG,
      shardFormat: 'parquet',
      columns: SHARD_COLUMNS,
      index: { name: '_index/index-fake-r0.ndjson', entries: N, vectors: N, failures: 0, bytes: idx.bytes },
      counts: { rows: N, liveRows: N, supersededRows: 0, shards: 0 },
      shards: [],
      runs: [],
      updatedAt: new Date().toISOString(),
    };
    await out.getBlockBlobClient('_manifest.json').uploadData(Buffer.from(JSON.stringify(manifest)));
    const planner2 = new Worker(INGEST_QUEUES.plan, createIngestProcessors(deps).plan, {
      connection: createRedis(redis.url, 'consumer'),
      prefix,
      concurrency: 1,
      autorun: false,
    });
    planner2.on('error', () => {});
    const rss2 = rssSampler();
    const t1 = Date.now();
    const again = await service.create({
      source: { container: 'scale' },
      output: { container: 'scale-out2' },
    });
    const planned2 = new Promise<void>((resolve) => {
      planner2.on('completed', (job) => {
        if (job.name === INGEST_JOBS.plan) resolve();
      });
    });
    void planner2.run();
    await planned2;
    const s2 = (Date.now() - t1) / 1000;
    const rec2 = (await service.store.get(again.id))!;
    results.incremental = {
      seconds: s2,
      blobsPerSecond: Math.round(N / s2),
      indexMiB: idx.bytes / MiB,
      skipped: rec2.skipped,
      chunksQueued: rec2.planned,
      rss: rss2.stop(),
    };
    log(`incremental: ${JSON.stringify(results.incremental)}`);
    await planner2.close();
    await service.close();
    await emulator?.close();

    // 3. Redis commands per image ------------------------------------------------------------------
    if (!args['skip-commands']) {
      log(`making ${M} small images`);
      const photo = parityImages().find((i) => i.name === 'grace_hopper.jpg')!.path;
      const raw = await sharp(photo).resize(160, 160).raw().toBuffer({ resolveWithObject: true });
      const images = await Promise.all(
        Array.from({ length: M }, (_, i) =>
          sharp(raw.data, { raw: { width: 160, height: 160, channels: 3 } })
            .resize(64 + (i % 96), 64 + ((i * 7) % 96), { fit: 'fill' })
            .jpeg({ quality: 80 })
            .toBuffer(),
        ),
      );
      await uploadMany(
        blob.getContainerClient('cmds'),
        M,
        (i) => images[i]!,
        (i) => `img-${String(i).padStart(6, '0')}.jpg`,
      );
      const cmdPrefix = `{bench-${randomUUID().slice(0, 8)}}`;
      const cfg = loadConfig({
        REDIS_URL: redis.url,
        QUEUE_PREFIX: cmdPrefix,
        BLOB_CONNECTION_STRING: azurite.connectionString,
        LOG_LEVEL: 'warn',
        PORT: '0',
      });
      const model = {
        path: PARITY_MODEL,
        modelId: 'parity',
        randomWeights: false,
        preprocessor: DINOV2_PREPROCESSOR_CONFIG,
      };
      const worker = await startWorker({ config: cfg, model });
      const ingest = (await startIngestWorker({ config: cfg, worker }))!;
      const svc = new IngestionService({ redis: producer, config: cfg });
      const monitor = await RedisMonitor.start(redis.url);
      const planEvents = new QueueEvents(INGEST_QUEUES.plan, {
        connection: createRedis(redis.url, 'consumer'),
        prefix: cmdPrefix,
      });
      await planEvents.waitUntilReady();

      await monitor.take();
      let c0 = await probe.counters();
      let t = Date.now();
      const ing = await svc.create({ source: { container: 'cmds' }, output: { container: 'cmds-out' } });
      await new Promise<void>((resolve) => {
        planEvents.on('completed', (e) => {
          if (e.jobId === `${ing.id}-f0`) resolve();
        });
      });
      let secs = (Date.now() - t) / 1000;
      let c1 = await probe.counters();
      const ingMon = await monitor.take();
      const ingDelta = redisDelta(c0, c1, secs);
      const ingRec = (await svc.store.get(ing.id))!;
      const ingestion = {
        seconds: secs,
        imagesPerSecond: Math.round(ingRec.done / secs),
        done: ingRec.done,
        commands: ingDelta.commands,
        commandsPerImage: ingDelta.commands / M,
        clientRoundTripsPerImage: sumCounts(ingMon.client) / M,
        topClient: Object.entries(ingMon.client)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 8)
          .map(([name, n]) => [name.split('\n')[0]!.slice(0, 60), n]),
      };
      log(`ingestion: ${JSON.stringify(ingestion)}`);

      // The same images as one-image async jobs (what POST /v1/jobs does, once per image).
      const store = new JobStore(producer, cmdPrefix, cfg.JOB_TTL_S);
      const queue = new JobQueue(producer, { prefix: cmdPrefix, attempts: cfg.JOB_ATTEMPTS });
      const embedEvents = new QueueEvents(QUEUES.embed, {
        connection: createRedis(redis.url, 'consumer'),
        prefix: cmdPrefix,
      });
      await embedEvents.waitUntilReady();
      let completed = 0;
      const allDone = new Promise<void>((resolve) => {
        embedEvents.on('completed', () => {
          if (++completed === M) resolve();
        });
      });
      await monitor.take();
      c0 = await probe.counters();
      t = Date.now();
      for (let i = 0; i < M; i++) {
        const jobId = randomUUID();
        const createdAt = Date.now();
        await store.create({
          id: jobId,
          itemIds: [`img-${i}`],
          normalize: false,
          output: { type: 'inline' },
          createdAt,
        });
        await queue.add({
          jobId,
          images: [{ id: `img-${i}`, ref: { kind: 'base64', data: images[i]!.toString('base64') } }],
          normalize: false,
          output: { type: 'inline' },
          createdAt,
        });
      }
      await allDone;
      secs = (Date.now() - t) / 1000;
      c1 = await probe.counters();
      const jobMon = await monitor.take();
      const jobDelta = redisDelta(c0, c1, secs);
      const jobs = {
        seconds: secs,
        imagesPerSecond: Math.round(M / secs),
        commands: jobDelta.commands,
        commandsPerImage: jobDelta.commands / M,
        clientRoundTripsPerImage: sumCounts(jobMon.client) / M,
      };
      log(`per-image jobs: ${JSON.stringify(jobs)}`);
      results.commands = {
        ingestion,
        perImageJobs: jobs,
        ratio: jobs.commandsPerImage / ingestion.commandsPerImage,
        roundTripRatio: jobs.clientRoundTripsPerImage / ingestion.clientRoundTripsPerImage,
      };
      monitor.stop();
      await embedEvents.close();
      await planEvents.close();
      await queue.close();
      await svc.close();
      await ingest.close();
      await worker.close();
    }
    probe.close();
    producer.disconnect();
    consumer.disconnect();
  } finally {
    await azurite.dispose();
    await redis.stop();
  }
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  const p = results.plan as {
    seconds: number;
    rss: { growthMiB: number };
    redisUsedMemoryGrowthMiB: number;
    chunksQueued: number;
  };
  const inc = results.incremental as { seconds: number; rss: { growthMiB: number }; skipped: number };
  const c = results.commands as
    | {
        ingestion: { commandsPerImage: number; clientRoundTripsPerImage: number };
        perImageJobs: { commandsPerImage: number; clientRoundTripsPerImage: number };
        ratio: number;
        roundTripRatio: number;
      }
    | undefined;
  process.stdout.write(
    [
      '',
      '| check | result |',
      '| --- | --- |',
      `| plan ${N} blobs (all ${p.chunksQueued} chunks queued) | ${fmt(p.seconds)} s, planner RSS growth ${fmt(p.rss.growthMiB)} MiB, Redis +${fmt(p.redisUsedMemoryGrowthMiB)} MiB |`,
      `| plan again, all unchanged (index of ${N}) | ${fmt(inc.seconds)} s, RSS growth ${fmt(inc.rss.growthMiB)} MiB, ${inc.skipped} skipped |`,
      ...(c
        ? [
            `| Redis commands per image: ingestion vs one-image jobs | ${fmt(c.ingestion.commandsPerImage, 2)} vs ${fmt(c.perImageJobs.commandsPerImage, 1)} (${fmt(c.ratio, 0)}x fewer) |`,
            `| client round trips per image | ${fmt(c.ingestion.clientRoundTripsPerImage, 2)} vs ${fmt(c.perImageJobs.clientRoundTripsPerImage, 1)} (${fmt(c.roundTripRatio, 0)}x fewer) |`,
          ]
        : []),
      '',
    ].join('\n'),
  );
}

await main();
process.exit(0);
