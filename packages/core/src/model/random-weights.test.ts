import { describe, expect, it } from 'vitest';
import { parseDinov2Config } from './dinov2-config';
import { dinov2ParameterShapes } from './dinov2-params';
import { randomDinov2Weights } from './random-weights';

describe('randomDinov2Weights', () => {
  const config = parseDinov2Config({
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    layerscale_value: 0.1,
  });

  it('covers every Dinov2Model parameter with its shape', () => {
    const w = randomDinov2Weights(config, 1);
    expect([...w.keys()]).toEqual(dinov2ParameterShapes(config).map(([n]) => n));
    for (const [name, shape] of dinov2ParameterShapes(config)) expect(w.get(name)!.shape).toEqual(shape);
  });

  it('initialises like Hugging Face: ~N(0, 0.02) projections, zero biases, unit norms, layer scale', () => {
    const w = randomDinov2Weights(config, 1);
    const fc1 = w.get('encoder.layer.0.mlp.fc1.weight')!.data;
    let sum = 0;
    let sq = 0;
    let max = 0;
    for (const v of fc1) {
      sum += v;
      sq += v * v;
      max = Math.max(max, Math.abs(v));
    }
    const mean = sum / fc1.length;
    const std = Math.sqrt(sq / fc1.length - mean * mean);
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
    expect(max).toBeLessThanOrEqual(0.02 * 2 * Math.sqrt(3) + 1e-6);
    expect(w.get('encoder.layer.1.mlp.fc1.bias')!.data.every((v) => v === 0)).toBe(true);
    expect(w.get('encoder.layer.1.norm2.weight')!.data.every((v) => v === 1)).toBe(true);
    expect(w.get('layernorm.weight')!.data.every((v) => v === 1)).toBe(true);
    expect(w.get('encoder.layer.0.layer_scale1.lambda1')!.data.every((v) => v === Math.fround(0.1))).toBe(
      true,
    );
  });

  it('is deterministic per seed', () => {
    const a = randomDinov2Weights(config, 5).get('embeddings.position_embeddings')!.data;
    const b = randomDinov2Weights(config, 5).get('embeddings.position_embeddings')!.data;
    const c = randomDinov2Weights(config, 6).get('embeddings.position_embeddings')!.data;
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });
});
