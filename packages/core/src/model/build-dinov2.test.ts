import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  assertSharedFixtures,
  cosine,
  loadParityReference,
  PARITY_CONFIG,
  PARITY_MODEL,
  PARITY_WEIGHTS,
  parityImages,
  parityPixelValues,
} from '@embedpool/testkit';
import { naiveDinov2Forward } from '@embedpool/testkit/naive-forward';
import { maxAbsDiff, perturbWeights, runModel, syntheticPixels } from '@embedpool/testkit/test-helpers';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import { buildDinov2, buildDinov2Onnx, writeDinov2Onnx } from './build-dinov2';
import { DINOV2_GIANT_CONFIG, type Dinov2Config, loadDinov2Config, parseDinov2Config } from './dinov2-config';
import { randomDinov2Weights } from './random-weights';
import { readSafetensors } from './safetensors';

const PX = 3 * 224 * 224;

function fixtureBatch(names: string[]): Float32Array {
  const out = new Float32Array(names.length * PX);
  names.forEach((n, i) => {
    out.set(parityPixelValues(n), i * PX);
  });
  return out;
}

describe('buildDinov2Onnx against the parity fixture', () => {
  let config: Dinov2Config;
  const names = parityImages()
    .filter((i) => i.reference)
    .slice(0, 3)
    .map((i) => i.name);

  beforeAll(() => {
    assertSharedFixtures();
    config = loadDinov2Config(PARITY_CONFIG);
  });

  it('reproduces the exported model on a batch of real images within 1e-4', async () => {
    const pixels = fixtureBatch(names);
    const ours = await runModel(buildDinov2Onnx({ config, weights: PARITY_WEIGHTS }), pixels, 3, 224);
    const ref = await runModel(PARITY_MODEL, pixels, 3, 224);
    expect(ours.session.inputNames).toEqual(['pixel_values']);
    expect([...ours.session.outputNames].sort()).toEqual(['last_hidden_state', 'pooler_output']);
    expect(ours.last.dims).toEqual([3, 257, 192]);
    expect(ours.pooler.dims).toEqual([3, 192]);
    expect(maxAbsDiff(ours.last.data as Float32Array, ref.last.data as Float32Array)).toBeLessThan(1e-4);
    expect(maxAbsDiff(ours.pooler.data as Float32Array, ref.pooler.data as Float32Array)).toBeLessThan(1e-4);

    // And the vectors the API must return, stored independently of either ONNX file.
    const reference = loadParityReference();
    names.forEach((name, i) => {
      const vec = (ours.pooler.data as Float32Array).subarray(i * 192, (i + 1) * 192);
      expect(maxAbsDiff(vec, reference.embeddings[name]!)).toBeLessThan(1e-4);
    });
  });

  it('accepts the weights as a map, and a Dinov2ForImageClassification-style dinov2. prefix', async () => {
    const prefixed = new Map([...readSafetensors(PARITY_WEIGHTS)].map(([k, v]) => [`dinov2.${k}`, v]));
    prefixed.set('classifier.weight', { shape: [2, 384], data: new Float32Array(768) });
    const fromMap = buildDinov2Onnx({ config, weights: prefixed });
    const fromPath = buildDinov2Onnx({ config, weights: PARITY_WEIGHTS });
    expect(Buffer.from(fromMap).equals(Buffer.from(fromPath))).toBe(true);
  });

  it('float16 weights keep float32 I/O, halve the file and stay at cosine >= 0.999', async () => {
    const pixels = fixtureBatch(names);
    const fp32 = buildDinov2({ config, weights: PARITY_WEIGHTS });
    const fp16 = buildDinov2({ config, weights: PARITY_WEIGHTS, dtype: 'float16' });
    expect(fp16.model.length).toBeLessThan(fp32.model.length * 0.55);
    const a = await runModel(fp32.model, pixels, 3, 224);
    const b = await runModel(fp16.model, pixels, 3, 224);
    expect(b.last.type).toBe('float32');
    expect(b.pooler.type).toBe('float32');
    for (let i = 0; i < 3; i++) {
      const va = (a.pooler.data as Float32Array).subarray(i * 192, (i + 1) * 192);
      const vb = (b.pooler.data as Float32Array).subarray(i * 192, (i + 1) * 192);
      expect(cosine(va, vb)).toBeGreaterThanOrEqual(0.999);
    }
    expect(cosine(a.last.data as Float32Array, b.last.data as Float32Array)).toBeGreaterThanOrEqual(0.999);
  });
});

