import sharp from 'sharp';
import { DINOV2_PREPROCESSOR_CONFIG, type PreprocessorConfig } from './preprocessor-config';

/** Format names as `sharp(...).metadata()` reports them (AVIF and HEIC both report `heif`). */
export type ImageFormat =
  | 'jpeg'
  | 'png'
  | 'webp'
  | 'gif'
  | 'tiff'
  | 'heif'
  | 'svg'
  | 'pdf'
  | 'jp2'
  | 'jxl'
  | 'magick'
  | 'openslide'
  | 'ppm'
  | 'fits'
  | 'vips'
  | 'raw'
  // Decoded by formats/ rather than sharp: BMP, ICO/CUR, PBM/PGM/PPM, TGA, JPEG 2000, HEIC.
  | 'bmp'
  | 'ico'
  | 'tga'
  | 'heic';

/** When libvips aborts on damaged pixel data, least to most strict (sharp's `failOn`). */
export type FailOn = 'none' | 'truncated' | 'error' | 'warning';

export interface PreprocessOptions {
  /**
   * Hugging Face preprocessor config; defaults to `facebook/dinov2-base`'s. Build it with
   * `parsePreprocessorConfig` / `loadPreprocessorConfig`: values are not re-validated per call.
   */
  config?: PreprocessorConfig;
  /** Largest encoded input accepted, in bytes (IMAGE_TOO_LARGE above it). */
  maxBytes?: number;
  /** Largest decoded frame accepted, width x height (IMAGE_TOO_MANY_PIXELS above it; checked from the header). */
  maxInputPixels?: number;
  /** Formats accepted; anything else is IMAGE_UNSUPPORTED_FORMAT. Only formats this sharp build decodes from buffers work. */
  allowedFormats?: readonly ImageFormat[];
  /** sharp `failOn`: 'truncated' rejects truncated files but keeps images with minor warnings. */
  failOn?: FailOn;
  /** Per-decode time limit in whole seconds (sharp `timeout`); IMAGE_DECODE_TIMEOUT when exceeded. 0 disables. */
  decodeTimeoutSeconds?: number;
  /**
   * Speed option (sharp `fastShrinkOnLoad`). Off (the default), a JPEG is shrunk in the DCT only while
   * leaving at least 2x for the cubic resize, which measured closest to Pillow; on, JPEG shrinks up to 8x
   * and WebP scales while decoding. Faster on large photos, a little further from the reference
   * (numbers in parity.test.ts).
   */
  shrinkOnLoad?: boolean;
}

export interface ResolvedPreprocessOptions {
  config: PreprocessorConfig;
  maxBytes: number;
  maxInputPixels: number;
  allowedFormats: ReadonlySet<string>;
  failOn: FailOn;
  decodeTimeoutSeconds: number;
  shrinkOnLoad: boolean;
}

const CANDIDATE_FORMATS: readonly ImageFormat[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif'];

/** Decoders of formats/, which do not depend on the sharp build. */
const EXTRA_FORMATS: readonly ImageFormat[] = ['bmp', 'ico', 'ppm', 'tga', 'jp2', 'heic'];

/** Raster formats this sharp build can decode from a buffer, and formats/'s. SVG and PDF are off unless asked for. */
export const DEFAULT_ALLOWED_FORMATS: readonly ImageFormat[] = Object.freeze([
  ...CANDIDATE_FORMATS.filter((f) => sharpCanDecode(f)),
  ...EXTRA_FORMATS,
]);

export const DEFAULT_PREPROCESS_LIMITS = Object.freeze({
  maxBytes: 32 * 1024 * 1024,
  maxInputPixels: 8192 * 8192,
  failOn: 'truncated' as FailOn,
  decodeTimeoutSeconds: 10,
  shrinkOnLoad: false,
});

export function sharpCanDecode(format: string): boolean {
  const info = (sharp.format as unknown as Record<string, { input?: { buffer?: boolean } } | undefined>)[
    format
  ];
  return info?.input?.buffer === true;
}

export function resolvePreprocessOptions(options: PreprocessOptions = {}): ResolvedPreprocessOptions {
  const d = DEFAULT_PREPROCESS_LIMITS;
  const resolved: ResolvedPreprocessOptions = {
    config: options.config ?? DINOV2_PREPROCESSOR_CONFIG,
    maxBytes: positiveInt('maxBytes', options.maxBytes ?? d.maxBytes),
    maxInputPixels: positiveInt('maxInputPixels', options.maxInputPixels ?? d.maxInputPixels),
    allowedFormats: new Set(options.allowedFormats ?? DEFAULT_ALLOWED_FORMATS),
    failOn: options.failOn ?? d.failOn,
    decodeTimeoutSeconds: nonNegativeInt(
      'decodeTimeoutSeconds',
      options.decodeTimeoutSeconds ?? d.decodeTimeoutSeconds,
    ),
    shrinkOnLoad: options.shrinkOnLoad ?? d.shrinkOnLoad,
  };
  if (resolved.decodeTimeoutSeconds > 3600) throw new RangeError('decodeTimeoutSeconds must be at most 3600');
  return resolved;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

function nonNegativeInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative integer`);
  return value;
}
