import { readFileSync } from 'node:fs';
import { parityImages } from '@embedpool/testkit';
import { startMetricsServer, startWorker } from '@embedpool/worker';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { JobEvents, parityModel, postJson, startStack, testConfig, waitJobFinal } from '../support/stack';

const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');
const TOKEN = 'dashboard-token-0123456789';

/** Value of one series in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [series, value] = line.split(' ');
    if (series === `${name}${labels}` || (!labels && series === name)) return Number(value);
  }
  return undefined;
}

const scrape = async (url: string) => (await fetch(`${url}/metrics`)).text();

describe('metrics that drive autoscaling', () => {
  it('exports the documented series on API and worker; desired workers rises with a backlog and falls as it drains', async () => {
    const config = testConfig({
      AUTOSCALE_TARGET_DRAIN_S: '1',
      AUTOSCALE_DEFAULT_RATE: '1',
      AUTOSCALE_MIN_WORKERS: '1',
      AUTOSCALE_MAX_WORKERS: '50',
      DASHBOARD_TOKEN: TOKEN,
    });
    const stack = await startStack(config, { worker: false });
    const events = new JobEvents(config.QUEUE_PREFIX);
    await events.ready();
    try {
      const job = await postJson(`${stack.api.url}/v1/jobs`, {
        images: Array.from({ length: 20 }, (_, i) => ({ base64: b64(images[i % images.length]!.path) })),
      });
      expect(job.status).toBe(202);
      const before = await scrape(stack.api.url);
      expect(sample(before, 'embedpool_backlog_images')).toBe(20);
      expect(sample(before, 'embedpool_queue_jobs', '{queue="embed",state="prioritized"}')).toBe(1);
      expect(sample(before, 'embedpool_live_workers', '{pool="default"}')).toBe(0);
      // 20 images at the default 1 img/s within 1 s: 20 workers.
      expect(sample(before, 'embedpool_desired_workers', '{pool="default"}')).toBe(20);
      expect(
        sample(before, 'embedpool_http_requests_total', '{route="/v1/jobs",method="POST",status="202"}'),
      ).toBe(1);
      expect(before).toMatch(/embedpool_event_loop_lag_seconds\{quantile="0.99"\} [0-9.e-]+/);

      // No worker yet, so the job cannot complete before we listen.
      const completed = events.next(job.json.id, ['completed']);
      const registry = new Registry();
      const worker = await startWorker({ config, registry, model: parityModel });
      const server = await startMetricsServer(registry, '127.0.0.1', 0);
      try {
        await waitJobFinal(stack.api.url, events, job.json.id);
        await completed;
        const after = await scrape(stack.api.url);
        expect(sample(after, 'embedpool_backlog_images')).toBe(0);
        expect(sample(after, 'embedpool_desired_workers', '{pool="default"}')).toBe(1);
        expect(sample(after, 'embedpool_live_workers', '{pool="default"}')).toBe(1);

        const w = await scrape(server.url);
        expect(sample(w, 'embedpool_images_processed_total', '{status="ok",reason=""}')).toBe(20);
        expect(sample(w, 'embedpool_batch_size_count')).toBeGreaterThan(0);
        expect(sample(w, 'embedpool_batch_size_sum')).toBe(20);
        expect(sample(w, 'embedpool_model_runs_total')).toBe(sample(w, 'embedpool_batch_size_count'));
        for (const stage of ['queue_wait', 'decode', 'inference', 'batch_wait', 'end_to_end']) {
          expect(sample(w, 'embedpool_stage_seconds_count', `{stage="${stage}"}`)).toBeGreaterThan(0);
        }
        const busy = sample(w, 'embedpool_worker_busy_ratio')!;
        expect(busy).toBeGreaterThanOrEqual(0);
        expect(busy).toBeLessThanOrEqual(1);
        expect(w).toMatch(
          /embedpool_model_info\{model="parity",model_id="parity",provider="cpu",dim="192",random_weights="false",precision="float32"\} 1/,
        );
        expect(w).toMatch(/embedpool_worker_plan_info\{[^}]*batch_size="16"[^}]*\} 1/);
        expect(sample(w, 'embedpool_desired_workers', '{pool="default"}')).toBe(1);
        expect(w).toMatch(/embedpool_event_loop_lag_seconds\{quantile="0.99"\}/);
        expect(w).toMatch(/process_resident_memory_bytes \d+/);
      } finally {
        await server.close();
        await worker.close();
      }
    } finally {
      await events.close();
      await stack.stop();
    }
  });

  it('keeps the queue dashboard behind its own token', async () => {
    const stack = await startStack(testConfig({ DASHBOARD_TOKEN: TOKEN }), { worker: false });
    try {
      expect((await fetch(`${stack.api.url}/admin/queues`)).status).toBe(401);
      const wrong = await fetch(`${stack.api.url}/admin/queues`, {
        headers: { authorization: 'Bearer nope-nope-nope-nope' },
      });
      expect(wrong.status).toBe(401);
      const ok = await fetch(`${stack.api.url}/admin/queues`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/<html/i);
      const api = await fetch(`${stack.api.url}/admin/queues/api/queues`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(((await api.json()) as { queues: { name: string }[] }).queues.map((q) => q.name).sort()).toEqual(
        // Every queue of the job catalogue (deliveries too, whether callbacks are configured or not).
        ['deliveries', 'embed', 'ingest-chunks', 'ingest-plan'],
      );
    } finally {
      await stack.stop();
    }
  });

  it('has no dashboard at all without a token', async () => {
    const stack = await startStack(testConfig(), { worker: false });
    try {
      expect((await fetch(`${stack.api.url}/admin/queues`)).status).toBe(404);
    } finally {
      await stack.stop();
    }
  });
});
