import { describe, expect, it } from 'vitest';
import { resampleRegion } from './resample';

function pattern(width: number, height: number, channels: number): Uint8Array {
  const px = new Uint8Array(width * height * channels);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + ((i / 7) | 0) * 11) & 255;
  return px;
}

describe('resampleRegion (Pillow-exact resize of a window)', () => {
  it('a 2x bicubic step edge gives Pillow values (overshoot included)', () => {
    const src = new Uint8Array(16 * 2);
    for (let y = 0; y < 2; y++) for (let x = 8; x < 16; x++) src[y * 16 + x] = 200;
    const row = resampleRegion(
      src,
      { width: 16, height: 2 },
      1,
      { width: 32, height: 4 },
      { left: 12, top: 1, width: 10, height: 1 },
      3,
    );
    // Pillow bicubic (a = -0.5): output column 15 samples x = 7.75 with taps 6..9 weighted
    // [-0.0703, 0.8672, 0.2266, -0.0234], so 200 * (0.2266 - 0.0234) = 40.6 -> 41.
    expect(Array.from(row)).toEqual([0, 0, 0, 41, 159, 214, 205, 200, 200, 200]);
  });

  it.each([0, 1, 2, 3] as const)(
    'a window equals the same window of the full result (resample %i)',
    (resample) => {
      for (const [sw, sh, rw, rh] of [
        [16, 12, 256, 192],
        [50, 9, 70, 30],
        [37, 41, 37, 80],
        [40, 30, 90, 30],
      ] as const) {
        const src = pattern(sw, sh, 3);
        const full = resampleRegion(
          src,
          { width: sw, height: sh },
          3,
          { width: rw, height: rh },
          { left: 0, top: 0, width: rw, height: rh },
          resample,
        );
        const region = { left: 5, top: 3, width: rw - 9, height: rh - 5 };
        const part = resampleRegion(
          src,
          { width: sw, height: sh },
          3,
          { width: rw, height: rh },
          region,
          resample,
        );
        for (let y = 0; y < region.height; y++) {
          const a = part.subarray(y * region.width * 3, (y + 1) * region.width * 3);
          const start = ((y + region.top) * rw + region.left) * 3;
          expect(Array.from(a)).toEqual(Array.from(full.subarray(start, start + region.width * 3)));
        }
      }
    },
  );

  it('pads with zeros outside the resized image', () => {
    const src = new Uint8Array(4 * 4 * 3).fill(90);
    const out = resampleRegion(
      src,
      { width: 4, height: 4 },
      3,
      { width: 8, height: 8 },
      { left: -2, top: -1, width: 12, height: 10 },
      3,
    );
    expect(out[0]).toBe(0);
    expect(out[(1 * 12 + 2) * 3]).toBe(90);
    expect(out[(8 * 12 + 9) * 3]).toBe(90);
    expect(out[(9 * 12 + 9) * 3]).toBe(0);
    expect(out[(8 * 12 + 10) * 3]).toBe(0);
  });

  it('keeps a constant image constant', () => {
    const src = new Uint8Array(7 * 5 * 3).fill(201);
    for (const r of [0, 1, 2, 3] as const) {
      const out = resampleRegion(
        src,
        { width: 7, height: 5 },
        3,
        { width: 30, height: 21 },
        { left: 0, top: 0, width: 30, height: 21 },
        r,
      );
      expect(out.every((v) => v === 201)).toBe(true);
    }
  });
});
