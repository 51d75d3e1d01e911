import { describe, expect, it } from 'vitest';
import { imageFeaturesJson } from './features-json';

describe('imageFeaturesJson', () => {
  it('writes one image_features object per row, equal to JSON.stringify of the same numbers', () => {
    const v = Float32Array.from([0.1, -2.5, 3, 1e-8, 0.5, 65504.5]);
    const expected = JSON.stringify([
      { image_features: Array.from(v.subarray(0, 3)) },
      { image_features: Array.from(v.subarray(3, 6)) },
    ]);
    expect(imageFeaturesJson(v, 2, 3)).toBe(expected);
    const parsed = JSON.parse(imageFeaturesJson(v, 2, 3)) as { image_features: number[] }[];
    expect(parsed[1]!.image_features.map((x) => Math.fround(x))).toEqual(Array.from(v.subarray(3)));
  });

  it('writes non-finite values as null, keeping the body valid JSON', () => {
    expect(imageFeaturesJson(Float32Array.from([Number.NaN, Number.POSITIVE_INFINITY]), 1, 2)).toBe(
      '[{"image_features":[null,null]}]',
    );
  });
});
