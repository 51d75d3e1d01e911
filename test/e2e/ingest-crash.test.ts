import type { BlobServiceClient } from '@azure/storage-blob';
import type { IngestionView } from '@embedpool/core/ingest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  getJson,
  type IngestEvents,
  type IngestFixture,
  type IngestStack,
  makeBlobs,
  postIngestion,
  readOutput,
  startIngestFixture,
  type TestBlob,
  upload,
  WorkerChild,
} from './ingest-support';

const SOURCE = 'crashy';

/** Exactly one row per blob, in shards that are exactly the manifest's, and counts that add up. */
async function expectExactlyOnce(
  blob: BlobServiceClient,
  prefix: string,
  blobs: TestBlob[],
  v: IngestionView,
) {
  expect(v.state).toBe('completed');
  expect(v.counts).toMatchObject({ discovered: blobs.length, done: blobs.length, failed: 0, queued: 0 });
  const out = await readOutput(blob.getContainerClient('vectors'), prefix);
  expect(out.listedShards.sort()).toEqual(out.manifest.shards.map((s) => `${prefix}/${s.name}`).sort());
  expect(new Set(out.manifest.shards.map((s) => s.chunk)).size).toBe(out.manifest.shards.length);
  const names = [...out.shards.values()].flat().map((r) => r.name);
  expect(names).toHaveLength(blobs.length);
  expect(new Set(names)).toEqual(new Set(blobs.map((b) => b.name)));
  expect(out.manifest.counts).toMatchObject({ rows: blobs.length, liveRows: blobs.length });
}

describe('ingestion survives crashes (worker child processes killed with SIGKILL)', () => {
  let fx: IngestFixture;
  let blob: BlobServiceClient;
  let blobs: TestBlob[];
  let stack: IngestStack;
  let events: IngestEvents;
  const children: WorkerChild[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    blobs = await makeBlobs(160);
    // The API only: the work happens in the child workers.
    fx = await startIngestFixture({
      env: { JOB_LOCK_MS: '1500' },
      worker: false,
      seed: (b) => upload(b.getContainerClient(SOURCE), blobs),
    });
    ({ blob, stack, events } = fx);
    env = {
      QUEUE_PREFIX: fx.config.QUEUE_PREFIX,
      BLOB_CONNECTION_STRING: fx.azurite.connectionString,
      JOB_LOCK_MS: '1500',
      INGEST_CHUNK_CONCURRENCY: '2',
    };
  });
  // Each test's workers go with it: a survivor would take the next test's planner with its own settings.
  afterEach(async () => {
    for (const c of children.splice(0)) await c.kill('SIGKILL');
  });
  afterAll(async () => {
    await fx?.close();
  });

  async function worker(extra: Record<string, string>): Promise<WorkerChild> {
    const w = new WorkerChild({ ...env, ...extra });
    children.push(w);
    await w.waitForLog((l) => l.msg === 'ingest worker started');
    return w;
  }

  it('a worker killed mid-run: another finishes it with exactly one row per blob and no duplicate shard', async () => {
    const settings = { INGEST_CHUNK_SIZE: '16', INGEST_LIST_PAGE_SIZE: '40' };
    const first = await worker(settings);
    const someDone = events.chunksCompleted(3);
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE },
      output: { container: 'vectors', prefix: 'killed-worker' },
    });
    await someDone;
    await first.kill('SIGKILL');
    const mid = (await getJson(`${stack.url}/v1/ingestions/${res.json.id}`)) as IngestionView;
    expect(mid.state).toBe('running');
    expect(mid.counts.done).toBeLessThan(blobs.length);

    await worker(settings);
    const v = await events.final(stack.url, res.json.id);
    await expectExactlyOnce(blob, 'killed-worker', blobs, v);
    expect(v.listing.chunksPlanned).toBe(10);
  });

  it('a planner killed mid-listing resumes from its checkpoint instead of listing from the start', async () => {
    // Pages of 10, chunks of 10, at most 2 queued: the planner lists in step with the chunks.
    const settings = {
      INGEST_CHUNK_SIZE: '10',
      INGEST_LIST_PAGE_SIZE: '10',
      INGEST_MAX_QUEUED_CHUNKS: '2',
      INGEST_PLAN_PARK_MS: '300',
    };
    const first = await worker(settings);
    const watch = events.watchAdded();
    const res = await postIngestion(stack.url, {
      source: { container: SOURCE },
      output: { container: 'vectors', prefix: 'killed-planner' },
    });
    const id = res.json.id as string;
    await watch.until(`${id}-c00000008`);
    await first.kill('SIGKILL');
    const mid = (await getJson(`${stack.url}/v1/ingestions/${id}`)) as IngestionView;
    expect(mid.listing.done).toBe(false);
    const callsBefore = mid.listing.listCalls;
    expect(callsBefore).toBeGreaterThanOrEqual(8);

    await worker(settings);
    const v = await events.final(stack.url, id);
    watch.stop();
    await expectExactlyOnce(blob, 'killed-planner', blobs, v);
    // 16 pages of 10 (+1 empty one if the service ends on a marker) and at most one page listed again.
    // Listing from the start again would have made at least 16 + 8 calls.
    expect(v.listing.listCalls).toBeLessThanOrEqual(18);
    expect(v.listing.chunksPlanned).toBe(16);
    // The first page's chunk was queued once, never again.
    expect(watch.added.get(`${id}-c00000000`)).toBe(1);
    expect(watch.added.size).toBe(16);
  });
});
