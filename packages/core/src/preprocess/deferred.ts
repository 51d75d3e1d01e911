import { EmbedpoolError } from '../errors';
import { decodeRegion, probeImage } from './decode';
import { planGeometry } from './geometry';
import { type PreprocessOptions, resolvePreprocessOptions } from './limits';
import { hwcToChwInto, normalizeTable } from './normalize';

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
  const source = await probeImage(bytes, opts);
  const geometry = planGeometry(opts.config, source);
  const { region } = geometry;
  const pixelCount = region.width * region.height;
  if (pixelCount > opts.maxInputPixels) {
    throw new EmbedpoolError(
      'IMAGE_TOO_MANY_PIXELS',
      `preprocessed image would be ${region.width}x${region.height}; the limit is ${opts.maxInputPixels} pixels`,
      { details: { width: region.width, height: region.height, maxInputPixels: opts.maxInputPixels } },
    );
  }
  const decoded = await decodeRegion(bytes, source, geometry, opts);
  if (decoded.width !== region.width || decoded.height !== region.height || decoded.channels === 2) {
    throw new EmbedpoolError(
      'INTERNAL',
      `decoder returned ${decoded.width}x${decoded.height}x${decoded.channels}, expected ${region.width}x${region.height}`,
    );
  }
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
