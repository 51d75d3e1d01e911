import { EmbedpoolError } from '../errors';

// PyTorch's cubic convolution constant (Keys' kernel with A = -0.75, not the A = -0.5 of PIL/OpenCV).
const A = -0.75;
const f = Math.fround;

function cubicNear(x: number): number {
  return f(f(f(f(f(A + 2) * x) - (A + 3)) * x) * x + 1);
}

function cubicFar(x: number): number {
  return f(f(f(f(f(A * x) - 5 * A) * x) + 8 * A) * x - 4 * A);
}

/** The four tap weights for fractional offset t, in the order PyTorch computes them. */
function cubicWeights(t: number): [number, number, number, number] {
  return [cubicFar(f(t + 1)), cubicNear(t), cubicNear(f(1 - t)), cubicFar(f(f(1 - t) + 1))];
}

interface Taps {
  index: Int32Array; // 4 clamped source indices per output position
  weight: Float32Array; // 4 weights per output position
}

/**
 * Source taps along one axis, as PyTorch's `upsample_bicubic2d` with align_corners=False computes them
 * in float32: src = step * (dst + 0.5) - 0.5, step = 1/scale_factor when one was given, else in/out.
 */
function axisTaps(inSize: number, outSize: number, step: number): Taps {
  const index = new Int32Array(outSize * 4);
  const weight = new Float32Array(outSize * 4);
  for (let o = 0; o < outSize; o++) {
    const real = f(f(step * f(o + 0.5)) - 0.5);
    const base = Math.floor(real);
    const w = cubicWeights(f(real - base));
    for (let k = 0; k < 4; k++) {
      // Borders clamp the index (replicate), they do not renormalize the weights.
      index[o * 4 + k] = Math.min(Math.max(base - 1 + k, 0), inSize - 1);
      weight[o * 4 + k] = w[k]!;
    }
  }
  return { index, weight };
}

export interface BicubicOptions {
  /**
   * `scale_factor` passed to `F.interpolate` per axis (output/input). When given, PyTorch steps source
   * coordinates by 1/scale rather than in/out; that is what makes old DINOv2's `+0.1` trick matter.
   */
  scaleH?: number;
  scaleW?: number;
}

/**
 * Bicubic resize of a channels-last [inH, inW, channels] grid to [outH, outW, channels], matching
 * `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)` to float32 rounding.
 */
export function bicubicResizeHwc(
  src: Float32Array,
  inH: number,
  inW: number,
  channels: number,
  outH: number,
  outW: number,
  options: BicubicOptions = {},
): Float32Array {
  if (src.length !== inH * inW * channels) {
    throw new EmbedpoolError(
      'INTERNAL',
      `bicubic input holds ${src.length} values, not ${inH}x${inW}x${channels}`,
    );
  }
  const stepH = f(options.scaleH ? 1 / options.scaleH : inH / outH);
  const stepW = f(options.scaleW ? 1 / options.scaleW : inW / outW);
  const ty = axisTaps(inH, outH, stepH);
  const tx = axisTaps(inW, outW, stepW);
  const out = new Float32Array(outH * outW * channels);
  const row = new Float64Array(channels * 4);
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      // Interpolate along x within each of the 4 source rows, then along y across them, as PyTorch does.
      for (let ky = 0; ky < 4; ky++) {
        const rowBase = ty.index[oy * 4 + ky]! * inW;
        for (let c = 0; c < channels; c++) {
          let acc = 0;
          for (let kx = 0; kx < 4; kx++) {
            acc += src[(rowBase + tx.index[ox * 4 + kx]!) * channels + c]! * tx.weight[ox * 4 + kx]!;
          }
          row[ky * channels + c] = acc;
        }
      }
      const o = (oy * outW + ox) * channels;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let ky = 0; ky < 4; ky++) acc += row[ky * channels + c]! * ty.weight[oy * 4 + ky]!;
        out[o + c] = acc;
      }
    }
  }
  return out;
}

/**
 * Resamples DINOv2's learned position embedding ([1 + srcGrid², dim]: CLS first, then the grid row-major)
 * to a targetGrid² patch grid, exactly as transformers' Dinov2 `interpolate_pos_encoding` did when the
 * public ONNX exports were traced: bicubic with scale_factor = (target + 0.1) / source, so the output is
 * target x target but source coordinates step by source / (target + 0.1). Equal grids pass through.
 */
export function interpolatePosEmbed(
  pos: Float32Array,
  srcGrid: number,
  targetGrid: number,
  dim: number,
): Float32Array {
  if (pos.length !== (1 + srcGrid * srcGrid) * dim) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `position embedding holds ${pos.length / dim} tokens, not 1 + ${srcGrid}x${srcGrid}`,
    );
  }
  if (srcGrid === targetGrid) return pos;
  const scale = (targetGrid + 0.1) / srcGrid;
  const grid = bicubicResizeHwc(pos.subarray(dim), srcGrid, srcGrid, dim, targetGrid, targetGrid, {
    scaleH: scale,
    scaleW: scale,
  });
  const out = new Float32Array((1 + targetGrid * targetGrid) * dim);
  out.set(pos.subarray(0, dim));
  out.set(grid, dim);
  return out;
}
