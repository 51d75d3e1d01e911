import type { Region, Size } from './geometry';
import type { Resample } from './preprocessor-config';

/**
 * Pillow's `Image.resize` for 8-bit images (libImaging/Resample.c and, for NEAREST, Geometry.c
 * `ImagingScaleAffine`), computed only for a window of the output. Bit-exact with Pillow: same
 * coefficients, same 22-bit fixed point, same uint8 rounding between the horizontal and vertical pass.
 *
 * Used for upscaling, where libvips samples at different positions than Pillow (it aligns corners,
 * not pixel centres) and is visibly off; upscaled inputs are small, so this stays cheap
 * (at most about crop area x 5 taps x 2 passes).
 */

interface Filter {
  support: number;
  weight(x: number): number;
}

const bilinear: Filter = {
  support: 1,
  weight(x) {
    const ax = x < 0 ? -x : x;
    return ax < 1 ? 1 - ax : 0;
  },
};

const bicubic: Filter = {
  support: 2,
  weight(x) {
    const a = -0.5;
    const ax = x < 0 ? -x : x;
    if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
    if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
    return 0;
  },
};

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const lanczos: Filter = {
  support: 3,
  weight(x) {
    return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
  },
};

const FILTERS: Record<Exclude<Resample, 0>, Filter> = { 1: lanczos, 2: bilinear, 3: bicubic };

const PRECISION_BITS = 32 - 8 - 2;

interface AxisCoefficients {
  /** Per output index in [from, to): first source index and tap count. */
  first: Int32Array;
  count: Int32Array;
  /** ksize fixed-point weights per output index. */
  weights: Int32Array;
  ksize: number;
}

/** Pillow `precompute_coeffs` + `normalize_coeffs_8bpc`, for output indices [from, to) only. */
function axisCoefficients(
  inSize: number,
  outSize: number,
  from: number,
  to: number,
  filter: Filter,
): AxisCoefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const n = to - from;
  const first = new Int32Array(n);
  const count = new Int32Array(n);
  const weights = new Int32Array(n * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let i = 0; i < n; i++) {
    const center = (from + i + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      weights[i * ksize + x] =
        w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    first[i] = xmin;
    count[i] = xmax;
  }
  return { first, count, weights, ksize };
}

function clip8(v: number): number {
  const x = v >> PRECISION_BITS;
  return x < 0 ? 0 : Math.min(x, 255);
}

/**
 * Resizes `src` (HWC uint8, `channels` interleaved) of size `source` to `resized` and returns only the
 * `region` window of the result (HWC uint8); pixels of the window outside the resized image are zero.
 */
export function resampleRegion(
  src: Uint8Array,
  source: Size,
  channels: number,
  resized: Size,
  region: Region,
  resample: Resample,
): Uint8Array {
  const out = new Uint8Array(region.width * region.height * channels);
  const x0 = Math.max(0, region.left);
  const x1 = Math.min(resized.width, region.left + region.width);
  const y0 = Math.max(0, region.top);
  const y1 = Math.min(resized.height, region.top + region.height);
  if (x1 <= x0 || y1 <= y0) return out;
  if (resample === 0) {
    nearestRegion(src, source, channels, resized, region, out, x0, x1, y0, y1);
    return out;
  }
  const filter = FILTERS[resample];
  const C = channels;
  const half = 1 << (PRECISION_BITS - 1);

  // Horizontal pass (skipped when the width is unchanged, as Pillow does), over only the source rows
  // the vertical pass reads, for only the output columns in the window.
  const needH = resized.width !== source.width;
  const needV = resized.height !== source.height;
  const V = needV ? axisCoefficients(source.height, resized.height, y0, y1, filter) : undefined;
  const rowFirst = V ? V.first[0]! : y0;
  const rowLast = V ? V.first[y1 - y0 - 1]! + V.count[y1 - y0 - 1]! : y1;

  let mid: Uint8Array;
  let midWidth: number;
  let midX0: number; // column of `mid` that holds output column x0
  let midRow0: number; // source row held by `mid`'s first row
  if (needH) {
    const H = axisCoefficients(source.width, resized.width, x0, x1, filter);
    midWidth = x1 - x0;
    midX0 = 0;
    midRow0 = rowFirst;
    mid = new Uint8Array(midWidth * (rowLast - rowFirst) * C);
    for (let y = rowFirst; y < rowLast; y++) {
      const inRow = y * source.width;
      const outRow = (y - rowFirst) * midWidth;
      for (let i = 0; i < midWidth; i++) {
        const xmin = H.first[i]!;
        const n = H.count[i]!;
        const kOff = i * H.ksize;
        for (let c = 0; c < C; c++) {
          let ss = half;
          let p = (inRow + xmin) * C + c;
          for (let t = 0; t < n; t++, p += C) ss += src[p]! * H.weights[kOff + t]!;
          mid[(outRow + i) * C + c] = clip8(ss);
        }
      }
    }
  } else {
    mid = src;
    midWidth = source.width;
    midX0 = x0;
    midRow0 = 0;
  }

  // Vertical pass straight into the window, a whole output row at a time (contiguous reads).
  const ox = x0 - region.left;
  const rowValues = (x1 - x0) * C;
  const acc = new Int32Array(rowValues); // sums stay below 2^31, as in Pillow's int32 arithmetic
  for (let j = 0; j < y1 - y0; j++) {
    const outStart = ((y0 + j - region.top) * region.width + ox) * C;
    if (!V) {
      const inStart = ((y0 + j - midRow0) * midWidth + midX0) * C;
      out.set(mid.subarray(inStart, inStart + rowValues), outStart);
      continue;
    }
    const ymin = V.first[j]! - midRow0;
    const n = V.count[j]!;
    const kOff = j * V.ksize;
    acc.fill(half);
    for (let t = 0; t < n; t++) {
      const w = V.weights[kOff + t]!;
      if (w === 0) continue;
      const inStart = ((ymin + t) * midWidth + midX0) * C;
      for (let k = 0; k < rowValues; k++) acc[k] = (acc[k]! + mid[inStart + k]! * w) | 0;
    }
    for (let k = 0; k < rowValues; k++) out[outStart + k] = clip8(acc[k]!);
  }
  return out;
}

/** Pillow NEAREST: `ImagingScaleAffine`, source index `int(scale * 0.5 + k * scale)` accumulated in doubles. */
function nearestRegion(
  src: Uint8Array,
  source: Size,
  C: number,
  resized: Size,
  region: Region,
  out: Uint8Array,
  x0: number,
  x1: number,
  y0: number,
  y1: number,
): void {
  const xs = nearestTable(source.width / resized.width, source.width, x1);
  const ys = nearestTable(source.height / resized.height, source.height, y1);
  for (let y = y0; y < y1; y++) {
    const sy = ys[y]!;
    if (sy < 0) continue;
    const outRow = (y - region.top) * region.width - region.left;
    for (let x = x0; x < x1; x++) {
      const sx = xs[x]!;
      if (sx < 0) continue;
      const s = (sy * source.width + sx) * C;
      const o = (outRow + x) * C;
      for (let c = 0; c < C; c++) out[o + c] = src[s + c]!;
    }
  }
}

function nearestTable(scale: number, inSize: number, to: number): Int32Array {
  const table = new Int32Array(to);
  let v = scale * 0.5;
  for (let i = 0; i < to; i++) {
    const idx = v < 0 ? -1 : Math.trunc(v);
    table[i] = idx >= 0 && idx < inSize ? idx : -1;
    v += scale;
  }
  return table;
}
