import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbedpoolError } from '../errors';
import {
  DINOV2_PREPROCESSOR_CONFIG,
  fixedOutputSize,
  type PreprocessorConfig,
  preprocess,
} from '../preprocess';

/** Natural photos shipped with the project: what `model quantize` calibrates on unless told otherwise. */
export const DEFAULT_CALIBRATION_DIR = fileURLToPath(new URL('../../assets/calibration/', import.meta.url));
/** Other photos, never used for calibration: the quality gate's default held-out set. */
export const DEFAULT_HOLDOUT_DIR = fileURLToPath(new URL('../../assets/holdout/', import.meta.url));

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

export interface LoadedImage {
  name: string;
  /** sha256 of the file: tells a calibration photo from a held-out one whatever their names. */
  sha256: string;
  /** Model input, float32 CHW. */
  pixels: Float32Array;
}

/** The image files of a directory (not recursive), sorted by name. */
export async function listImages(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new EmbedpoolError('CONFIG_INVALID', `cannot read the image directory ${dir}`, { cause: err });
  }
  const files = entries.filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
  if (files.length === 0) throw new EmbedpoolError('CONFIG_INVALID', `no images in ${dir}`);
  return files.map((f) => join(dir, f));
}

/**
 * Decodes and preprocesses every image of `dir` the way the service does (the DINOv2 preprocessor
 * config unless another is given), at `size` x `size` when the model fixes its input size.
 */
export async function loadImageDir(
  dir: string,
  opts: { preprocessor?: PreprocessorConfig; size?: number; limit?: number } = {},
): Promise<LoadedImage[]> {
  let config = opts.preprocessor ?? DINOV2_PREPROCESSOR_CONFIG;
  if (opts.size !== undefined) {
    const fixed = fixedOutputSize(config);
    if (!fixed || fixed.height !== opts.size || fixed.width !== opts.size) {
      config = {
        ...config,
        do_center_crop: true,
        crop_size: { height: opts.size, width: opts.size },
        size: { shortest_edge: Math.round((opts.size * 256) / 224) },
      };
    }
  }
  const files = (await listImages(dir)).slice(0, opts.limit ?? Number.POSITIVE_INFINITY);
  const out: LoadedImage[] = [];
  for (const path of files) {
    const bytes = await readFile(path);
    try {
      out.push({
        name: path.slice(dir.length).replace(/^\/+/, ''),
        sha256: createHash('sha256').update(bytes).digest('hex'),
        pixels: await preprocess(bytes, { config }),
      });
    } catch (err) {
      throw new EmbedpoolError('CONFIG_INVALID', `cannot use ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return out;
}
