/**
 * One input that makes the model run itself fail (not the decode: that is micro-batcher.test.ts's "fails
 * only the image that cannot be written into the batch") must fail only itself: the batcher retries
 * the batch's images one by one, so every other request in that batch still gets its vector.
 * A stand-in engine fails any run that contains the poison pixel value.
 */
import { type BatchItem, MicroBatcher } from '@embedpool/core/batching';
import type { Engine, InferResult } from '@embedpool/core/engine';
import { EmbedpoolError } from '@embedpool/core/errors';
import { describe, expect, it } from 'vitest';

const H = 4;
const W = 4;
const PER = 3 * H * W;
const DIM = 2;
const POISON = -999;

/** Each image's vector is [its first pixel, batch size]; a run holding a POISON pixel fails as a whole. */
function fakeEngine() {
  const runs: number[] = [];
  const engine = {
    threads: 1,
    async infer(input: Float32Array, count: number): Promise<InferResult> {
      runs.push(count);
      await new Promise((r) => setTimeout(r, 5));
      for (let i = 0; i < count; i++) {
        if (input[i * PER] === POISON) {
          throw new EmbedpoolError('INFERENCE_FAILED', 'the model run failed', { details: { input } });
        }
      }
      const embeddings = new Float32Array(count * DIM);
      for (let i = 0; i < count; i++) embeddings.set([input[i * PER]!, count], i * DIM);
      return { embeddings, dim: DIM, input, inferMs: 5 };
    },
  };
  return { engine: engine as unknown as Engine, runs };
}

const image = (value: number): BatchItem => ({
  fill: (out, offset) => out.fill(value, offset, offset + PER),
});

describe('an inference failure inside a shared batch', () => {
  it('fails only the poison image; the others are answered from single-image reruns', async () => {
    const { engine, runs } = fakeEngine();
    const batcher = new MicroBatcher(engine, { maxBatchSize: 8, batchWaitMs: 20, height: H, width: W });
    // Keep the batch open until all five are in, so they share one run.
    const releases = Array.from({ length: 5 }, () => batcher.expect());
    const values = [1, 2, POISON, 4, 5];
    const pending = values.map((v, i) => {
      const p = batcher.embed(image(v));
      releases[i]!();
      return p;
    });
    const results = await Promise.allSettled(pending);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    expect((results[2] as PromiseRejectedResult).reason.code).toBe('INFERENCE_FAILED');
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') expect(Array.from(r.value)).toEqual([values[i], 1]);
    });
    // One shared run that failed, then each of its five images alone.
    expect(runs).toEqual([5, 1, 1, 1, 1, 1]);
    await batcher.close();
  });
});
