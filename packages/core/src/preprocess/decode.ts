import sharp, { type KernelEnum, type Metadata, type Sharp, type SharpOptions } from 'sharp';
import { EmbedpoolError } from '../errors';
import { decodeExtraRegion, isExtraSource, probeExtra, type SharpPath, sniffExtraFormat } from './formats';
import { type Geometry, type Region, regionInside, type Size } from './geometry';
import type { ResolvedPreprocessOptions } from './limits';
import type { Resample } from './preprocessor-config';
import { resampleRegion } from './resample';

/**
 * Image bytes -> the cropped window of the resized image as HWC uint8 (1 = grey or 3 = RGB channels),
 * with libvips (sharp) doing the decoding and, for downscaling, the resizing on the libuv pool.
 *
 * Three paths, chosen from the header:
 * - 8-bit without alpha, downscaled: one sharp pipeline (decode, cubic resize, EXIF orientation, crop).
 * - alpha, 16-bit or CMYK: decode at full size first and convert to 8-bit RGB the way the reference
 *   (Pillow `convert("RGB")`) does: alpha dropped, 16-bit scaled v/257, CMYK without colour management.
 *   Then resize that. libvips would otherwise premultiply alpha around the resize (changing the colours
 *   under transparent pixels) and convert CMYK through an ICC profile.
 * - upscaled (short side below the target): decode at full size, then Pillow-exact resampling in JS of
 *   just the crop window (see resample.ts); inputs on this path are small.
 */

export interface SourceInfo {
  /** sharp's format name, e.g. `jpeg`, `png`, `heif`. */
  format: string;
  /** Size after EXIF orientation; for animations, one frame. */
  width: number;
  height: number;
  /** Size as stored, before orientation. */
  storedWidth: number;
  storedHeight: number;
  /** EXIF orientation, 1-8. */
  orientation: number;
  pages: number;
  /** The frame decoded: 0, or the primary image of a HEIF. */
  page: number;
  hasAlpha: boolean;
  /** libvips band format: `uchar`, `ushort`, ... */
  depth: string;
  channels: number;
  space: string;
  /** HEIF container codec (`av1` for AVIF, `hevc` for HEIC), when the format is heif. */
  compression: string | undefined;
}

export type DecodePath = 'sharp' | 'sharp-two-pass' | 'exact';

export interface DecodedRegion extends Size {
  /** HWC uint8. */
  data: Uint8Array;
  channels: number;
  path: DecodePath;
}

const KERNELS = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic' } as const satisfies Record<
  Resample,
  keyof KernelEnum
>;

/** Reads the header only: size limits, format allow-list, dimensions, orientation. Allocates no pixels. */
export async function probeImage(bytes: Uint8Array, opts: ResolvedPreprocessOptions): Promise<SourceInfo> {
  if (bytes.byteLength === 0) throw new EmbedpoolError('IMAGE_EMPTY', 'image is empty (0 bytes)');
  if (bytes.byteLength > opts.maxBytes) {
    throw new EmbedpoolError(
      'IMAGE_TOO_LARGE',
      `image is ${bytes.byteLength} bytes; the limit is ${opts.maxBytes} bytes`,
      { details: { bytes: bytes.byteLength, maxBytes: opts.maxBytes } },
    );
  }
  // Refuse text-like input (SVG, XML, HTML) and PDF before any parser sees it, unless allowed.
  const sniffed = sniffVectorFormat(bytes);
  if (sniffed && !opts.allowedFormats.has(sniffed)) throw unsupportedFormat(sniffed);
  // BMP, ICO/CUR, PNM, TGA, JPEG 2000 and HEIC: decoders of their own (formats/), sniffed from the bytes.
  const extra = sniffExtraFormat(bytes);
  if (extra) return probeExtra(bytes, extra, opts, SHARP_PATH);

  let meta: Metadata;
  try {
    // The pixel limit is checked below, from the header, with a clearer message.
    meta = await sharp(bytes, { limitInputPixels: false, failOn: opts.failOn }).metadata();
  } catch (err) {
    throw toImageError(err);
  }
  const format = meta.format as string | undefined;
  if (!format || !opts.allowedFormats.has(format)) throw unsupportedFormat(format ?? 'unknown');
  const storedWidth = meta.width;
  const storedHeight = meta.pageHeight ?? meta.height;
  if (!storedWidth || !storedHeight || storedWidth <= 0 || storedHeight <= 0) {
    throw new EmbedpoolError('IMAGE_DECODE_FAILED', `image header has no valid dimensions (${format})`);
  }
  const pixels = storedWidth * storedHeight;
  if (pixels > opts.maxInputPixels) {
    throw new EmbedpoolError(
      'IMAGE_TOO_MANY_PIXELS',
      `image is ${storedWidth}x${storedHeight} (${pixels} pixels); the limit is ${opts.maxInputPixels} pixels`,
      { details: { width: storedWidth, height: storedHeight, maxInputPixels: opts.maxInputPixels } },
    );
  }
  const orientation =
    meta.orientation && meta.orientation >= 1 && meta.orientation <= 8 ? meta.orientation : 1;
  const swap = orientation >= 5;
  return {
    format,
    width: swap ? storedHeight : storedWidth,
    height: swap ? storedWidth : storedHeight,
    storedWidth,
    storedHeight,
    orientation,
    pages: meta.pages ?? 1,
    page: format === 'heif' && meta.pagePrimary !== undefined ? meta.pagePrimary : 0,
    hasAlpha: meta.hasAlpha === true,
    depth: meta.depth ?? 'uchar',
    channels: meta.channels ?? 3,
    space: meta.space ?? 'srgb',
    compression: meta.compression,
  };
}

