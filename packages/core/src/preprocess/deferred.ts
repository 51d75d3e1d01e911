import { type PreprocessOptions, resolvePreprocessOptions } from './limits';
import { hwcToChwInto, normalizeTable } from './normalize';
import { decodePlanned, planImage } from './preprocess';

/** An image decoded to the model's pixels (uint8, HWC), not yet normalized into its float slot. */
export interface DecodedForModel {
  /** Floats it takes in the model input: 3 * height * width. */
  floats: number;
  height: number;
  width: number;
  /** Writes the normalized CHW floats into `out[offset ...]`: one table lookup per value, no allocation. */
  writeInto(out: Float32Array, offset: number): void;
}

/**
 * `preprocess` in two steps, for a worker that batches: decode now (on the libuv pool), normalize later,
 * straight into the batch's input tensor. The uint8 pixels (a third of the floats' size) are all that is
 * held in between, and no per-image Float32Array is allocated, copied and collected. Same decoding, same
 * checks and bit-identical output as `preprocess`.
 */
export async function decodeForModel(
  bytes: Uint8Array,
  options: PreprocessOptions = {},
): Promise<DecodedForModel> {
  const opts = resolvePreprocessOptions(options);
  const plan = await planImage(bytes, opts);
  const { region, pixelCount } = plan;
  const decoded = await decodePlanned(bytes, plan, opts);
  const table = normalizeTable(opts.config);
  return {
    floats: 3 * pixelCount,
    height: region.height,
    width: region.width,
    writeInto(out, offset) {
      hwcToChwInto(decoded.data, decoded.channels, pixelCount, table, out, offset);
    },
  };
}
