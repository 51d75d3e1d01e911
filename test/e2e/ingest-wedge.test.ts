/**
 * Every ingestion ends (issue 14): each way an ingestion used to wedge ends in `failed` or `cancelled`,
 * releases its output, and a second ingestion into the same output then succeeds.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import type { Config } from '@embedpool/core/config';
import { type IngestionView, type IngestSettings, ingestJobIds } from '@embedpool/core/ingest';
import { freePort } from '@embedpool/testkit';
import { startWorker, type WorkerHandle } from '@embedpool/worker';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type IngestWorkerHandle, startIngestWorker } from '../../apps/worker/src/ingest';
import { runCli } from '../cli/run-cli';
import { type Azurite, startAzurite } from '../support/azurite';
import { parityModel, testConfig } from '../support/stack';
import {
  blobService,
  getJson,
  IngestEvents,
  type IngestStack,
  makeBlobs,
  postIngestion,
  readOutput,
  startIngestStack,
  type TestBlob,
  upload,
  WorkerChild,
} from './ingest-support';

const SOURCE = 'wedge-src';
const OUT = 'wedge-out';
// Two attempts with BullMQ's 1 s backoff: "longer than the retries" stays short.
const SETTINGS: Partial<IngestSettings> = {
  INGEST_CHUNK_SIZE: 4,
  INGEST_LIST_PAGE_SIZE: 4,
  INGEST_ATTEMPTS: 2,
  INGEST_CHUNK_CONCURRENCY: 1,
};

describe('every ingestion ends, and releases its output (Azurite, Redis, fixture model)', () => {
  let azurite: Azurite;
  let blob: BlobServiceClient;
  let blobs: TestBlob[];
  let stack: IngestStack;
  let events: IngestEvents;
  let worker: WorkerHandle;
  let workerConfig: Config;
  const attached: IngestWorkerHandle[] = [];
  const children: WorkerChild[] = [];

  beforeAll(async () => {
    azurite = await startAzurite();
    blob = blobService(azurite.connectionString);
    blobs = await makeBlobs(12);
    await upload(blob.getContainerClient(SOURCE), blobs);
    const config = testConfig({
      BLOB_CONNECTION_STRING: azurite.connectionString,
      LOG_LEVEL: 'silent',
      JOB_LOCK_MS: '1500',
    });
    // The API (with the storage account) here; ingest workers are attached per test with their own parts.
    stack = await startIngestStack(config, { worker: false, settings: SETTINGS });
    events = new IngestEvents(config.QUEUE_PREFIX);
    await events.ready();
    // A worker without a storage account runs no ingestion of its own: each test attaches one.
    workerConfig = { ...config, BLOB_CONNECTION_STRING: undefined };
    worker = await startWorker({ config: workerConfig, model: parityModel });
  });
  afterEach(async () => {
    for (const h of attached.splice(0)) await h.close();
    for (const c of children.splice(0)) await c.kill('SIGKILL');
  });
  afterAll(async () => {
    await events?.close();
    await worker?.close();
    await stack?.stop();
    await azurite?.dispose();
  });

  async function attach(
    opts: { modelId?: string; blob?: BlobServiceClient; settings?: Partial<IngestSettings> } = {},
  ): Promise<IngestWorkerHandle> {
    const h = await startIngestWorker({
      config: workerConfig,
      worker,
      blob: opts.blob ?? blob,
      ...(opts.modelId ? { modelId: opts.modelId } : {}),
      settings: { ...SETTINGS, ...opts.settings },
    });
    attached.push(h!);
    return h!;
  }
  async function detach(h: IngestWorkerHandle): Promise<void> {
    attached.splice(attached.indexOf(h), 1);
    await h.close();
  }

  const view = (id: string) => getJson(`${stack.url}/v1/ingestions/${id}`) as Promise<IngestionView>;
  async function start(prefix: string): Promise<string> {
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE },
      output: { container: OUT, prefix },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(202);
    return res.json.id as string;
  }
  async function cancel(id: string): Promise<IngestionView> {
    const res = await fetch(`${stack.url}/v1/ingestions/${id}`, { method: 'DELETE' });
    const body = (await res.json()) as IngestionView;
    expect(res.status, JSON.stringify(body)).toBe(202);
    return body;
  }
  /**
   * The next round-0 planner job to reach `event` (completed, delayed), with its id. Listened for before the
   * ingestion is posted: its planner may get there before the POST has answered.
   */
  function nextPlanner(event: 'completed' | 'delayed'): Promise<string> {
    return new Promise((resolve) => {
      const h = (e: { jobId: string }) => {
        if (e.jobId.endsWith('-p0')) {
          events.plan.off(event, h);
          resolve(e.jobId);
        }
      };
      events.plan.on(event, h);
    });
  }
  /** The second ingestion into the same output: accepted (the lock was released) and completed. */
  async function secondSucceeds(prefix: string): Promise<IngestionView> {
    const h = attached.length ? attached[0]! : await attach();
    await h.planWorker.resume();
    h.chunkWorker.resume();
    const id = await start(prefix);
    const v = await events.final(stack.url, id);
    expect(v.state).toBe('completed');
    expect(v.counts.done + v.counts.skipped).toBe(blobs.length);
    expect(v.counts.failed).toBe(0);
    const out = await readOutput(blob.getContainerClient(OUT), prefix);
    expect(out.manifest.index.vectors).toBe(blobs.length);
    return v;
  }

  it('model mismatch on an existing output: failed OUTPUT_MODEL_MISMATCH, output released', async () => {
    const first = await attach();
    const seed = await events.final(stack.url, await start('mismatch'));
    expect(seed.state).toBe('completed');
    await detach(first);

    await attach({ modelId: 'another-model' });
    // As a user runs it: --watch ends, non-zero, with the reason on one line.
    const cli = await runCli(
      ['ingest', '--container', SOURCE, '--output', `${OUT}/mismatch`, '--watch', '--interval', '200'],
      { EMBEDPOOL_URL: stack.url },
    );
    expect(cli.code, cli.stderr).toBe(1);
    expect(cli.stderr).toMatch(
      /^embedpool: ingestion ing-\S+ failed: OUTPUT_MODEL_MISMATCH: output wedge-out\/mismatch holds vectors of model parity/m,
    );
    const id = /^(ing-\S+) failed: /.exec(cli.stdout)![1]!;
    const v = await view(id);
    expect(v.state).toBe('failed');
    expect(v.error?.code).toBe('OUTPUT_MODEL_MISMATCH');
    expect(v.error?.message).toMatch(/holds vectors of model parity; this worker runs another-model/);
    // Cancel of a final ingestion says so instead of pretending.
    const again = await fetch(`${stack.url}/v1/ingestions/${id}`, { method: 'DELETE' });
    expect(again.status).toBe(400);
    expect(((await again.json()) as { error: { message: string } }).error.message).toMatch(/already failed/);
    await detach(attached[0]!);

    const ok = await secondSucceeds('mismatch');
    expect(ok.counts.skipped).toBe(blobs.length);
  });

  it('storage unreachable for longer than the retries: failed with the storage code, retries shown', async () => {
    const port = await freePort();
    // Loopback port with nobody listening; the SDK tries once per attempt.
    const dead = BlobServiceClient.fromConnectionString(
      azurite.connectionString.replace(
        /BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/,
        `BlobEndpoint=http://127.0.0.1:${port}`,
      ),
      { retryOptions: { maxTries: 1, retryDelayInMs: 10 } },
    );
    const h = await attach({ blob: dead });
    const delayed = nextPlanner('delayed');
    const id = await start('unreachable');
    expect(await delayed).toBe(ingestJobIds.plan(id, 0));
    // Hold the second attempt (due in 1 s) while the state is read.
    await h.planWorker.pause(true);
    const during = await view(id);
    expect(during.state).toBe('queued');
    expect(during.retrying).toMatchObject({ step: 'planning', attempt: 1, attempts: 2 });
    expect(during.retrying?.code).toBe('STORAGE_ECONNREFUSED');
    h.planWorker.resume();

    const v = await events.final(stack.url, id);
    expect(v.state).toBe('failed');
    expect(v.error?.code).toBe('STORAGE_ECONNREFUSED');
    expect(v.retrying).toBeUndefined();
    await detach(attached[0]!);

    await secondSucceeds('unreachable');
  });

  it('output container deleted mid-run: failed STORAGE_ContainerNotFound, then the output works again', async () => {
    const h = await attach({ settings: { INGEST_CHUNK_SIZE: 2 } });
    await h.chunkWorker.pause();
    const planned = nextPlanner('completed');
    const id = await start('deleted');
    expect(await planned).toBe(ingestJobIds.plan(id, 0));
    // One chunk lands in the output, then the container goes.
    const one = events.chunksCompleted(1);
    h.chunkWorker.resume();
    await one;
    await h.chunkWorker.pause();
    await blob.getContainerClient(OUT).delete();
    h.chunkWorker.resume();

    const v = await events.final(stack.url, id);
    expect(v.state).toBe('failed');
    expect(v.error?.code).toBe('STORAGE_ContainerNotFound');
    // The first chunk that hit the wall stopped the run: the rest were dropped, not tried into it.
    expect(v.counts.failed).toBe(2);
    expect(v.counts.cancelled).toBeGreaterThan(0);
    expect(v.counts.done + v.counts.failed + v.counts.cancelled).toBe(blobs.length);

    await secondSucceeds('deleted');
  });

  it('cancel while queued: cancelled without touching the output', async () => {
    const h = await attach();
    await h.planWorker.pause();
    const id = await start('cancel-queued');
    expect((await cancel(id)).state).toBe('cancelling');
    await h.planWorker.resume();
    const v = await events.final(stack.url, id);
    expect(v.state).toBe('cancelled');
    expect(v.counts.done).toBe(0);
    expect(await blob.getContainerClient(OUT).getBlobClient('cancel-queued/_manifest.json').exists()).toBe(
      false,
    );
    await secondSucceeds('cancel-queued');
  });

  it('cancel while planning (the planner parked mid-listing): cancelled', async () => {
    const h = await attach({
      settings: {
        INGEST_CHUNK_SIZE: 2,
        INGEST_LIST_PAGE_SIZE: 2,
        INGEST_MAX_QUEUED_CHUNKS: 1,
        INGEST_PLAN_PARK_MS: 600_000,
      },
    });
    await h.chunkWorker.pause();
    const parked = nextPlanner('delayed');
    const id = await start('cancel-planning');
    expect(await parked).toBe(ingestJobIds.plan(id, 0));
    const mid = await view(id);
    expect(mid.state).toBe('running');
    expect(mid.listing.done).toBe(false);
    expect((await cancel(id)).state).toBe('cancelling');
    h.chunkWorker.resume();
    const v = await events.final(stack.url, id);
    expect(v.state).toBe('cancelled');
    expect(v.listing.done).toBe(true);
    expect(v.counts.done + v.counts.cancelled).toBe(v.counts.discovered);
    expect(v.counts.discovered).toBeLessThan(blobs.length);
    await secondSucceeds('cancel-planning');
  });

  it('cancel while running: cancelled, what was done is in the manifest and not embedded again', async () => {
    const h = await attach({ settings: { INGEST_CHUNK_SIZE: 2 } });
    const one = events.chunksCompleted(1);
    const id = await start('cancel-running');
    await one;
    // Held between chunks, so the cancel lands while chunks are still queued.
    await h.chunkWorker.pause();
    expect((await cancel(id)).state).toBe('cancelling');
    h.chunkWorker.resume();
    const v = await events.final(stack.url, id);
    expect(v.state).toBe('cancelled');
    expect(v.counts.done).toBeGreaterThanOrEqual(2);
    expect(v.counts.done).toBeLessThan(blobs.length);
    const out = await readOutput(blob.getContainerClient(OUT), 'cancel-running');
    expect(out.manifest.runs[0]).toMatchObject({ state: 'cancelled', counts: { embedded: v.counts.done } });
    const second = await secondSucceeds('cancel-running');
    expect(second.counts.skipped).toBe(v.counts.done);
  });

  it('cancel while finalizing: cancelled, with the round recorded', async () => {
    const h = await attach();
    await h.chunkWorker.pause();
    const planned = nextPlanner('completed');
    const id = await start('cancel-finalizing');
    expect(await planned).toBe(ingestJobIds.plan(id, 0));
    await h.planWorker.pause();
    const all = events.chunksCompleted(blobs.length / 4);
    h.chunkWorker.resume();
    await all;
    expect((await view(id)).state).toBe('finalizing');
    expect((await cancel(id)).state).toBe('finalizing');
    h.planWorker.resume();
    const v = await events.final(stack.url, id);
    expect(v.state).toBe('cancelled');
    expect(v.counts.done).toBe(blobs.length);
    const out = await readOutput(blob.getContainerClient(OUT), 'cancel-finalizing');
    expect(out.manifest.runs[0]?.state).toBe('cancelled');
    const second = await secondSucceeds('cancel-finalizing');
    expect(second.counts.skipped).toBe(blobs.length);
  });

  it('worker killed during finalize: another worker finishes the round exactly once', async () => {
    // The first worker reaches storage through this loopback proxy, which holds the finalize's first
    // request (its read of the manifest; the planner's was the first such read): the worker is then killed
    // while it is certainly inside the finalize.
    let manifestReads = 0;
    let held: http.ServerResponse | undefined;
    let reached!: () => void;
    const inFinalize = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const proxy = http.createServer((req, res) => {
      if (
        req.method === 'GET' &&
        req.url?.includes('killed-finalize/_manifest.json') &&
        ++manifestReads === 2
      ) {
        held = res;
        reached();
        return;
      }
      const up = http.request(
        { host: '127.0.0.1', port: azurite.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const proxied = azurite.connectionString.replace(
      /BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/,
      `BlobEndpoint=http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    );
    const env = {
      QUEUE_PREFIX: stack.config.QUEUE_PREFIX,
      JOB_LOCK_MS: '1500',
      INGEST_CHUNK_SIZE: '4',
      INGEST_CHUNK_CONCURRENCY: '2',
    };
    try {
      const a = new WorkerChild({ ...env, BLOB_CONNECTION_STRING: proxied });
      children.push(a);
      await a.waitForLog((l) => l.msg === 'ingest worker started');
      const id = await start('killed-finalize');
      await inFinalize;
      expect((await view(id)).state).toBe('finalizing');
      await a.kill('SIGKILL');
      held?.destroy();

      const b = new WorkerChild({ ...env, BLOB_CONNECTION_STRING: azurite.connectionString });
      children.push(b);
      const v = await events.final(stack.url, id);
      expect(v.state).toBe('completed');
      const out = await readOutput(blob.getContainerClient(OUT), 'killed-finalize');
      expect(out.manifest.runs).toHaveLength(1);
      expect(out.manifest.counts).toMatchObject({ rows: blobs.length, liveRows: blobs.length });
      for (const c of children.splice(0)) await c.kill('SIGKILL');
      const second = await secondSucceeds('killed-finalize');
      expect(second.counts.skipped).toBe(blobs.length);
    } finally {
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
  });
});
