import { describe, expect, it } from 'vitest';
import { agreement } from './compare';
import { quantizeColumns, smoothingScales } from './rewrite';

describe('smoothingScales', () => {
  it('balances activation and weight ranges per channel: s = a^alpha / w^(1-alpha)', () => {
    const act = Float32Array.of(100, 1, 0);
    const w = { data: Float32Array.of(1, -1, 0.25, 0.5, 3, 1), n: 2 }; // rows: max 1, 0.5, 3
    const s = smoothingScales(act, [w], 0.5);
    expect(s[0]).toBeCloseTo(10, 5);
    expect(s[1]).toBeCloseTo(Math.sqrt(1 / 0.5), 5);
    expect(s[2]).toBe(1); // never active: left alone
    // alpha 0 moves nothing into the activations' favour beyond 1/w; alpha 1 divides the whole range out.
    expect(smoothingScales(act, [w], 1)[0]).toBeCloseTo(100, 4);
  });

  it('takes the row maximum over every MatMul that shares the input', () => {
    const act = Float32Array.of(4);
    const s = smoothingScales(
      act,
      [
        { data: Float32Array.of(1), n: 1 },
        { data: Float32Array.of(16), n: 1 },
      ],
      0.5,
    );
    expect(s[0]).toBeCloseTo(2 / 4, 5);
  });
});

describe('quantizeColumns', () => {
  it('symmetric per-column int8: each column uses its own scale and reaches +-127', () => {
    const w = Float32Array.of(1, 0.005, -2, 0.02, 0.5, -0.015); // 3 x 2
    const { q, scale } = quantizeColumns(w, 3, 2, 8);
    expect(scale[0]).toBeCloseTo(2 / 127, 7);
    expect(scale[1]).toBeCloseTo(0.02 / 127, 9);
    expect([...q]).toEqual([64, 32, -127, 127, 32, -95]);
    for (let i = 0; i < w.length; i++)
      expect(Math.abs(q[i]! * scale[i % 2]! - w[i]!)).toBeLessThan(scale[i % 2]!);
  });

  it('7-bit weights stay within +-63', () => {
    const { q } = quantizeColumns(Float32Array.of(5, -5, 1), 3, 1, 7);
    expect([...q]).toEqual([63, -63, 13]);
  });
});

describe('agreement', () => {
  it('reports min and mean cosine, the norm ratio range and the worst image', () => {
    const a = [Float32Array.of(1, 0), Float32Array.of(0, 2)];
    const b = [Float32Array.of(1, 0), Float32Array.of(1, 1)];
    const r = agreement(['same', 'tilted'], a, b);
    expect(r.worst.name).toBe('tilted');
    expect(r.minCosine).toBeCloseTo(Math.SQRT1_2, 6);
    expect(r.meanCosine).toBeCloseTo((1 + Math.SQRT1_2) / 2, 6);
    expect(r.minNormRatio).toBeCloseTo(Math.SQRT2 / 2, 6);
    expect(r.maxNormRatio).toBe(1);
  });
});