/** Decodes, resizes and crops to `geometry.region`. All sharp failures become typed EmbedpoolErrors. */
export async function decodeRegion(
  bytes: Uint8Array,
  source: SourceInfo,
  geometry: Geometry,
  opts: ResolvedPreprocessOptions,
): Promise<DecodedRegion> {
  if (isExtraSource(source)) return decodeExtraRegion(bytes, source, geometry, opts, SHARP_PATH);
  const { resized } = geometry;
  const upscale = resized.width > source.width || resized.height > source.height;
  const flatten = source.hasAlpha || source.depth === 'ushort' || source.space === 'cmyk';
  try {
    if (!upscale && !flatten) return await decodeOnePass(bytes, source, geometry, opts);
    return await resizeDecoded(await decodeFull(bytes, source, opts), geometry, opts);
  } catch (err) {
    if (source.format === 'heif' && source.compression === 'hevc' && !(err instanceof EmbedpoolError)) {
      // Prebuilt sharp decodes AVIF only; HEIC needs a libvips built with an HEVC decoder.
      throw new EmbedpoolError(
        'IMAGE_UNSUPPORTED_FORMAT',
        'unsupported image format: HEIC (HEVC) cannot be decoded',
        {
          cause: err,
          details: { format: 'heic' },
        },
      );
    }
    throw toImageError(err);
  }
}

/**
 * Full-size 8-bit pixels (grey or RGB, oriented) -> the cropped window of the resized image: Pillow-exact
 * resampling in JS when upscaling, sharp's resize from raw pixels otherwise.
 */
export async function resizeDecoded(
  full: DecodedRegion,
  geometry: Geometry,
  opts: ResolvedPreprocessOptions,
): Promise<DecodedRegion> {
  const { resized, region } = geometry;
  try {
    if (resized.width > full.width || resized.height > full.height) {
      const data = resampleRegion(full.data, full, full.channels, resized, region, opts.config.resample);
      return { data, width: region.width, height: region.height, channels: full.channels, path: 'exact' };
    }
    const raw = { width: full.width, height: full.height, channels: full.channels as 1 | 3 };
    const pipeline = sharp(full.data, { raw, limitInputPixels: opts.maxInputPixels });
    const out = await finish(
      resizeAndCrop(pipeline, geometry, resized, 1, opts),
      full.channels === 1 ? 'b-w' : 'srgb',
      region,
      opts,
    );
    return { ...out, path: 'sharp-two-pass' };
  } catch (err) {
    throw toImageError(err);
  }
}

function inputOptions(source: SourceInfo, opts: ResolvedPreprocessOptions): SharpOptions {
  return {
    failOn: opts.failOn,
    limitInputPixels: opts.maxInputPixels,
    pages: 1,
    page: source.page,
    // Pillow (the reference) ignores embedded ICC profiles.
    ignoreIcc: true,
  };
}

