import { readFileSync } from 'node:fs';
import { PARITY_MODEL, PARITY_WEIGHTS } from '@embedpool/testkit';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { bicubicResizeHwc, interpolatePosEmbed } from './pos-embed';
import { readSafetensors } from './safetensors';

describe('bicubicResizeHwc', () => {
  it('matches a hand-computed 4x4 -> 2x2 case (A = -0.75, clamped borders)', () => {
    // Every row is [1, 2, 4, 8]. Halving: source x = 2 * (o + 0.5) - 0.5 = 0.5 and 2.5, so t = 0.5 and
    // the taps weigh [-0.09375, 0.59375, 0.59375, -0.09375]. o = 0 reads x = [-1 -> 0, 0, 1, 2]:
    //   -0.09375*1 + 0.59375*1 + 0.59375*2 - 0.09375*4 = 1.3125
    // o = 1 reads x = [1, 2, 3, 4 -> 3]:
    //   -0.09375*2 + 0.59375*4 + 0.59375*8 - 0.09375*8 = 6.1875
    // Rows are identical, and the y weights sum to 1, so both output rows are [1.3125, 6.1875].
    const src = Float32Array.from({ length: 16 }, (_, i) => [1, 2, 4, 8][i % 4]!);
    expect([...bicubicResizeHwc(src, 4, 4, 1, 2, 2)]).toEqual([1.3125, 6.1875, 1.3125, 6.1875]);
  });

  it('keeps channels apart in channels-last layout', () => {
    const src = new Float32Array(4 * 4 * 2);
    for (let i = 0; i < 16; i++) {
      src[i * 2] = [1, 2, 4, 8][i % 4]!;
      src[i * 2 + 1] = 7;
    }
    expect([...bicubicResizeHwc(src, 4, 4, 2, 2, 2)]).toEqual([1.3125, 7, 6.1875, 7, 1.3125, 7, 6.1875, 7]);
  });

  it('steps by 1/scale_factor when one is given (the DINOv2 +0.1 rule)', () => {
    // Keys' kernel written out independently: |x| <= 1: (A+2)|x|^3 - (A+3)|x|^2 + 1; 1 < |x| < 2:
    // A|x|^3 - 5A|x|^2 + 8A|x| - 4A. On a horizontal ramp (value = x), away from the borders, the output
    // at o is the kernel-weighted average of the 4 integer x around (o + 0.5) * step - 0.5.
    const A = -0.75;
    const k = (x: number) => {
      const a = Math.abs(x);
      return a <= 1
        ? (A + 2) * a ** 3 - (A + 3) * a ** 2 + 1
        : A * a ** 3 - 5 * A * a ** 2 + 8 * A * a - 4 * A;
    };
    const expectedAt = (o: number, step: number) => {
      const x = (o + 0.5) * step - 0.5;
      const x0 = Math.floor(x);
      let v = 0;
      for (let j = x0 - 1; j <= x0 + 2; j++) v += k(x - j) * j;
      return v;
    };
    const src = Float32Array.from({ length: 37 * 37 }, (_, i) => i % 37);
    const out = bicubicResizeHwc(src, 37, 37, 1, 16, 16, { scaleH: 16.1 / 37, scaleW: 16.1 / 37 });
    const plain = bicubicResizeHwc(src, 37, 37, 1, 16, 16);
    for (let o = 1; o < 15; o++) {
      expect(out[5 * 16 + o]).toBeCloseTo(expectedAt(o, 37 / 16.1), 4);
      expect(plain[5 * 16 + o]).toBeCloseTo(expectedAt(o, 37 / 16), 4);
      // The two rules really differ, by far more than rounding.
      expect(Math.abs(out[5 * 16 + o]! - plain[5 * 16 + o]!)).toBeGreaterThan(0.01);
    }
  });
});

describe('interpolatePosEmbed', () => {
  it('passes an equal grid through untouched', () => {
    const pos = Float32Array.from({ length: 5 * 3 }, (_, i) => i);
    expect(interpolatePosEmbed(pos, 2, 2, 3)).toBe(pos);
  });

  it('reproduces the position embedding baked into the fixture export (37x37 -> 16x16)', () => {
    const model = onnxProto.onnx.ModelProto.decode(readFileSync(PARITY_MODEL));
    // The exporter folded cls/patch + interpolated positions into the constant the embeddings Add uses.
    const baked = model
      .graph!.node!.filter((n) => n.opType === 'Constant')
      .map((n) => n.attribute![0]!.t!)
      .find((t) => t.dims!.map(Number).join('x') === '1x257x192');
    expect(baked).toBeDefined();
    const expected = new Float32Array(new Uint8Array(baked!.rawData!).buffer);
    const pos = readSafetensors(PARITY_WEIGHTS).get('embeddings.position_embeddings')!.data;
    const ours = interpolatePosEmbed(pos, 37, 16, 192);
    expect(ours.length).toBe(expected.length);
    let max = 0;
    for (let i = 0; i < ours.length; i++) max = Math.max(max, Math.abs(ours[i]! - expected[i]!));
    // float32 rounding only (values are ~0.05-0.15); the wrong step (37/16) would be off by ~1e-2.
    expect(max).toBeLessThan(1e-6);
  });
});

describe('antialiasBicubicResizeHwc (the with-registers position resampling)', () => {
  it('keeps a constant field constant and a linear ramp monotonic, shrinking and enlarging', async () => {
    const { antialiasBicubicResizeHwc } = await import('./pos-embed');
    const constant = new Float32Array(37 * 37 * 2).fill(0.75);
    for (const out of [16, 40]) {
      const r = antialiasBicubicResizeHwc(constant, 37, 37, 2, out, out);
      expect(r).toHaveLength(out * out * 2);
      for (const v of r) expect(v).toBeCloseTo(0.75, 6);
    }
    // x-ramp: every output row increases left to right (the filter is normalised and symmetric).
    const ramp = new Float32Array(37 * 37);
    for (let y = 0; y < 37; y++) for (let x = 0; x < 37; x++) ramp[y * 37 + x] = x;
    const r = antialiasBicubicResizeHwc(ramp, 37, 37, 1, 16, 16);
    for (let x = 1; x < 16; x++) expect(r[5 * 16 + x]!).toBeGreaterThan(r[5 * 16 + x - 1]!);
    // Antialiasing spreads the filter over the shrink factor: a single hot cell reaches more than 4 outputs.
    const dot = new Float32Array(37 * 37);
    dot[18 * 37 + 18] = 1;
    const spread = antialiasBicubicResizeHwc(dot, 37, 37, 1, 8, 8).filter((v) => Math.abs(v) > 1e-9).length;
    expect(spread).toBeGreaterThan(4);
  });
});
