import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import {
  DINOV2_BASE_CONFIG,
  DINOV2_GIANT_CONFIG,
  DINOV2_LARGE_CONFIG,
  DINOV2_PRESETS,
  DINOV2_SMALL_CONFIG,
  mlpHiddenSize,
  parseDinov2Config,
} from './dinov2-config';
import { dinov2ParameterShapes } from './dinov2-params';

describe('Dinov2Config', () => {
  it('fills in transformers defaults', () => {
    const c = parseDinov2Config({});
    expect(c).toMatchObject({
      hidden_size: 768,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      image_size: 224,
      patch_size: 14,
      layer_norm_eps: 1e-6,
      qkv_bias: true,
      use_swiglu_ffn: false,
    });
  });

  it('accepts a hub config.json as is, including [h, w] sizes and unknown fields', () => {
    const c = parseDinov2Config({
      architectures: ['Dinov2Model'],
      hidden_dropout_prob: 0,
      image_size: [518, 518],
      patch_size: 14,
      hidden_size: 384,
      num_attention_heads: 6,
    });
    expect(c.image_size).toBe(518);
    expect('architectures' in c).toBe(false);
  });

  it('rejects what the graph cannot build with MODEL_INVALID', () => {
    for (const bad of [
      { hidden_size: 100, num_attention_heads: 12 },
      { hidden_act: 'gelu_new' },
      { image_size: [518, 224] },
      { patch_size: 0 },
    ]) {
      let err: unknown;
      try {
        parseDinov2Config(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(EmbedpoolError);
      expect((err as EmbedpoolError).code).toBe('MODEL_INVALID');
    }
  });

  it('has with-registers presets: the same sizes plus 4 register tokens', () => {
    const count = (c: Parameters<typeof dinov2ParameterShapes>[0]) =>
      dinov2ParameterShapes(c).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
    const pairs = [
      ['dinov2-small', 'dinov2-with-registers-small'],
      ['dinov2-base', 'dinov2-with-registers-base'],
      ['dinov2-large', 'dinov2-with-registers-large'],
      ['dinov2-giant', 'dinov2-with-registers-giant'],
    ] as const;
    for (const [plain, reg] of pairs) {
      const a = DINOV2_PRESETS[plain]!;
      const b = DINOV2_PRESETS[reg]!;
      expect(b).toMatchObject({
        model_type: 'dinov2_with_registers',
        num_register_tokens: 4,
        hidden_size: a.hidden_size,
        num_hidden_layers: a.num_hidden_layers,
        use_swiglu_ffn: a.use_swiglu_ffn,
      });
      expect(count(b) - count(a)).toBe(4 * a.hidden_size);
    }
  });

  it('has the facebook/dinov2-* presets with their published parameter counts', () => {
    const count = (c: Parameters<typeof dinov2ParameterShapes>[0]) =>
      dinov2ParameterShapes(c).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
    expect(
      [DINOV2_SMALL_CONFIG, DINOV2_BASE_CONFIG, DINOV2_LARGE_CONFIG, DINOV2_GIANT_CONFIG].map(
        (c) => c.hidden_size,
      ),
    ).toEqual([384, 768, 1024, 1536]);
    expect(DINOV2_BASE_CONFIG.image_size).toBe(518);
    // Hugging Face reports 22.06M, 86.58M, 304.4M and 1.136B parameters for the four checkpoints.
    expect(count(DINOV2_SMALL_CONFIG)).toBe(22_056_576);
    expect(count(DINOV2_BASE_CONFIG)).toBe(86_580_480);
    expect(Math.round(count(DINOV2_LARGE_CONFIG) / 1e5)).toBe(3044);
    expect(Math.round(count(DINOV2_GIANT_CONFIG) / 1e6)).toBe(1136);
    expect(mlpHiddenSize(DINOV2_GIANT_CONFIG)).toBe(4096);
    expect(mlpHiddenSize(DINOV2_BASE_CONFIG)).toBe(3072);
  });
});
