import type { PreprocessorConfig } from './preprocessor-config';

/**
 * Per-channel lookup tables (3 x 256 float32) mapping a uint8 sample to its model input value, computed
 * exactly as Hugging Face does it in numpy: `float32(v * rescale_factor)` (the product in float64), then
 * `(x - mean) / std` in float32. With a table the HWC -> CHW pass is one read and one store per value,
 * and the result is bit-identical to the Python pipeline.
 */
export type NormalizeTable = Float32Array;

const tables = new WeakMap<PreprocessorConfig, NormalizeTable>();

export function normalizeTable(config: PreprocessorConfig): NormalizeTable {
  let table = tables.get(config);
  if (table) return table;
  const f = Math.fround;
  table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = f(config.image_mean[c]!);
    const std = f(config.image_std[c]!);
    for (let v = 0; v < 256; v++) {
      let x = config.do_rescale ? f(v * config.rescale_factor) : v;
      if (config.do_normalize) x = f(f(x - mean) / std);
      table[c * 256 + v] = x;
    }
  }
  tables.set(config, table);
  return table;
}

/**
 * Writes `pixels` (HWC uint8 with `channels` interleaved: 1 = grey, replicated to RGB; 3 = RGB; more: the
 * first three are used) as planar CHW float32 into `out[offset .. offset + 3 * pixelCount)`.
 */
export function hwcToChwInto(
  pixels: Uint8Array,
  channels: number,
  pixelCount: number,
  table: NormalizeTable,
  out: Float32Array,
  offset: number,
): void {
  if (pixels.length < pixelCount * channels) throw new RangeError('pixel buffer shorter than pixelCount');
  if (offset < 0 || offset + 3 * pixelCount > out.length) throw new RangeError('output slice out of range');
  const g = offset + pixelCount;
  const b = g + pixelCount;
  if (channels === 3) {
    for (let i = 0, p = 0; i < pixelCount; i++, p += 3) {
      out[offset + i] = table[pixels[p]!]!;
      out[g + i] = table[256 + pixels[p + 1]!]!;
      out[b + i] = table[512 + pixels[p + 2]!]!;
    }
  } else if (channels === 1) {
    for (let i = 0; i < pixelCount; i++) {
      const v = pixels[i]!;
      out[offset + i] = table[v]!;
      out[g + i] = table[256 + v]!;
      out[b + i] = table[512 + v]!;
    }
  } else if (channels > 3) {
    for (let i = 0, p = 0; i < pixelCount; i++, p += channels) {
      out[offset + i] = table[pixels[p]!]!;
      out[g + i] = table[256 + pixels[p + 1]!]!;
      out[b + i] = table[512 + pixels[p + 2]!]!;
    }
  } else {
    throw new RangeError(`cannot normalize ${channels}-channel pixels`);
  }
}
