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

/** PIL/PyTorch antialias cubic filter (A = -0.5). */
function aaCubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/**
 * One axis of `F.interpolate(mode='bicubic', antialias=True, align_corners=False)`: when shrinking, the
 * filter widens by the scale so every source cell contributes, and each output's weights are normalised
 * (PyTorch's `_upsample_bicubic2d_aa`, the PIL scheme). Computed in float64.
 */
function aaAxis(
  inSize: number,
  outSize: number,
): { start: Int32Array; count: Int32Array; weight: Float64Array[] } {
  const scale = inSize / outSize;
  const support = scale >= 1 ? 2 * scale : 2;
  const invscale = scale >= 1 ? 1 / scale : 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weight: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = scale * (o + 0.5);
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = new Float64Array(xsize);
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      w[j] = aaCubic((j + xmin - center + 0.5) * invscale);
      total += w[j]!;
    }
    for (let j = 0; j < xsize; j++) w[j] = total !== 0 ? w[j]! / total : 0;
    start[o] = xmin;
    count[o] = xsize;
    weight.push(w);
  }
  return { start, count, weight };
}

/** Antialiased bicubic resize of a channels-last [inH, inW, channels] grid (width first, then height). */
export function antialiasBicubicResizeHwc(
  src: Float32Array,
  inH: number,
  inW: number,
  channels: number,
  outH: number,
  outW: number,
): Float32Array {
  const ax = aaAxis(inW, outW);
  const ay = aaAxis(inH, outH);
  const mid = new Float64Array(inH * outW * channels);
  for (let y = 0; y < inH; y++) {
    for (let ox = 0; ox < outW; ox++) {
      const w = ax.weight[ox]!;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let j = 0; j < w.length; j++) acc += src[(y * inW + ax.start[ox]! + j) * channels + c]! * w[j]!;
        mid[(y * outW + ox) * channels + c] = acc;
      }
    }
  }
  const out = new Float32Array(outH * outW * channels);
  for (let oy = 0; oy < outH; oy++) {
    const w = ay.weight[oy]!;
    for (let ox = 0; ox < outW; ox++) {
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let j = 0; j < w.length; j++)
          acc += mid[((ay.start[oy]! + j) * outW + ox) * channels + c]! * w[j]!;
        out[(oy * outW + ox) * channels + c] = acc;
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
  /** The with-registers checkpoints: antialiased bicubic at the exact target size, no +0.1 offset. */
  options: { antialias?: boolean } = {},
): Float32Array {
  if (pos.length !== (1 + srcGrid * srcGrid) * dim) {
    throw new EmbedpoolError(
      'MODEL_INVALID',
      `position embedding holds ${pos.length / dim} tokens, not 1 + ${srcGrid}x${srcGrid}`,
    );
  }
  if (srcGrid === targetGrid) return pos;
  const scale = (targetGrid + 0.1) / srcGrid;
  const grid = options.antialias
    ? antialiasBicubicResizeHwc(pos.subarray(dim), srcGrid, srcGrid, dim, targetGrid, targetGrid)
    : bicubicResizeHwc(pos.subarray(dim), srcGrid, srcGrid, dim, targetGrid, targetGrid, {
        scaleH: scale,
        scaleW: scale,
      });
  const out = new Float32Array((1 + targetGrid * targetGrid) * dim);
  out.set(pos.subarray(0, dim));
  out.set(grid, dim);
  return out;
}
