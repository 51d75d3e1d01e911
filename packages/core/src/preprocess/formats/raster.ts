import { EmbedpoolError } from '../../errors';

/**
 * A fully decoded frame, already converted the way Pillow's `convert("RGB")` would see it: 8-bit,
 * 1 channel (grey) or 3 (RGB), alpha dropped, palette expanded. Rows top to bottom, HWC.
 */
export interface Raster {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** Width and height as a header declares them, read before any pixel is allocated. */
export interface RasterHeader {
  width: number;
  height: number;
}

/** The formats decoded here rather than by sharp (names as `allowedFormats` takes them). */
export type ExtraFormat = 'bmp' | 'ico' | 'ppm' | 'tga' | 'jp2' | 'heic';

export function decodeFailed(
  format: string,
  reason: string,
  details?: Record<string, unknown>,
): EmbedpoolError {
  return new EmbedpoolError('IMAGE_DECODE_FAILED', `image could not be decoded (${format}): ${reason}`, {
    details: { format, ...details },
  });
}

export function truncated(format: string): EmbedpoolError {
  return decodeFailed(format, 'the file is truncated', { reason: 'truncated' });
}

/** Refuses a frame larger than the pixel cap, or with no pixels, from its header alone. */
export function checkDimensions(format: string, header: RasterHeader, maxInputPixels: number): void {
  const { width, height } = header;
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width <= 0 || height <= 0) {
    throw decodeFailed(format, `header has no valid dimensions (${width}x${height})`);
  }
  const pixels = width * height;
  if (pixels > maxInputPixels) {
    throw new EmbedpoolError(
      'IMAGE_TOO_MANY_PIXELS',
      `image is ${width}x${height} (${pixels} pixels); the limit is ${maxInputPixels} pixels`,
      { details: { format, width, height, maxInputPixels } },
    );
  }
}

/** Pillow's 5-bit to 8-bit expansion in its `BGR;15`/`BGR;16` unpackers: v * 255 / 31, truncated. */
export function expand5(v: number): number {
  return ((v * 255) / 31) | 0;
}

export function expand6(v: number): number {
  return ((v * 255) / 63) | 0;
}
