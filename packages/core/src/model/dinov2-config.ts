import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { EmbedpoolError } from '../errors';

const positiveInt = z.number().int().positive();

// Newer transformers configs may spell sizes as [h, w]; the position grid is square, so we need h == w.
const squareSize = z
  .union([positiveInt, z.tuple([positiveInt, positiveInt])])
  .refine((v) => typeof v === 'number' || v[0] === v[1], 'only square sizes are supported')
  .transform((v) => (typeof v === 'number' ? v : v[0]));

/**
 * The Hugging Face `Dinov2Config` fields the graph depends on, with transformers' own defaults, so a
 * `config.json` from the hub parses as is. Unknown fields (dropout, backbone stages, ...) are dropped.
 */
export const dinov2ConfigSchema = z
  .object({
    model_type: z.string().optional(),
    hidden_size: positiveInt.default(768),
    num_hidden_layers: positiveInt.default(12),
    num_attention_heads: positiveInt.default(12),
    mlp_ratio: z.number().positive().default(4),
    hidden_act: z.string().default('gelu'),
    layer_norm_eps: z.number().positive().default(1e-6),
    image_size: squareSize.default(224),
    patch_size: squareSize.default(14),
    num_channels: positiveInt.default(3),
    qkv_bias: z.boolean().default(true),
    layerscale_value: z.number().default(1.0),
    use_swiglu_ffn: z.boolean().default(false),
    initializer_range: z.number().positive().default(0.02),
    // Dinov2WithRegisters (facebook/dinov2-with-registers-*): learned tokens between CLS and the patches.
    num_register_tokens: z.number().int().nonnegative().default(0),
  })
  .refine((c) => c.hidden_size % c.num_attention_heads === 0, {
    message: 'hidden_size must be a multiple of num_attention_heads',
  })
  .refine((c) => c.hidden_act === 'gelu', { message: "only hidden_act 'gelu' (exact, erf) is supported" })
  .refine((c) => c.image_size >= c.patch_size, { message: 'image_size must be at least patch_size' });

export type Dinov2Config = z.output<typeof dinov2ConfigSchema>;

/**
 * The with-registers models resample their position embedding with antialiasing and no +0.1 offset
 * (DINOv2's `interpolate_antialias=True, interpolate_offset=0` for the reg checkpoints).
 */
export function usesRegisterInterpolation(config: Dinov2Config): boolean {
  return config.num_register_tokens > 0 || config.model_type === 'dinov2_with_registers';
}
/** What a `config.json` may contain: every field optional, sizes as numbers or [h, w]. */
export type Dinov2ConfigInput = z.input<typeof dinov2ConfigSchema>;

export function parseDinov2Config(input: unknown): Dinov2Config {
  const parsed = dinov2ConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new EmbedpoolError('MODEL_INVALID', `invalid Dinov2Config: ${z.prettifyError(parsed.error)}`, {
      details: { issues: parsed.error.issues },
    });
  }
  return parsed.data;
}

export function loadDinov2Config(path: string): Dinov2Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new EmbedpoolError('MODEL_NOT_FOUND', `cannot read model config ${path}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new EmbedpoolError('MODEL_INVALID', `model config ${path} is not JSON`, { cause: err });
  }
  return parseDinov2Config(json);
}

/** Intermediate width of the MLP; SwiGLU shrinks it by 2/3 and rounds up to a multiple of 8, as HF does. */
export function mlpHiddenSize(config: Dinov2Config): number {
  const hidden = Math.trunc(config.hidden_size * config.mlp_ratio);
  return config.use_swiglu_ffn ? Math.trunc((Math.trunc((hidden * 2) / 3) + 7) / 8) * 8 : hidden;
}

function preset(fields: Dinov2ConfigInput): Readonly<Dinov2Config> {
  return Object.freeze(
    parseDinov2Config({
      model_type: 'dinov2',
      image_size: 518,
      patch_size: 14,
      layerscale_value: 1.0,
      ...fields,
    }),
  );
}

/** The facebook/dinov2-* checkpoints' architectures (ViT-S/14, B/14, L/14, g/14 at a 37x37 grid). */
export const DINOV2_SMALL_CONFIG = preset({
  hidden_size: 384,
  num_hidden_layers: 12,
  num_attention_heads: 6,
});
export const DINOV2_BASE_CONFIG = preset({
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
});
export const DINOV2_LARGE_CONFIG = preset({
  hidden_size: 1024,
  num_hidden_layers: 24,
  num_attention_heads: 16,
});
export const DINOV2_GIANT_CONFIG = preset({
  hidden_size: 1536,
  num_hidden_layers: 40,
  num_attention_heads: 24,
  use_swiglu_ffn: true,
});

/** facebook/dinov2-with-registers-*: the same four sizes with 4 register tokens. */
const withRegisters = (base: Dinov2Config): Readonly<Dinov2Config> =>
  preset({ ...base, model_type: 'dinov2_with_registers', num_register_tokens: 4 });
export const DINOV2_SMALL_REG_CONFIG = withRegisters(DINOV2_SMALL_CONFIG);
export const DINOV2_BASE_REG_CONFIG = withRegisters(DINOV2_BASE_CONFIG);
export const DINOV2_LARGE_REG_CONFIG = withRegisters(DINOV2_LARGE_CONFIG);
export const DINOV2_GIANT_REG_CONFIG = withRegisters(DINOV2_GIANT_CONFIG);

/** Every preset by the name of its checkpoint (facebook/<name>). */
export const DINOV2_PRESETS: Readonly<Record<string, Readonly<Dinov2Config>>> = Object.freeze({
  'dinov2-small': DINOV2_SMALL_CONFIG,
  'dinov2-base': DINOV2_BASE_CONFIG,
  'dinov2-large': DINOV2_LARGE_CONFIG,
  'dinov2-giant': DINOV2_GIANT_CONFIG,
  'dinov2-with-registers-small': DINOV2_SMALL_REG_CONFIG,
  'dinov2-with-registers-base': DINOV2_BASE_REG_CONFIG,
  'dinov2-with-registers-large': DINOV2_LARGE_REG_CONFIG,
  'dinov2-with-registers-giant': DINOV2_GIANT_REG_CONFIG,
});
