import type { Redis } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import type { Config } from '../config';
import { INGEST_QUEUES } from '../ingest/names';
import { backlogImages } from '../queue/backlog';
import { QUEUE_NAMES } from '../queue/catalogue';
import { JobProducer } from '../queue/producer';
import { liveWorkers } from '../queue/worker-registry';
import { fleetBacklog, type PoolDemand, poolDemands } from './fleet-backlog';

const STATES = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'paused'] as const;

/**
 * Every queue a worker drains, from the job catalogue: embed (/score, /v1/jobs), callback deliveries,
 * ingestion planners and chunks, and any queue a new catalogue entry adds.
 */
export const DRAINED_QUEUES = QUEUE_NAMES;

interface Snapshot {
  counts: Record<string, Record<string, number>>;
  backlog: { images: number; pendingJobs: number };
  pools: PoolDemand[];
}

/**
 * Fleet-wide series read from Redis at scrape time: queue depth by state, the backlog in images, live
 * workers, and embedpool_desired_workers{pool} for the autoscaler. Every process that exposes /metrics
 * registers them (once per registry), so any replica (the API included, which runs while a pool is at
 * zero) can be scraped for the same fleet-wide values. (Long: one gauge per series, all reading the one
 * snapshot defined at the top.)
 */
export function registerFleetMetrics(
  registry: Registry,
  opts: { redis: Redis; config: Config },
): { close(): Promise<void> } {
  if (registry.getSingleMetric('embedpool_desired_workers')) return { close: async () => {} };
  const { redis, config } = opts;
  const prefix = config.QUEUE_PREFIX;
  // Read-only use (job counts): a producer of its own, so closing it never closes another's queues.
  const producer = new JobProducer(redis, { prefix });
  const queues = producer.queues();
  const pools = [...config.AUTOSCALE_POOLS];
  if (pools.length === 0) pools.push({ name: 'default' });
  if (!pools.some((p) => p.name === config.WORKER_POOL)) pools.push({ name: config.WORKER_POOL });

  // One Redis read per scrape, shared by the gauges: prom-client starts every collect() of a scrape in
  // the same tick, so they all join the read in flight. None outlives it: the next scrape reads afresh
  // (a scrape right after an ingestion is queued must see it).
  let pending: Promise<Snapshot> | undefined;
  const snapshot = () => {
    pending ??= read().finally(() => {
      pending = undefined;
    });
    return pending;
  };
  const read = async (): Promise<Snapshot> => {
    const counts: Snapshot['counts'] = {};
    for (const q of queues) counts[q.name] = await q.getJobCounts(...STATES);
    const embed = await backlogImages(redis, prefix);
    const backlog = fleetBacklog({
      embedImages: embed.images,
      counts,
      chunkQueue: INGEST_QUEUES.chunks,
      chunkSize: config.INGEST_CHUNK_SIZE,
    });
    const live = await liveWorkers(redis, prefix, config.READY_WORKER_TTL_S);
    const demands = poolDemands({
      pools,
      live,
      backlogImages: backlog.images,
      pendingJobs: backlog.pendingJobs,
      targetDrainSeconds: config.AUTOSCALE_TARGET_DRAIN_S,
      min: config.AUTOSCALE_MIN_WORKERS,
      max: config.AUTOSCALE_MAX_WORKERS,
      defaultRate: config.AUTOSCALE_DEFAULT_RATE,
    });
    return { counts, backlog, pools: demands };
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
    help: 'Images queued or running in every queue a worker drains: /score, /v1/jobs, ingestion chunks.',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.backlog.images);
    },
  });
  new Gauge({
    name: 'embedpool_pending_jobs',
    help: 'Jobs queued, running or due later in every queue a worker drains (planners and callbacks included).',
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) this.set(s.backlog.pendingJobs);
    },
  });
  new Gauge({
    name: 'embedpool_live_workers',
    help: 'Workers of each pool that sent a heartbeat within READY_WORKER_TTL_S.',
    labelNames: ['pool'] as const,
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) for (const p of s.pools) this.set({ pool: p.pool }, p.workers);
    },
  });
  new Gauge({
    name: 'embedpool_worker_images_per_second',
    help: 'Mean measured throughput of a live worker of each pool (images/s), the rate the formula uses.',
    labelNames: ['pool'] as const,
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) for (const p of s.pools) this.set({ pool: p.pool }, p.rate);
    },
  });
  new Gauge({
    name: 'embedpool_desired_workers',
    help: 'Per pool: clamp(ceil(backlog_images / (pool images/s x AUTOSCALE_TARGET_DRAIN_S)), MIN, MAX), >= 1 while any job waits.',
    labelNames: ['pool'] as const,
    registers,
    async collect() {
      const s = await snapshot().catch(() => undefined);
      if (s) for (const p of s.pools) this.set({ pool: p.pool }, p.desired);
    },
  });
  return { close: () => producer.close() };
}
