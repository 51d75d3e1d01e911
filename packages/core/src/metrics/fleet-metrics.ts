import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import type { Config } from '../config';
import { backlogImages } from '../queue/backlog';
import { QUEUES } from '../queue/names';
import { liveWorkers } from '../queue/worker-registry';
import { desiredWorkers } from './desired-workers';

const STATES = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'paused'] as const;

interface Snapshot {
  counts: Record<string, Record<string, number>>;
  backlog: { jobs: number; images: number };
  workers: number;
  desired: number;
  rate: number;
}

/**
 * Fleet-wide series read from Redis at scrape time: queue depth by state, the backlog in images, live
 * workers, and embedpool_desired_workers for the autoscaler. Every process that exposes /metrics
 * registers them (once per registry), so any replica can be scraped for the same pool-wide values.
 */
export function registerFleetMetrics(
  registry: Registry,
  opts: { redis: Redis; config: Config },
): { close(): Promise<void> } {
  if (registry.getSingleMetric('embedpool_desired_workers')) return { close: async () => {} };
  const { redis, config } = opts;
  const prefix = config.QUEUE_PREFIX;
  const queues = [QUEUES.embed, QUEUES.deliveries].map(
    (name) => new Queue(name, { connection: redis, prefix }),
  );
  for (const q of queues) q.on('error', () => {});

  // One Redis read per scrape, shared by the four gauges.
  let pending: Promise<Snapshot> | undefined;
  const snapshot = () => {
    pending ??= read().finally(() => {
      setTimeout(() => {
        pending = undefined;
      }, 250).unref();
    });
    return pending;
  };
  const read = async (): Promise<Snapshot> => {
    const counts: Snapshot['counts'] = {};
    for (const q of queues) counts[q.name] = await q.getJobCounts(...STATES);
    const backlog = await backlogImages(redis, prefix);
    const live = await liveWorkers(redis, prefix, config.READY_WORKER_TTL_S);
    const { desired, rate } = desiredWorkers({
      backlogImages: backlog.images,
      workerRates: live.map((w) => w.imagesPerSecond),
      targetDrainSeconds: config.AUTOSCALE_TARGET_DRAIN_S,
      min: config.AUTOSCALE_MIN_WORKERS,
      max: config.AUTOSCALE_MAX_WORKERS,
      defaultRate: config.AUTOSCALE_DEFAULT_RATE,
    });
    return { counts, backlog, workers: live.length, desired, rate };
  };
  const registers = [registry];
  new Gauge({
    name: 'embedpool_queue_jobs',
    help: 'Jobs in each BullMQ queue by state.',
    labelNames: ['queue', 'state'] as const,
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (!s) return;
      for (const [queue, byState] of Object.entries(s.counts)) {
        for (const [state, n] of Object.entries(byState)) this.set({ queue, state }, n);
      }
    },
  });
  new Gauge({
    name: 'embedpool_backlog_images',
    help: 'Images queued or running, across every job kind (what the fleet still has to embed).',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.backlog.images);
    },
  });
  new Gauge({
    name: 'embedpool_live_workers',
    help: 'Workers that sent a heartbeat within READY_WORKER_TTL_S.',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.workers);
    },
  });
  new Gauge({
    name: 'embedpool_worker_images_per_second',
    help: 'Mean measured throughput of a live worker (images/s), the rate the desired-workers formula uses.',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.rate);
    },
  });
  new Gauge({
    name: 'embedpool_desired_workers',
    help: 'clamp(ceil(backlog_images / (images_per_second_per_worker x AUTOSCALE_TARGET_DRAIN_S)), MIN, MAX).',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.desired);
    },
  });
  return { close: async () => void (await Promise.all(queues.map((q) => q.close().catch(() => {})))) };
}
