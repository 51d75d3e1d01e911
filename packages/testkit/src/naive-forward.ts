import { EmbedpoolError } from '@embedpool/core/errors';
import {
  type Dinov2Config,
  interpolatePosEmbed,
  mlpHiddenSize,
  usesRegisterInterpolation,
  type WeightMap,
} from '@embedpool/core/model';

// A deliberately plain float64 forward pass of HF's Dinov2Model, used by tests as an oracle for graph
// features the parity fixture does not exercise (SwiGLU, qkv_bias=false, other image sizes). O(n³) loops:
// only for tiny configs.

function w(weights: WeightMap, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new EmbedpoolError('INTERNAL', `naive forward: missing ${name}`);
  return t.data;
}

/** erf via Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), ample for a 1e-4 comparison. */
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-a * a);
  return s * y;
}

function layerNorm(x: Float64Array, rows: number, h: number, g: Float32Array, b: Float32Array, eps: number) {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < h; i++) mean += x[r * h + i]!;
    mean /= h;
    let v = 0;
    for (let i = 0; i < h; i++) v += (x[r * h + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / h + eps);
    for (let i = 0; i < h; i++) out[r * h + i] = (x[r * h + i]! - mean) * inv * g[i]! + b[i]!;
  }
  return out;
}

/** y = x W^T + b with W in PyTorch's [out, in] layout. */
function linear(
  x: Float64Array,
  rows: number,
  inDim: number,
  W: Float32Array,
  b: Float32Array | undefined,
  outDim: number,
) {
  const out = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let acc = b ? b[o]! : 0;
      for (let i = 0; i < inDim; i++) acc += x[r * inDim + i]! * W[o * inDim + i]!;
      out[r * outDim + o] = acc;
    }
  }
  return out;
}

export function naiveDinov2Forward(
  config: Dinov2Config,
  weights: WeightMap,
  pixels: Float32Array,
  imageSize: number,
): { lastHiddenState: Float64Array; pooler: Float64Array } {
  const h = config.hidden_size;
  const p = config.patch_size;
  const C = config.num_channels;
  const grid = Math.floor(imageSize / p);
  const R = config.num_register_tokens;
  // CLS, then the register tokens (no position embedding), then the patches.
  const T = 1 + R + grid * grid;
  const eps = config.layer_norm_eps;

  let x = new Float64Array(T * h);
  const convW = w(weights, 'embeddings.patch_embeddings.projection.weight');
  const convB = w(weights, 'embeddings.patch_embeddings.projection.bias');
  const srcGrid = Math.floor(config.image_size / p);
  const pos = interpolatePosEmbed(w(weights, 'embeddings.position_embeddings'), srcGrid, grid, h, {
    antialias: usesRegisterInterpolation(config),
  });
  const cls = w(weights, 'embeddings.cls_token');
  for (let i = 0; i < h; i++) x[i] = cls[i]! + pos[i]!;
  if (R > 0) {
    const reg = w(weights, 'embeddings.register_tokens');
    for (let i = 0; i < R * h; i++) x[h + i] = reg[i]!;
  }
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const t = 1 + R + gy * grid + gx;
      for (let o = 0; o < h; o++) {
        let acc = convB[o]!;
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              acc +=
                convW[((o * C + c) * p + ky) * p + kx]! *
                pixels[(c * imageSize + gy * p + ky) * imageSize + gx * p + kx]!;
        x[t * h + o] = acc + pos[(t - R) * h + o]!;
      }
    }
  }

  const heads = config.num_attention_heads;
  const d = h / heads;
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const pre = `encoder.layer.${l}`;
    const n1 = layerNorm(x, T, h, w(weights, `${pre}.norm1.weight`), w(weights, `${pre}.norm1.bias`), eps);
    const proj = (name: string) =>
      linear(
        n1,
        T,
        h,
        w(weights, `${pre}.attention.attention.${name}.weight`),
        weights.get(`${pre}.attention.attention.${name}.bias`)?.data,
        h,
      );
    const q = proj('query');
    const k = proj('key');
    const v = proj('value');
    const ctx = new Float64Array(T * h);
    const scores = new Float64Array(T);
    for (let hd = 0; hd < heads; hd++) {
      for (let i = 0; i < T; i++) {
        let max = -Infinity;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += q[i * h + hd * d + e]! * k[j * h + hd * d + e]!;
          scores[j] = s / Math.sqrt(d);
          max = Math.max(max, scores[j]!);
        }
        let sum = 0;
        for (let j = 0; j < T; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          sum += scores[j]!;
        }
        for (let j = 0; j < T; j++) {
          const pj = scores[j]! / sum;
          for (let e = 0; e < d; e++) {
            const at = i * h + hd * d + e;
            ctx[at] = ctx[at]! + pj * v[j * h + hd * d + e]!;
          }
        }
      }
    }
    const attn = linear(
      ctx,
      T,
      h,
      w(weights, `${pre}.attention.output.dense.weight`),
      w(weights, `${pre}.attention.output.dense.bias`),
      h,
    );
    const ls1 = w(weights, `${pre}.layer_scale1.lambda1`);
    for (let i = 0; i < T * h; i++) x[i] = x[i]! + attn[i]! * ls1[i % h]!;

    const n2 = layerNorm(x, T, h, w(weights, `${pre}.norm2.weight`), w(weights, `${pre}.norm2.bias`), eps);
    const inner = mlpHiddenSize(config);
    let mlp: Float64Array;
    if (config.use_swiglu_ffn) {
      const both = linear(
        n2,
        T,
        h,
        w(weights, `${pre}.mlp.weights_in.weight`),
        w(weights, `${pre}.mlp.weights_in.bias`),
        2 * inner,
      );
      const gated = new Float64Array(T * inner);
      for (let r = 0; r < T; r++) {
        for (let i = 0; i < inner; i++) {
          const a = both[r * 2 * inner + i]!;
          gated[r * inner + i] = (a / (1 + Math.exp(-a))) * both[r * 2 * inner + inner + i]!;
        }
      }
      mlp = linear(
        gated,
        T,
        inner,
        w(weights, `${pre}.mlp.weights_out.weight`),
        w(weights, `${pre}.mlp.weights_out.bias`),
        h,
      );
    } else {
      const fc1 = linear(
        n2,
        T,
        h,
        w(weights, `${pre}.mlp.fc1.weight`),
        w(weights, `${pre}.mlp.fc1.bias`),
        inner,
      );
      for (let i = 0; i < fc1.length; i++) fc1[i] = 0.5 * fc1[i]! * (1 + erf(fc1[i]! / Math.SQRT2));
      mlp = linear(fc1, T, inner, w(weights, `${pre}.mlp.fc2.weight`), w(weights, `${pre}.mlp.fc2.bias`), h);
    }
    const ls2 = w(weights, `${pre}.layer_scale2.lambda1`);
    const next = new Float64Array(x.length);
    for (let i = 0; i < T * h; i++) next[i] = x[i]! + mlp[i]! * ls2[i % h]!;
    x = next;
  }
  const lastHiddenState = layerNorm(
    x,
    T,
    h,
    w(weights, 'layernorm.weight'),
    w(weights, 'layernorm.bias'),
    eps,
  );
  return { lastHiddenState, pooler: lastHiddenState.slice(0, h) };
}
