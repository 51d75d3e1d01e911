import type { Dinov2Config } from './dinov2-config';
import { dinov2ParameterShapes } from './dinov2-params';
import type { WeightMap } from './weights';

/**
 * mulberry32 driving an Irwin-Hall(4) approximation of N(0, std²): each 32-bit draw yields two 16-bit
 * uniforms, two draws make one sample. Integer-only and inlined, it fills ViT-B's 86M values in well
 * under a second; the result is bounded at ±2√3 std, which is the "truncated" part.
 */
class WeightRng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  fillNormal(out: Float32Array, std: number): void {
    // The sum of four uniforms on [0, 65535] has mean 2*65535 and standard deviation 65536/sqrt(3).
    const mean = 2 * 65535;
    const k = std / Math.sqrt((4 * (65536 * 65536 - 1)) / 12);
    let a = this.state;
    for (let i = 0; i < out.length; i++) {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r1 = (t ^ (t >>> 14)) >>> 0;
      a = (a + 0x6d2b79f5) | 0;
      t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r2 = (t ^ (t >>> 14)) >>> 0;
      out[i] = ((r1 & 0xffff) + (r1 >>> 16) + (r2 & 0xffff) + (r2 >>> 16) - mean) * k;
    }
    this.state = a;
  }
}

/**
 * Deterministic stand-in weights with Hugging Face's initialisation scheme (truncated-normal-like values for
 * projections and embeddings, zero biases, unit LayerNorm gains, layer scale = layerscale_value), for
 * benchmarks and tests that need a real-sized graph but no checkpoint. Same seed, same bytes.
 */
export function randomDinov2Weights(config: Dinov2Config, seed = 0): WeightMap {
  const rng = new WeightRng(seed);
  const std = config.initializer_range;
  const out: WeightMap = new Map();
  for (const [name, shape] of dinov2ParameterShapes(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('.lambda1')) data.fill(config.layerscale_value);
    else if (/norm\d?\.weight$/.test(name)) data.fill(1);
    else if (name.endsWith('.bias') || name === 'embeddings.mask_token') {
      // zeros already
    } else rng.fillNormal(data, std);
    out.set(name, { shape, data });
  }
  return out;
}
