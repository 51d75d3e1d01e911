import {
  buildDinov2,
  type Dinov2Config,
  type Dinov2ConfigInput,
  parseDinov2Config,
  randomDinov2Weights,
  type WeightMap,
} from '@embedpool/core/model';

export interface OutlierOptions {
  /** How many channels of the residual stream are outliers. Default 4. */
  channels?: number;
  /** Their size in the residual stream, as a multiple of the typical channel. Default 20. */
  residualScale?: number;
  /** LayerNorm gain on those channels (the others keep ~1). Default 5. */
  lnGain?: number;
  seed?: number;
}

/** A small DINOv2 that is cheap to build and run in tests (hidden 192, 3 layers, 224 px). */
export const STRESS_TEST_CONFIG: Dinov2ConfigInput = {
  hidden_size: 192,
  num_hidden_layers: 3,
  num_attention_heads: 3,
  patch_size: 14,
  image_size: 224,
  mlp_ratio: 4,
  layerscale_value: 1.0,
  // Wider than HF's 0.02 so that random weights still tell images apart (cosine between photos ~0.6-0.9).
  initializer_range: 0.05,
};

/** Evenly spread, deterministic outlier channel indices. */
export function outlierChannels(hidden: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * hidden) / count + 7) % hidden);
}

/**
 * Random weights with what real DINOv2 checkpoints have and random ones lack: a few residual-stream
 * channels tens of times the median (through the patch bias, CLS token and position embedding) and large
 * per-channel LayerNorm gains on those channels. Plain per-tensor int8 activations fail on such a model;
 * the outliers are exactly the per-channel ranges smoothing moves into the weights.
 */
export function outlierDinov2Weights(config: Dinov2Config, opts: OutlierOptions = {}): WeightMap {
  const w = randomDinov2Weights(config, opts.seed ?? 0);
  const h = config.hidden_size;
  const chans = outlierChannels(h, opts.channels ?? 4);
  const residual = opts.residualScale ?? 20;
  const gain = opts.lnGain ?? 5;
  // Typical residual channel: a patch embedding of unit-range pixels through N(0, 0.02) weights.
  const typical = config.initializer_range * Math.sqrt(config.num_channels * config.patch_size ** 2);
  let k = 1;
  const wiggle = () => 0.1 * Math.sin(k++ * 0.7);
  for (const [name, t] of w) {
    // Uneven gains everywhere, as a trained model has (biases stay 0: constants would drown the image).
    if (/norm\d?\.weight$/.test(name)) for (let i = 0; i < t.data.length; i++) t.data[i] = 1 + 2 * wiggle();
    if (name.endsWith('.lambda1')) for (let i = 0; i < t.data.length; i++) t.data[i] = 0.5 + wiggle();
  }
  chans.forEach((c, i) => {
    const sign = i % 2 === 0 ? 1 : -1;
    const size = sign * residual * typical * (1 + i / chans.length);
    w.get('embeddings.patch_embeddings.projection.bias')!.data[c] = size;
    w.get('embeddings.cls_token')!.data[c] = size;
    const g = gain * (1 + i / chans.length);
    // After a LayerNorm the outlier channels stand about `residual` times above the others, times the gain.
    const mute = Math.max(1, Math.abs(residual));
    for (const [name, t] of w) {
      if (/^encoder\.layer\.\d+\.norm[12]\.weight$/.test(name)) t.data[c] = g;
      // The projections reading those channels have small weights on them (what training converges to):
      // in float32 they contribute like any channel; only int8 activations suffer from their range.
      if (/\.(query|key|value|fc1)\.weight$/.test(name)) {
        const inDim = t.shape[1]!;
        for (let r = 0; r < t.shape[0]!; r++) t.data[r * inDim + c] = t.data[r * inDim + c]! / (g * mute);
      }
    }
    // As in trained checkpoints, the final norm mutes these channels: the embedding is about the image.
    w.get('layernorm.weight')!.data[c] = 0.01;
  });
  return w;
}

/** Builds the stress model with the project's builder: ONNX bytes. */
export function buildOutlierDinov2(
  config: Dinov2Config | Dinov2ConfigInput = STRESS_TEST_CONFIG,
  opts: OutlierOptions & { imageSize?: number } = {},
): Uint8Array {
  const parsed = parseDinov2Config(config);
  return buildDinov2({
    config: parsed,
    weights: outlierDinov2Weights(parsed, opts),
    imageSize: opts.imageSize ?? 224,
  }).model;
}
