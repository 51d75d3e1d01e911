import { EmbedpoolError } from '../errors';

/** A parameter in float32, whatever its dtype on disk; `data` is row-major over `shape`. */
export interface WeightTensor {
  shape: readonly number[];
  data: Float32Array;
}

/** Parameters keyed by their Hugging Face `Dinov2Model` names (`encoder.layer.0.norm1.weight`, ...). */
export type WeightMap = Map<string, WeightTensor>;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Looks a parameter up and checks its shape, so a wrong checkpoint fails here and not inside ORT. */
export function requireWeight(weights: WeightMap, name: string, shape: readonly number[]): WeightTensor {
  const t = weights.get(name);
  if (!t) throw new EmbedpoolError('MODEL_INVALID', `weights lack ${name}`, { details: { name } });
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `${name} has shape [${t.shape.join(',')}], expected [${shape.join(',')}]`,
      { details: { name, shape: t.shape, expected: shape } },
    );
  }
  if (t.data.length !== numel(shape)) {
    throw new EmbedpoolError('MODEL_INVALID', `${name} holds ${t.data.length} values for shape [${shape}]`);
  }
  return t;
}

export function optionalWeight(
  weights: WeightMap,
  name: string,
  shape: readonly number[],
): WeightTensor | undefined {
  return weights.has(name) ? requireWeight(weights, name, shape) : undefined;
}