async function decodeOnePass(
  bytes: Uint8Array,
  source: SourceInfo,
  geometry: Geometry,
  opts: ResolvedPreprocessOptions,
): Promise<DecodedRegion> {
  const pipeline = sharp(bytes, inputOptions(source, opts));
  const grey = source.space === 'b-w' && source.channels === 1;
  const out = await finish(
    resizeAndCrop(pipeline, geometry, geometry.resized, source.orientation, opts),
    grey ? 'b-w' : 'srgb',
    geometry.region,
    opts,
  );
  return { ...out, path: 'sharp' };
}

/**
 * Resize in the stored frame, then orient, then crop. Orienting after the resize (rather than sharp's
 * `autoOrient`, which rotates the full-size image first) keeps phone portraits cheap; the order of
 * sharp's calls matters: `rotate` after `resize` makes the rotation a post-resize step.
 */
function resizeAndCrop(
  pipeline: Sharp,
  geometry: Geometry,
  resized: Size,
  orientation: number,
  opts: ResolvedPreprocessOptions,
): Sharp {
  const swap = orientation >= 5;
  let p = pipeline.resize(swap ? resized.height : resized.width, swap ? resized.width : resized.height, {
    fit: 'fill',
    kernel: KERNELS[opts.config.resample],
    fastShrinkOnLoad: opts.shrinkOnLoad,
  });
  // sharp applies flip, then flop, then the rotation: these reproduce EXIF orientations 2-8.
  const [angle, flip, flop] = ORIENT[orientation] ?? ORIENT[1]!;
  if (angle) p = p.rotate(angle);
  if (flip) p = p.flip();
  if (flop) p = p.flop();
  return crop(p, geometry.region, resized);
}

const ORIENT: Record<number, readonly [number, boolean, boolean]> = {
  1: [0, false, false],
  2: [0, false, true],
  3: [180, false, false],
  4: [0, true, false],
  5: [270, false, true],
  6: [90, false, false],
  7: [90, false, true],
  8: [270, false, false],
};

/** Extract the part of the region inside the image, then zero-pad (sharp extracts before it extends). */
function crop(pipeline: Sharp, region: Region, image: Size): Sharp {
  if (
    region.left === 0 &&
    region.top === 0 &&
    region.width === image.width &&
    region.height === image.height
  ) {
    return pipeline;
  }
  const left = Math.max(0, region.left);
  const top = Math.max(0, region.top);
  const width = Math.min(image.width, region.left + region.width) - left;
  const height = Math.min(image.height, region.top + region.height) - top;
  let p = pipeline.extract({ left, top, width, height });
  if (!regionInside(region, image)) {
    p = p.extend({
      top: top - region.top,
      left: left - region.left,
      bottom: region.top + region.height - (top + height),
      right: region.left + region.width - (left + width),
      background: { r: 0, g: 0, b: 0, alpha: 1 },
    });
  }
  return p;
}

/**
 * Runs the pipeline to raw pixels. The size comes from the region, not from sharp's `info`: with a post-resize
 * `extract` followed by `extend`, sharp 0.35 reports the extract's size in `info` while the data is extended.
 */
async function finish(
  pipeline: Sharp,
  space: 'srgb' | 'b-w',
  expected: Size,
  opts: ResolvedPreprocessOptions,
): Promise<Omit<DecodedRegion, 'path'>> {
  let p = pipeline.toColourspace(space).raw();
  if (opts.decodeTimeoutSeconds > 0) p = p.timeout({ seconds: opts.decodeTimeoutSeconds });
  const { data, info } = await p.toBuffer({ resolveWithObject: true });
  if (data.length !== expected.width * expected.height * info.channels) {
    throw new EmbedpoolError(
      'INTERNAL',
      `decoder returned ${data.length} bytes, expected ${expected.width}x${expected.height}x${info.channels}`,
    );
  }
  return { data, width: expected.width, height: expected.height, channels: info.channels };
}

/**
 * Full-size decode, oriented, alpha dropped (not composited), 16-bit scaled to 8 bits as round(v / 257),
 * CMYK converted the way Pillow's `convert("RGB")` does it (no colour management).
 */
