import { EmbedpoolError } from '../../errors';
import type { DecodedRegion, decodeRegion, probeImage, resizeDecoded, SourceInfo } from '../decode';
import type { Geometry } from '../geometry';
import type { ResolvedPreprocessOptions } from '../limits';
import { isBmp, parseBmpFile } from './bmp';
import { isHeicContainer } from './heic';
import { icoKind, parseIco } from './ico';
import { isJ2k, isJp2, parseJ2k } from './jpeg2000';
import { isPnm, parsePnm } from './pnm';
import { checkDimensions, type ExtraFormat, type RasterHeader } from './raster';
import { isTga, parseTga } from './tga';
import { decodeThreads } from './thread-pool';

export type { ExtraFormat, Raster } from './raster';
export { DecodeThreadPool, decodeThreads } from './thread-pool';

/** File name extensions of every format the service decodes (for listing blob containers). */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze([
  ...['jpg', 'jpeg', 'jpe', 'jfif', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'],
  ...[
    'heic',
    'heif',
    'hif',
    'bmp',
    'dib',
    'ico',
    'cur',
    'pbm',
    'pgm',
    'ppm',
    'pnm',
    'tga',
    'jp2',
    'j2k',
    'j2c',
    'jpf',
  ],
]);

/** The format of `bytes` when it is one of the extra formats, from the bytes alone. */
export function sniffExtraFormat(bytes: Uint8Array): ExtraFormat | undefined {
  if (isBmp(bytes)) return 'bmp';
  if (icoKind(bytes)) return 'ico';
  if (isPnm(bytes)) return 'ppm';
  if (isJp2(bytes) || isJ2k(bytes)) return 'jp2';
  if (isHeicContainer(bytes)) return 'heic';
  // No signature: last, and only for headers every field of which is valid.
  if (isTga(bytes)) return 'tga';
  return undefined;
}

/** A probed extra-format image: the usual SourceInfo plus what decoding it needs. */
export interface ExtraSourceInfo extends SourceInfo {
  extra: { format: ExtraFormat; png?: { offset: number; source: SourceInfo } };
}

/**
 * The sharp path of decode.ts, handed in by its caller: a PNG inside an icon takes that path, and every
 * raster ends in its resize. Passed rather than imported, so decode.ts and this module form no import cycle.
 */
export interface SharpPath {
  probeImage: typeof probeImage;
  decodeRegion: typeof decodeRegion;
  resizeDecoded: typeof resizeDecoded;
}

export function isExtraSource(source: SourceInfo): source is ExtraSourceInfo {
  return (source as Partial<ExtraSourceInfo>).extra !== undefined;
}

/** Header only: allow-list, dimensions, pixel cap. HEIC's container is parsed by libheif on a thread. */
export async function probeExtra(
  bytes: Uint8Array,
  format: ExtraFormat,
  opts: ResolvedPreprocessOptions,
  sharpPath: SharpPath,
): Promise<ExtraSourceInfo> {
  if (!opts.allowedFormats.has(format)) {
    throw new EmbedpoolError('IMAGE_UNSUPPORTED_FORMAT', `unsupported image format: ${format}`, {
      details: { format },
    });
  }
  let header: RasterHeader;
  let channels = 3;
  switch (format) {
    case 'bmp':
      header = parseBmpFile(bytes);
      break;
    case 'ppm': {
      const h = parsePnm(bytes);
      header = h;
      channels = h.kind === 3 || h.kind === 6 ? 3 : 1;
      break;
    }
    case 'tga': {
      const h = parseTga(bytes);
      header = h;
      channels = (h.imageType & 7) === 3 ? 1 : 3;
      break;
    }
    case 'jp2':
      header = parseJ2k(bytes);
      break;
    case 'ico': {
      const entry = parseIco(bytes);
      if (entry.kind === 'png') {
        // A PNG inside an icon takes the PNG path as it is: same decoder, same limits.
        const inner = await sharpPath.probeImage(bytes.subarray(entry.offset), {
          ...opts,
          allowedFormats: new Set(['png']),
        });
        return { ...inner, format: 'ico', extra: { format, png: { offset: entry.offset, source: inner } } };
      }
      header = entry.layout;
      break;
    }
    case 'heic': {
      const { header: h } = await decodeThreads().run({
        op: 'probe',
        format,
        bytes,
        maxInputPixels: opts.maxInputPixels,
        timeoutSeconds: opts.decodeTimeoutSeconds,
      });
      header = h;
      break;
    }
  }
  checkDimensions(format, header, opts.maxInputPixels);
  const { width, height } = header;
  return {
    format,
    width,
    height,
    storedWidth: width,
    storedHeight: height,
    orientation: 1,
    pages: 1,
    page: 0,
    hasAlpha: false,
    depth: 'uchar',
    channels,
    space: channels === 1 ? 'b-w' : 'srgb',
    compression: undefined,
    extra: { format },
  };
}

/** Full decode on a decoder thread, then the same resize and crop as every other format. */
export async function decodeExtraRegion(
  bytes: Uint8Array,
  source: ExtraSourceInfo,
  geometry: Geometry,
  opts: ResolvedPreprocessOptions,
  sharpPath: SharpPath,
): Promise<DecodedRegion> {
  const { png } = source.extra;
  if (png) return sharpPath.decodeRegion(bytes.subarray(png.offset), png.source, geometry, opts);
  const { raster } = await decodeThreads().run({
    op: 'decode',
    format: source.extra.format,
    bytes,
    maxInputPixels: opts.maxInputPixels,
    timeoutSeconds: opts.decodeTimeoutSeconds,
  });
  if (!raster || raster.width !== source.width || raster.height !== source.height) {
    throw new EmbedpoolError(
      'IMAGE_DECODE_FAILED',
      `image could not be decoded (${source.format}): decoded size differs from its header`,
      { details: { format: source.format } },
    );
  }
  return sharpPath.resizeDecoded({ ...raster, path: 'exact' }, geometry, opts);
}
