import { EmbedpoolError } from '../errors';
import { type DecodePath, decodeRegion, probeImage } from './decode';
import { fixedOutputSize, planGeometry, type Size } from './geometry';
import { type PreprocessOptions, type ResolvedPreprocessOptions, resolvePreprocessOptions } from './limits';
import { hwcToChwInto, normalizeTable } from './normalize';

export interface PreprocessInfo {
  /** Tensor shape written: [3, height, width], float32 CHW. */
  channels: 3;
  height: number;
  width: number;
  /** Floats written at `offset`: 3 * height * width. */
  floats: number;
  /** The input as decoded (after EXIF orientation; one frame of an animation). */
  source: {
    format: string;
    width: number;
    height: number;
    orientation: number;
    pages: number;
    hasAlpha: boolean;
    depth: string;
  };
  /** Size after the resize step, before the crop. */
  resized: Size;
  /** Which decoding path ran (see decode.ts). */
  path: DecodePath;
}

/**
 * Decodes `bytes` and writes the model input (float32 CHW, `3 * H * W` floats) into
 * `out[offset ...]`, leaving the rest of `out` untouched; `offset` counts floats. For a batch, allocate
 * `batch * 3 * H * W` floats once (see {@link outputFloats}) and call this per image with
 * `offset = i * 3 * H * W`; the calls can run concurrently (decoding runs on the libuv pool).
 *
 * Rejects with an EmbedpoolError (IMAGE_EMPTY, IMAGE_TOO_LARGE, IMAGE_UNSUPPORTED_FORMAT,
 * IMAGE_TOO_MANY_PIXELS, IMAGE_DECODE_FAILED, IMAGE_DECODE_TIMEOUT) for bad input; throws RangeError
 * for a bad `offset` or an `out` too small (caller bugs), before decoding when the size is fixed.
 */
export async function preprocessInto(
  bytes: Uint8Array,
  out: Float32Array,
  offset: number,
  options: PreprocessOptions = {},
): Promise<PreprocessInfo> {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset must be a non-negative integer, got ${offset}`);
  }
  const opts = resolvePreprocessOptions(options);
  const fixed = fixedOutputSize(opts.config);
  if (fixed) checkRoom(out, offset, 3 * fixed.width * fixed.height);
  return run(bytes, opts, (floats) => {
    checkRoom(out, offset, floats);
    return [out, offset];
  });
}

/** Convenience: one image -> a new Float32Array of `3 * H * W` (CHW). */
export async function preprocess(bytes: Uint8Array, options: PreprocessOptions = {}): Promise<Float32Array> {
  let result: Float32Array | undefined;
  await run(bytes, resolvePreprocessOptions(options), (floats) => {
    result = new Float32Array(floats);
    return [result, 0];
  });
  return result!;
}

/** Floats one image occupies for this config ([3, H, W]), or undefined when it depends on the image. */
export function outputFloats(options: PreprocessOptions = {}): number | undefined {
  const fixed = fixedOutputSize(resolvePreprocessOptions(options).config);
  return fixed ? 3 * fixed.width * fixed.height : undefined;
}

/** The probed image, its planned geometry and the pixels it will decode to, within the pixel cap. */
export async function planImage(bytes: Uint8Array, opts: ResolvedPreprocessOptions) {
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
  return { source, geometry, region, pixelCount };
}

/** Decodes the planned region, checking the decoder returned what was planned. */
export async function decodePlanned(
  bytes: Uint8Array,
  plan: Awaited<ReturnType<typeof planImage>>,
  opts: ResolvedPreprocessOptions,
) {
  const { region } = plan;
  const decoded = await decodeRegion(bytes, plan.source, plan.geometry, opts);
  if (decoded.width !== region.width || decoded.height !== region.height || decoded.channels === 2) {
    throw new EmbedpoolError(
      'INTERNAL',
      `decoder returned ${decoded.width}x${decoded.height}x${decoded.channels}, expected ${region.width}x${region.height}`,
    );
  }
  return decoded;
}

async function run(
  bytes: Uint8Array,
  opts: ResolvedPreprocessOptions,
  target: (floats: number) => [Float32Array, number],
): Promise<PreprocessInfo> {
  const plan = await planImage(bytes, opts);
  const { source, geometry, region, pixelCount } = plan;
  const [out, offset] = target(3 * pixelCount);
  const decoded = await decodePlanned(bytes, plan, opts);
  hwcToChwInto(decoded.data, decoded.channels, pixelCount, normalizeTable(opts.config), out, offset);
  return {
    channels: 3,
    height: region.height,
    width: region.width,
    floats: 3 * pixelCount,
    source: {
      format: source.format,
      width: source.width,
      height: source.height,
      orientation: source.orientation,
      pages: source.pages,
      hasAlpha: source.hasAlpha,
      depth: source.depth,
    },
    resized: geometry.resized,
    path: decoded.path,
  };
}

function checkRoom(out: Float32Array, offset: number, floats: number): void {
  if (offset + floats > out.length) {
    throw new RangeError(`output has ${out.length} floats; ${floats} needed at offset ${offset}`);
  }
}
