import type { WeightMap } from '@embedpool/core/model';
import * as ort from 'onnxruntime-node';

// Shared by this folder's tests only.

export async function runModel(
  model: Uint8Array | string,
  pixels: Float32Array,
  batch: number,
  size: number,
): Promise<{ last: ort.Tensor; pooler: ort.Tensor; session: ort.InferenceSession }> {
  // A string is a path, bytes are the model itself; both overloads take the same options.
  const session = await (typeof model === 'string'
    ? ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
    : ort.InferenceSession.create(model, { intraOpNumThreads: 1 }));
  const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, [batch, 3, size, size]) });
  return { last: out.last_hidden_state!, pooler: out.pooler_output!, session };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Random weights have zero biases and unit norms; give every parameter a distinct value instead. */
export function perturbWeights(weights: WeightMap): WeightMap {
  let k = 1;
  for (const [name, t] of weights) {
    if (name.endsWith('.bias') || name.endsWith('.lambda1') || /norm\d?\.weight$/.test(name)) {
      for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + 0.1 * Math.sin(k++ * 0.7);
    }
  }
  return weights;
}

/** Deterministic pseudo-image, [batch, 3, size, size], values in about [-2, 2] like normalised pixels. */
export function syntheticPixels(batch: number, size: number, salt = 0): Float32Array {
  const out = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < out.length; i++) out[i] = 2 * Math.sin(i * 0.37 + salt) * Math.cos(i * 0.011);
  return out;
}
