import type { LiveWorker } from '../queue/worker-registry';
import { desiredWorkers } from './desired-workers';

/**
 * Job states that still need a worker: queued, running, or due later (retries, parked planners). Not
 * `paused`: an operator paused that queue, so no worker would take its jobs anyway.
 */
export const PENDING_STATES = ['waiting', 'active', 'delayed', 'prioritized'] as const;

export interface PoolSpec {
  name: string;
  /** Images/s a worker of this pool is assumed to do before one has measured it. */
  rate?: number;
}

export interface PoolDemand {
  pool: string;
  workers: number;
  rate: number;
  desired: number;
}

/**
 * Work every worker drains, in images: sync and async embed jobs (their image counts, from the backlog
 * hash) plus ingestion chunks (queued or running chunks x INGEST_CHUNK_SIZE, an upper bound: a listing's
 * last chunk may be smaller). Planners, finalizers and callback deliveries carry no images but need a
 * worker all the same: `pendingJobs` counts them with everything else, so a pool at zero wakes for them.
 */
export function fleetBacklog(input: {
  embedImages: number;
  /** Jobs by queue and state (BullMQ's getJobCounts). */
  counts: Record<string, Record<string, number>>;
  chunkQueue: string;
  chunkSize: number;
}): { images: number; pendingJobs: number } {
  let pendingJobs = 0;
  let chunks = 0;
  for (const [queue, byState] of Object.entries(input.counts)) {
    for (const state of PENDING_STATES) {
      const n = byState[state] ?? 0;
      pendingJobs += n;
      if (queue === input.chunkQueue) chunks += n;
    }
  }
  return { images: input.embedImages + chunks * input.chunkSize, pendingJobs };
}

/**
 * Desired workers per pool. Every pool drains the same queues, so each is sized as if it alone drained the
 * backlog at its own measured rate (a GPU pool needs fewer replicas than a CPU pool for the same work);
 * the pools' own min/max replica counts (KEDA, scale-set profiles) bound them. Pools reported: the
 * configured ones, this process's own, and any a live worker belongs to.
 */
export function poolDemands(input: {
  pools: readonly PoolSpec[];
  live: readonly Pick<LiveWorker, 'imagesPerSecond' | 'pool'>[];
  backlogImages: number;
  pendingJobs: number;
  targetDrainSeconds: number;
  min: number;
  max: number;
  defaultRate: number;
}): PoolDemand[] {
  const specs = new Map<string, PoolSpec>();
  for (const p of input.pools) specs.set(p.name, p);
  for (const w of input.live) if (!specs.has(w.pool)) specs.set(w.pool, { name: w.pool });
  return [...specs.values()].map((spec) => {
    const members = input.live.filter((w) => w.pool === spec.name);
    const { desired, rate } = desiredWorkers({
      backlogImages: input.backlogImages,
      workerRates: members.map((w) => w.imagesPerSecond),
      targetDrainSeconds: input.targetDrainSeconds,
      min: input.min,
      max: input.max,
      defaultRate: spec.rate ?? input.defaultRate,
    });
    // Work without images (a planner still listing, a callback) still needs one worker to run it.
    const woken = input.pendingJobs > 0 ? Math.min(input.max, Math.max(desired, 1)) : desired;
    return { pool: spec.name, workers: members.length, rate, desired: woken };
  });
}
