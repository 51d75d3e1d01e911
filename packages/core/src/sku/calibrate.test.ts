import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PARITY_MODEL } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { type CalibrateEvent, calibrate, ensureRandomModel, randomModelPath } from './calibrate';
import { planToEnv } from './plan';

describe('calibrate (tiny fixture model)', () => {
  it('measures each batch size and thread count and plans the fastest', async () => {
    const events: CalibrateEvent[] = [];
    const r = await calibrate({
      modelPath: PARITY_MODEL,
      batchSizes: [2, 1],
      threads: [1],
      seconds: 0.5,
      resources: { vcpus: 2, memoryGib: 8, gpus: [], smt: false },
      onProgress: (e) => events.push(e),
    });
    expect(r.provider).toBe('cpu');
    expect(r.builtModel).toBe(false);
    expect(r.rows.map((x) => [x.intraOpThreads, x.sessions, x.batchSize])).toEqual([
      [1, 2, 1],
      [1, 2, 2],
    ]);
    for (const row of r.rows) {
      expect(row.runs).toBeGreaterThanOrEqual(2);
      expect(row.imagesPerSecond).toBeGreaterThan(0);
      expect(row.images).toBe(row.runs * row.batchSize);
    }
    expect(r.rows).toContain(r.best);
    expect(r.plan.intraOpThreads).toBe(1);
    expect(r.plan.inferenceThreads).toBe(2);
    expect(r.plan.batchSize).toBe(r.best.batchSize);
    expect(planToEnv(r.plan)[0]!.INTRA_OP_THREADS).toBe('1');
    expect(events.map((e) => e.type)).toEqual(['load', 'row', 'row']);
    expect(r.totalSeconds).toBeLessThan(20);
  });

  it('refuses bad lists', async () => {
    await expect(calibrate({ modelPath: PARITY_MODEL, batchSizes: [] })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    await expect(calibrate({ modelPath: PARITY_MODEL, threads: [0] })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });
});

describe('the random calibration model', () => {
  it('lives under <cache>/random/ and is reused when present', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'embedpool-sku-'));
    try {
      const path = randomModelPath(cache, 'cpu');
      expect(path).toBe(join(cache, 'random', 'dinov2-base-random-seed0-224-float32.onnx'));
      expect(randomModelPath(cache, 'cuda')).toMatch(/float16\.onnx$/);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, 'already built');
      expect(await ensureRandomModel(cache, 'cpu')).toEqual({ path, built: false });
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});
