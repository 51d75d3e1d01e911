import type { PreprocessorConfig, ResizeSize } from './preprocessor-config';

export interface Size {
  width: number;
  height: number;
}

/**
 * A window of the resized image, in its pixel coordinates. It may reach past the image (negative
 * `left`/`top`, or beyond the far edge) when the crop is larger than the image: those pixels are zeros
 * before rescaling, as in Hugging Face's `center_crop`, which pads.
 */
export interface Region extends Size {
  left: number;
  top: number;
}

export interface Geometry {
  /** The image after EXIF orientation. */
  source: Size;
  /** After `do_resize` (equal to `source` when resizing is off). */
  resized: Size;
  /** The window of `resized` that becomes the tensor. */
  region: Region;
}

/**
 * Hugging Face `get_resize_output_image_size`: with `shortest_edge` the short side becomes exactly that and
 * the long side `int(shortest_edge * long / short)` (truncated, float division like Python's); with
 * `height`/`width` the image is stretched to that size.
 */
export function resizeOutputSize(source: Size, size: ResizeSize): Size {
  if ('shortest_edge' in size) {
    const s = size.shortest_edge;
    const { width, height } = source;
    if (width <= height) return { width: s, height: Math.trunc((s * height) / width) };
    return { width: Math.trunc((s * width) / height), height: s };
  }
  return { width: size.width, height: size.height };
}

/**
 * Hugging Face `center_crop`: offset `(orig - crop) // 2` on each axis; an axis shorter than the crop is
 * zero-padded with `ceil((crop - orig) / 2)` before it.
 */
export function centerCropRegion(image: Size, crop: Size): Region {
  return {
    left: cropStart(image.width, crop.width),
    top: cropStart(image.height, crop.height),
    width: crop.width,
    height: crop.height,
  };
}

function cropStart(orig: number, crop: number): number {
  return orig >= crop ? Math.floor((orig - crop) / 2) : -Math.ceil((crop - orig) / 2);
}

export function planGeometry(config: PreprocessorConfig, source: Size): Geometry {
  const resized = config.do_resize ? resizeOutputSize(source, config.size) : { ...source };
  const region = config.do_center_crop
    ? centerCropRegion(resized, config.crop_size)
    : { left: 0, top: 0, width: resized.width, height: resized.height };
  return { source, resized, region };
}

/** The tensor's [height, width] when it does not depend on the image (center crop, or a fixed resize), else undefined. */
export function fixedOutputSize(config: PreprocessorConfig): Size | undefined {
  if (config.do_center_crop) return { width: config.crop_size.width, height: config.crop_size.height };
  if (config.do_resize && 'height' in config.size)
    return { width: config.size.width, height: config.size.height };
  return undefined;
}

/** True when the region lies wholly inside the resized image (no padding needed). */
export function regionInside(region: Region, image: Size): boolean {
  return (
    region.left >= 0 &&
    region.top >= 0 &&
    region.left + region.width <= image.width &&
    region.top + region.height <= image.height
  );
}
