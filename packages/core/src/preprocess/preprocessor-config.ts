import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { EmbedpoolError } from '../errors';

/**
 * The fields of a Hugging Face `preprocessor_config.json` that `BitImageProcessor` (DINOv2) uses.
 * Missing fields take `facebook/dinov2-base`'s values (not the processor class's defaults), so the
 * dinov2-small/base/large/giant configs, which are all identical, parse to the same thing.
 */

/** PIL resampling filters we can reproduce: NEAREST, LANCZOS, BILINEAR, BICUBIC. BOX (4) and HAMMING (5) are refused. */
export const RESAMPLE_NAMES = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' } as const;
export type Resample = keyof typeof RESAMPLE_NAMES;

export type ResizeSize = { shortest_edge: number } | { height: number; width: number };

export interface PreprocessorConfig {
  size: ResizeSize;
  crop_size: { height: number; width: number };
  do_resize: boolean;
  do_center_crop: boolean;
  do_convert_rgb: boolean;
  do_rescale: boolean;
  do_normalize: boolean;
  resample: Resample;
  rescale_factor: number;
  image_mean: readonly [number, number, number];
  image_std: readonly [number, number, number];
}

/** `facebook/dinov2-base` `preprocessor_config.json` (small, large and giant use the same values). */
export const DINOV2_PREPROCESSOR_CONFIG: PreprocessorConfig = deepFreeze({
  crop_size: { height: 224, width: 224 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.485, 0.456, 0.406],
  image_std: [0.229, 0.224, 0.225],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 256 },
});

const D = DINOV2_PREPROCESSOR_CONFIG;
const dim = z.number().int().positive().max(65_535);

// HF `get_size_dict(size, default_to_square=False)`: an int means the shortest edge.
const sizeSchema = z
  .union([
    dim,
    z.looseObject({
      shortest_edge: dim.optional(),
      height: dim.optional(),
      width: dim.optional(),
    }),
  ])
  .transform((v, ctx): ResizeSize => {
    if (typeof v === 'number') return { shortest_edge: v };
    if (v.shortest_edge !== undefined) return { shortest_edge: v.shortest_edge };
    if (v.height !== undefined && v.width !== undefined) return { height: v.height, width: v.width };
    ctx.addIssue({
      code: 'custom',
      message: "size must contain 'shortest_edge' or both 'height' and 'width'",
    });
    return z.NEVER;
  });

// HF `get_size_dict(crop_size, default_to_square=True)`: an int means a square.
const cropSchema = z
  .union([dim, z.looseObject({ height: dim, width: dim })])
  .transform((v) => (typeof v === 'number' ? { height: v, width: v } : { height: v.height, width: v.width }));

const triple = (nonZero: boolean) =>
  z
    .union([z.number(), z.array(z.number()).length(3)])
    .transform((v): readonly [number, number, number] =>
      typeof v === 'number' ? [v, v, v] : [v[0]!, v[1]!, v[2]!],
    )
    .refine((v) => v.every((x) => Number.isFinite(x) && (!nonZero || x !== 0)), {
      message: nonZero ? 'must be finite and non-zero' : 'must be finite',
    });

export const preprocessorConfigSchema = z.looseObject({
  size: sizeSchema.default(D.size),
  crop_size: cropSchema.default(D.crop_size),
  do_resize: z.boolean().default(D.do_resize),
  do_center_crop: z.boolean().default(D.do_center_crop),
  do_convert_rgb: z.boolean().default(D.do_convert_rgb),
  do_rescale: z.boolean().default(D.do_rescale),
  do_normalize: z.boolean().default(D.do_normalize),
  resample: z
    .number()
    .int()
    .refine((r) => Object.hasOwn(RESAMPLE_NAMES, r), {
      message:
        'resample must be 0 (NEAREST), 1 (LANCZOS), 2 (BILINEAR) or 3 (BICUBIC); BOX and HAMMING are not supported',
    })
    .transform((r) => r as Resample)
    .default(D.resample),
  rescale_factor: z.number().positive().finite().default(D.rescale_factor),
  image_mean: triple(false).default(D.image_mean),
  image_std: triple(true).default(D.image_std),
});

export type PreprocessorConfigInput = z.input<typeof preprocessorConfigSchema>;

/** Validates a parsed `preprocessor_config.json`; unknown fields are ignored. Throws CONFIG_INVALID. */
export function parsePreprocessorConfig(json: unknown, source = 'preprocessor config'): PreprocessorConfig {
  const result = preprocessorConfigSchema.safeParse(json);
  if (!result.success) {
    throw new EmbedpoolError('CONFIG_INVALID', `invalid ${source}: ${z.prettifyError(result.error)}`, {
      cause: result.error,
    });
  }
  const c = result.data;
  return deepFreeze({
    size: c.size,
    crop_size: c.crop_size,
    do_resize: c.do_resize,
    do_center_crop: c.do_center_crop,
    do_convert_rgb: c.do_convert_rgb,
    do_rescale: c.do_rescale,
    do_normalize: c.do_normalize,
    resample: c.resample,
    rescale_factor: c.rescale_factor,
    image_mean: c.image_mean,
    image_std: c.image_std,
  });
}

/** Reads and validates a Hugging Face `preprocessor_config.json`. Throws CONFIG_INVALID. */
export async function loadPreprocessorConfig(path: string): Promise<PreprocessorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `cannot read preprocessor config ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `preprocessor config ${path} is not JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return parsePreprocessorConfig(json, `preprocessor config ${path}`);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
