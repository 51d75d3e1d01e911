import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildOutlierDinov2 } from '@embedpool/testkit/stress-model';
import { describe, expect, it } from 'vitest';
import { quantizeModel } from '../quantize';
import { calibrate } from './calibrate';
import { DEFAULT_MODEL_BYTES, planForResources, planForSize } from './plan';

describe('plans for int8 models', () => {
  it('a CPU size plans the int8 model: smaller file, less memory, and says so', () => {
    const fp32 = planForSize('Standard_D4as_v4');
    const int8 = planForSize('Standard_D4as_v4', { modelVariant: 'int8' });
    expect(int8.modelVariant).toBe('int8');
    expect(int8.modelBytes).toBe(DEFAULT_MODEL_BYTES.int8);
    expect(int8.memory.host.totalBytes).toBeLessThan(fp32.memory.host.totalBytes);
    expect(int8.notes.some((n) => /int8 model .*VNNI/.test(n))).toBe(true);
    // Threads and batch are the CPU plan's: only the model changes.
    expect([int8.intraOpThreads, int8.inferenceThreads, int8.batchSize]).toEqual([
      fp32.intraOpThreads,
      fp32.inferenceThreads,
      fp32.batchSize,
    ]);
  });

  it('int8 on CUDA and fp16 on CPU are refused', () => {
    const gpu = { vcpus: 8, memoryGib: 64, gpus: [{ memoryGib: 16 }] };
    expect(() => planForResources(gpu, { modelVariant: 'int8' })).toThrow(/CPU only/);
    expect(() => planForResources(gpu, { modelVariant: 'int8', provider: 'cpu' })).not.toThrow();
    expect(() => planForResources({ vcpus: 4, memoryGib: 16, gpus: [] }, { modelVariant: 'fp16' })).toThrow(
      /for GPUs/,
    );
  });

  it('calibrate recognises an int8 model and plans for it', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'embedpool-calibrate-int8-'));
    try {
      const fp32 = join(dir, 'stress.onnx');
      await writeFile(fp32, buildOutlierDinov2());
      const q = await quantizeModel({ input: fp32, threads: 1 });
      const int8 = join(dir, 'stress-int8.onnx');
      await writeFile(int8, q.model);
      const resources = { vcpus: 2, memoryGib: 8, gpus: [], smt: false };
      const r = await calibrate({ modelPath: int8, resources, batchSizes: [1], threads: [1], seconds: 0.05 });
      expect(r.modelVariant).toBe('int8');
      expect(r.plan.modelVariant).toBe('int8');
      expect(r.plan.modelBytes).toBe(q.model.length);
      const plain = await calibrate({
        modelPath: fp32,
        resources,
        batchSizes: [1],
        threads: [1],
        seconds: 0.05,
      });
      expect(plain.modelVariant).toBe('fp32');
      await expect(
        calibrate({ modelPath: fp32, int8: true, resources, batchSizes: [1], threads: [1], seconds: 0.05 }),
      ).rejects.toThrow(/not an int8 model/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
