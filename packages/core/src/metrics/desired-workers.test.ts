import { describe, expect, it } from 'vitest';
import { desiredWorkers } from './desired-workers';

const base = { targetDrainSeconds: 60, min: 1, max: 10, defaultRate: 2 };

describe('desiredWorkers', () => {
  it('sizes the pool to drain the backlog within the target at the measured rate', () => {
    // 1,200 images at 5 img/s per worker within 60 s: 4 workers.
    expect(desiredWorkers({ ...base, backlogImages: 1200, workerRates: [4, 6] })).toEqual({
      desired: 4,
      rate: 5,
    });
  });
  it('uses the default rate before any worker has measured one', () => {
    expect(desiredWorkers({ ...base, backlogImages: 240, workerRates: [0] }).desired).toBe(2);
  });
  it('clamps to min and max, and keeps one worker while anything waits even with min 0', () => {
    expect(desiredWorkers({ ...base, backlogImages: 0, workerRates: [5] }).desired).toBe(1);
    expect(desiredWorkers({ ...base, min: 0, backlogImages: 0, workerRates: [5] }).desired).toBe(0);
    expect(desiredWorkers({ ...base, min: 0, backlogImages: 1, workerRates: [500] }).desired).toBe(1);
    expect(desiredWorkers({ ...base, backlogImages: 1e7, workerRates: [5] }).desired).toBe(10);
  });
});
