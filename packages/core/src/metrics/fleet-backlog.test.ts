import { describe, expect, it } from 'vitest';
import { fleetBacklog, poolDemands } from './fleet-backlog';

const none = { waiting: 0, active: 0, delayed: 0, prioritized: 0, paused: 0, failed: 0 };
const base = { targetDrainSeconds: 60, min: 0, max: 10, defaultRate: 2 };

describe('fleetBacklog', () => {
  it('adds ingestion chunks (x chunk size) to the embed images and counts every pending job', () => {
    const b = fleetBacklog({
      embedImages: 30,
      counts: {
        embed: { ...none, waiting: 2 },
        deliveries: { ...none, delayed: 1, failed: 7 },
        'ingest-plan': { ...none, active: 1 },
        'ingest-chunks': { ...none, waiting: 3, active: 1, paused: 5 },
      },
      chunkQueue: 'ingest-chunks',
      chunkSize: 128,
    });
    // Failed and paused jobs wait for no worker.
    expect(b).toEqual({ images: 30 + 4 * 128, pendingJobs: 2 + 1 + 1 + 4 });
  });
});

describe('poolDemands', () => {
  it('wakes a pool at zero for a planner with no image counted yet, and lets it fall to zero when idle', () => {
    const pools = [{ name: 'cpu' }];
    expect(poolDemands({ ...base, pools, live: [], backlogImages: 0, pendingJobs: 1 })).toEqual([
      { pool: 'cpu', workers: 0, rate: 2, desired: 1 },
    ]);
    expect(poolDemands({ ...base, pools, live: [], backlogImages: 0, pendingJobs: 0 })[0]!.desired).toBe(0);
  });

  it('sizes each pool at its own rate: measured, else its configured default', () => {
    const demands = poolDemands({
      ...base,
      pools: [{ name: 'cpu' }, { name: 'gpu', rate: 40 }],
      live: [
        { pool: 'cpu', imagesPerSecond: 4 },
        { pool: 'cpu', imagesPerSecond: 6 },
        { pool: 'spot', imagesPerSecond: 10 },
      ],
      backlogImages: 2400,
      pendingJobs: 3,
    });
    // 2,400 images in 60 s: cpu at 5 img/s -> 8, gpu at its default 40 -> 1, spot (seen live) at 10 -> 4.
    expect(demands).toEqual([
      { pool: 'cpu', workers: 2, rate: 5, desired: 8 },
      { pool: 'gpu', workers: 0, rate: 40, desired: 1 },
      { pool: 'spot', workers: 1, rate: 10, desired: 4 },
    ]);
  });
});
