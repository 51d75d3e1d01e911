import { startApi } from '@embedpool/api';
import { startWorker } from '@embedpool/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../support/azurite';
import { cleanPrefix, parityModel, testConfig } from '../support/stack';
import { blobService, IngestEvents, makeBlobs, postIngestion, upload } from './ingest-support';

/** Value of one series in Prometheus text, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    const at = line.lastIndexOf(' ');
    if (!line.startsWith('#') && line.slice(0, at) === series) return Number(line.slice(at + 1));
  }
  return undefined;
}

/**
 * Scale from zero for bulk ingestion: with AUTOSCALE_MIN_WORKERS=0 and no worker alive, the API (which
 * runs while the pool is at zero) must ask for a worker as soon as an ingestion is queued, although its
 * planner has not listed a single image yet, and ask for none once the ingestion is done.
 */
describe('autoscaling wakes a pool at zero for an ingestion', () => {
  let azurite: Azurite;
  beforeAll(async () => {
    azurite = await startAzurite();
    await upload(blobService(azurite.connectionString).getContainerClient('photos'), await makeBlobs(12));
  });
  afterAll(async () => {
    await azurite?.dispose();
  });

  it('desired workers: 0 before, >= 1 on the first scrape after the ingestion is queued, 0 once drained', async () => {
    const config = testConfig({
      BLOB_CONNECTION_STRING: azurite.connectionString,
      AUTOSCALE_MIN_WORKERS: '0',
      AUTOSCALE_POOLS: 'cpu,gpu:40',
      WORKER_POOL: 'cpu',
      INGEST_CHUNK_SIZE: '4',
    });
    const api = await startApi({ config });
    const events = new IngestEvents(config.QUEUE_PREFIX);
    await events.ready();
    let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
    const scrape = async () => (await fetch(`${api.url}/metrics`)).text();
    try {
      const idle = await scrape();
      expect(sample(idle, 'embedpool_desired_workers{pool="cpu"}')).toBe(0);
      expect(sample(idle, 'embedpool_desired_workers{pool="gpu"}')).toBe(0);
      expect(sample(idle, 'embedpool_pending_jobs')).toBe(0);

      const res = await postIngestion(api.url, {
        source: { container: 'photos' },
        output: { container: 'vectors', prefix: 'autoscale' },
      });
      expect(res.status).toBe(202);
      const queued = await scrape();
      expect(sample(queued, 'embedpool_queue_jobs{queue="ingest-plan",state="waiting"}')).toBe(1);
      expect(sample(queued, 'embedpool_pending_jobs')).toBe(1);
      expect(sample(queued, 'embedpool_live_workers{pool="cpu"}')).toBe(0);
      // Both pools drain the same queues, so each is woken.
      expect(sample(queued, 'embedpool_desired_workers{pool="cpu"}')).toBeGreaterThanOrEqual(1);
      expect(sample(queued, 'embedpool_desired_workers{pool="gpu"}')).toBeGreaterThanOrEqual(1);

      const finished = events.final(api.url, res.json.id);
      worker = await startWorker({ config, model: parityModel });
      const view = await finished;
      expect(view.state).toBe('completed');
      expect(view.counts.done).toBe(12);
      const drained = await scrape();
      expect(sample(drained, 'embedpool_backlog_images')).toBe(0);
      expect(sample(drained, 'embedpool_pending_jobs')).toBe(0);
      expect(sample(drained, 'embedpool_live_workers{pool="cpu"}')).toBe(1);
      expect(sample(drained, 'embedpool_desired_workers{pool="cpu"}')).toBe(0);
      expect(sample(drained, 'embedpool_desired_workers{pool="gpu"}')).toBe(0);
    } finally {
      await events.close();
      await worker?.close();
      await api.close();
      await cleanPrefix(config.QUEUE_PREFIX);
    }
  });
});