async function decodeFull(
  bytes: Uint8Array,
  source: SourceInfo,
  opts: ResolvedPreprocessOptions,
): Promise<DecodedRegion> {
  const cmyk = source.space === 'cmyk';
  const wide = source.depth === 'ushort';
  const colour = source.channels - (source.hasAlpha ? 1 : 0);
  let p = sharp(bytes, { ...inputOptions(source, opts), autoOrient: true });
  // Keep CMYK as decoded: sharp would otherwise convert it through its built-in ICC profile.
  if (cmyk) p = p.pipelineColourspace('cmyk');
  if (source.hasAlpha) p = p.removeAlpha();
  const space = cmyk ? 'cmyk' : colour === 1 ? (wide ? 'grey16' : 'b-w') : wide ? 'rgb16' : 'srgb';
  p = p.toColourspace(space).raw(wide ? { depth: 'ushort' } : undefined);
  if (opts.decodeTimeoutSeconds > 0) p = p.timeout({ seconds: opts.decodeTimeoutSeconds });
  const { data, info } = await p.toBuffer({ resolveWithObject: true });
  let pixels: Uint8Array = data;
  if (wide) {
    const words = new Uint16Array(data.buffer, data.byteOffset, data.byteLength >>> 1);
    pixels = new Uint8Array(words.length);
    // floor((v + 128) / 257) == round(v / 257) for every 16-bit v (no ties exist).
    for (let i = 0; i < words.length; i++) pixels[i] = ((words[i]! + 128) / 257) | 0;
  }
  let channels = info.channels;
  if (cmyk && channels === 4) {
    pixels = cmykToRgb(pixels, info.width * info.height);
    channels = 3;
  }
  return { data: pixels, width: info.width, height: info.height, channels, path: 'sharp' };
}

/** Pillow `cmyk2rgb`: v = (255 - k) - MULDIV255(c, 255 - k), per channel. */
export function cmykToRgb(cmyk: Uint8Array, pixelCount: number): Uint8Array {
  const rgb = new Uint8Array(pixelCount * 3);
  for (let i = 0, p = 0, o = 0; i < pixelCount; i++, p += 4, o += 3) {
    const nk = 255 - cmyk[p + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = cmyk[p + c]! * nk + 128;
      rgb[o + c] = nk - (((t >> 8) + t) >> 8);
    }
  }
  return rgb;
}

/** `<` first (after a BOM and whitespace) is SVG/XML/HTML; `%PDF` is PDF. Raster formats start otherwise. */
function sniffVectorFormat(bytes: Uint8Array): 'svg' | 'pdf' | undefined {
  let i = 0;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
  while (
    i < bytes.length &&
    i < 4096 &&
    (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0a || bytes[i] === 0x0d)
  ) {
    i++;
  }
  if (bytes[i] === 0x3c) return 'svg';
  if (bytes[0] === 0x25 && bytes[1] === 0x50 && bytes[2] === 0x44 && bytes[3] === 0x46) return 'pdf';
  // gzip: sharp reads gzipped SVG (.svgz).
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return 'svg';
  return undefined;
}

function unsupportedFormat(format: string): EmbedpoolError {
  return new EmbedpoolError('IMAGE_UNSUPPORTED_FORMAT', `unsupported image format: ${format}`, {
    details: { format },
  });
}

/** Maps a sharp/libvips failure to a typed error; EmbedpoolErrors pass through. */
export function toImageError(err: unknown): EmbedpoolError {
  if (err instanceof EmbedpoolError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const first = (message.split('\n')[0] ?? '').trim().slice(0, 300);
  if (/exceeds pixel limit/i.test(message)) {
    return new EmbedpoolError('IMAGE_TOO_MANY_PIXELS', `image has too many pixels: ${first}`, { cause: err });
  }
  if (/\btimeout\b/i.test(message)) {
    return new EmbedpoolError('IMAGE_DECODE_TIMEOUT', `image decoding timed out: ${first}`, { cause: err });
  }
  if (/unsupported image format/i.test(message)) {
    return new EmbedpoolError('IMAGE_UNSUPPORTED_FORMAT', 'unsupported image format', { cause: err });
  }
  if (/buffer is empty/i.test(message)) {
    return new EmbedpoolError('IMAGE_EMPTY', 'image is empty (0 bytes)', { cause: err });
  }
  return new EmbedpoolError('IMAGE_DECODE_FAILED', `image could not be decoded: ${first}`, { cause: err });
}

/** What the other formats' decoders (formats/) call back into: declarations are hoisted, so this is complete. */
const SHARP_PATH: SharpPath = { probeImage, decodeRegion, resizeDecoded };