describe('buildDinov2Onnx with random weights', () => {
  const config = parseDinov2Config({
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    patch_size: 14,
    image_size: 518,
  });

  it('is deterministic per seed and differs across seeds', () => {
    const a = buildDinov2Onnx({ config, seed: 7 });
    const b = buildDinov2Onnx({ config, seed: 7 });
    const c = buildDinov2Onnx({ config, seed: 8 });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it('has a dynamic batch: an image gives the same vector alone and in a batch of 3', async () => {
    const model = buildDinov2Onnx({ config, seed: 3 });
    const batch = syntheticPixels(3, 224);
    const three = await runModel(model, batch, 3, 224);
    const one = await runModel(model, batch.slice(PX, 2 * PX), 1, 224);
    expect(three.pooler.dims).toEqual([3, 64]);
    expect(one.pooler.dims).toEqual([1, 64]);
    expect(
      maxAbsDiff(one.pooler.data as Float32Array, (three.pooler.data as Float32Array).subarray(64, 128)),
    ).toBeLessThan(1e-5);
    // Different images really do give different vectors (the batch is not collapsed).
    expect(
      maxAbsDiff(
        (three.pooler.data as Float32Array).subarray(0, 64),
        (three.pooler.data as Float32Array).subarray(64, 128),
      ),
    ).toBeGreaterThan(1e-3);
  });
});

describe('graph features beyond the fixture, against a naive float64 forward pass', () => {
  const cases: { name: string; config: Record<string, unknown>; imageSize: number }[] = [
    { name: 'GELU MLP, grid interpolated 4 -> 6', config: {}, imageSize: 24 },
    { name: 'SwiGLU FFN (ViT-g style)', config: { use_swiglu_ffn: true }, imageSize: 16 },
    {
      name: 'no qkv bias, layerscale 0.5, grid 4 -> 3',
      config: { qkv_bias: false, layerscale_value: 0.5 },
      imageSize: 12,
    },
    // Dinov2WithRegisters: 4 register tokens between CLS and the patches, antialiased position resampling.
    {
      name: 'register tokens, grid 4 -> 3 (antialiased shrink)',
      config: { model_type: 'dinov2_with_registers', num_register_tokens: 4 },
      imageSize: 12,
    },
    {
      name: 'register tokens, grid 4 -> 6 (antialiased enlarge)',
      config: { model_type: 'dinov2_with_registers', num_register_tokens: 4 },
      imageSize: 24,
    },
    {
      name: 'register tokens with SwiGLU (ViT-g with registers), grid 4',
      config: { model_type: 'dinov2_with_registers', num_register_tokens: 2, use_swiglu_ffn: true },
      imageSize: 16,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const config = parseDinov2Config({
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        patch_size: 4,
        image_size: 16,
        ...c.config,
      });
      const weights = perturbWeights(randomDinov2Weights(config, 11));
      const pixels = syntheticPixels(1, c.imageSize, 0.5);
      const { last, pooler } = await runModel(
        buildDinov2Onnx({ config, weights, imageSize: c.imageSize }),
        pixels,
        1,
        c.imageSize,
      );
      const expected = naiveDinov2Forward(config, weights, pixels, c.imageSize);
      const tokens = 1 + config.num_register_tokens + (c.imageSize / 4) ** 2;
      expect(last.dims).toEqual([1, tokens, 32]);
      expect(maxAbsDiff(last.data as Float32Array, expected.lastHiddenState)).toBeLessThan(1e-4);
      expect(maxAbsDiff(pooler.data as Float32Array, expected.pooler)).toBeLessThan(1e-4);
    });
  }
});

describe('register tokens', () => {
  // Each token shifted by a non-constant vector: a constant one would vanish in the LayerNorms.
  it('are wired in: changing them changes the CLS output, and the graph still matches the naive pass', async () => {
    const config = parseDinov2Config({
      model_type: 'dinov2_with_registers',
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      patch_size: 4,
      image_size: 16,
      num_register_tokens: 4,
    });
    const weights = perturbWeights(randomDinov2Weights(config, 5));
    expect(weights.get('embeddings.register_tokens')?.shape).toEqual([1, 4, 32]);
    const pixels = syntheticPixels(1, 16, 0.25);
    const before = await runModel(buildDinov2Onnx({ config, weights, imageSize: 16 }), pixels, 1, 16);
    const reg = weights.get('embeddings.register_tokens')!;
    for (let i = 0; i < reg.data.length; i++) reg.data[i] = reg.data[i]! + Math.sin(i);
    const after = await runModel(buildDinov2Onnx({ config, weights, imageSize: 16 }), pixels, 1, 16);
    expect(maxAbsDiff(before.pooler.data as Float32Array, after.pooler.data as Float32Array)).toBeGreaterThan(
      1e-3,
    );
    const expected = naiveDinov2Forward(config, weights, pixels, 16);
    expect(maxAbsDiff(after.pooler.data as Float32Array, expected.pooler)).toBeLessThan(1e-4);
  });

  it('a with-registers checkpoint without its register_tokens is refused', () => {
    const config = parseDinov2Config({
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      patch_size: 4,
      image_size: 16,
      num_register_tokens: 4,
    });
    const weights = randomDinov2Weights(config, 0);
    weights.delete('embeddings.register_tokens');
    expect(() => buildDinov2Onnx({ config, weights })).toThrow(/register_tokens/);
  });
});

describe('buildDinov2Onnx errors', () => {
  const config = parseDinov2Config({
    hidden_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    patch_size: 4,
    image_size: 16,
  });

  function codeOf(fn: () => unknown): string | undefined {
    try {
      fn();
    } catch (err) {
      return err instanceof EmbedpoolError ? err.code : `not an EmbedpoolError: ${String(err)}`;
    }
    return undefined;
  }

  it('rejects missing and misshapen weights with MODEL_INVALID', () => {
    const missing = randomDinov2Weights(config, 0);
    missing.delete('encoder.layer.0.mlp.fc2.weight');
    expect(codeOf(() => buildDinov2Onnx({ config, weights: missing }))).toBe('MODEL_INVALID');
    const misshapen = randomDinov2Weights(config, 0);
    misshapen.set('layernorm.weight', { shape: [31], data: new Float32Array(31) });
    expect(codeOf(() => buildDinov2Onnx({ config, weights: misshapen }))).toBe('MODEL_INVALID');
  });

  it('rejects unsupported configs and options with MODEL_INVALID', () => {
    expect(codeOf(() => buildDinov2Onnx({ config: { ...config, hidden_act: 'relu' } }))).toBe(
      'MODEL_INVALID',
    );
    expect(codeOf(() => buildDinov2Onnx({ config, imageSize: 2 }))).toBe('MODEL_INVALID');
    // ViT-g does not fit one protobuf even in fp16; refused before any weight is generated.
    expect(codeOf(() => buildDinov2Onnx({ config: DINOV2_GIANT_CONFIG, dtype: 'float16' }))).toBe(
      'MODEL_INVALID',
    );
    expect(codeOf(() => buildDinov2Onnx({ config, weights: '/nonexistent/model.safetensors' }))).toBe(
      'MODEL_NOT_FOUND',
    );
  });
});

describe('writeDinov2Onnx', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dinov2-write-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the model atomically and reports its size and parameter count', async () => {
    const out = join(dir, 'model.onnx');
    const config = loadDinov2Config(PARITY_CONFIG);
    const result = await writeDinov2Onnx({ config, weights: PARITY_WEIGHTS, out });
    expect(readdirSync(dir)).toEqual(['model.onnx']);
    expect(statSync(out).size).toBe(result.bytes);
    // Every tensor in the checkpoint is a parameter of Dinov2Model.
    const expected = [...readSafetensors(PARITY_WEIGHTS).values()].reduce((n, t) => n + t.data.length, 0);
    expect(result.params).toBe(expected);
    const session = await ort.InferenceSession.create(readFileSync(out));
    expect(session.outputNames).toContain('pooler_output');
  });
});
