import { describe, expect, it } from 'vitest';
import { hwcToChwInto, normalizeTable } from './normalize';
import { DINOV2_PREPROCESSOR_CONFIG, parsePreprocessorConfig } from './preprocessor-config';

const f = Math.fround;

describe('normalizeTable', () => {
  it('is HF numpy float32 arithmetic: (float32(v * 1/255) - mean) / std', () => {
    const t = normalizeTable(DINOV2_PREPROCESSOR_CONFIG);
    const { image_mean: mean, image_std: std, rescale_factor: r } = DINOV2_PREPROCESSOR_CONFIG;
    for (const v of [0, 1, 127, 128, 254, 255]) {
      for (let c = 0; c < 3; c++) {
        expect(t[c * 256 + v]).toBe(f(f(f(v * r) - f(mean[c]!)) / f(std[c]!)));
      }
    }
    expect(t[0]).toBeCloseTo(-0.485 / 0.229, 5);
    expect(t[512 + 255]).toBeCloseTo((1 - 0.406) / 0.225, 5);
    expect(normalizeTable(DINOV2_PREPROCESSOR_CONFIG)).toBe(t); // cached per config
  });

  it('honours do_rescale / do_normalize', () => {
    const raw = normalizeTable(parsePreprocessorConfig({ do_rescale: false, do_normalize: false }));
    expect(raw[200]).toBe(200);
    const scaled = normalizeTable(parsePreprocessorConfig({ do_normalize: false }));
    expect(scaled[255]).toBe(f(255 * 0.00392156862745098));
  });
});

describe('hwcToChwInto', () => {
  const t = normalizeTable(parsePreprocessorConfig({ do_rescale: false, do_normalize: false }));

  it('RGB HWC -> planar CHW at an offset', () => {
    const px = Uint8Array.from([1, 2, 3, 4, 5, 6]); // two pixels
    const out = new Float32Array(10).fill(-1);
    hwcToChwInto(px, 3, 2, t, out, 2);
    expect(Array.from(out)).toEqual([-1, -1, 1, 4, 2, 5, 3, 6, -1, -1]);
  });

  it('grey is replicated; extra channels ignored', () => {
    const out = new Float32Array(6);
    hwcToChwInto(Uint8Array.from([7, 9]), 1, 2, t, out, 0);
    expect(Array.from(out)).toEqual([7, 9, 7, 9, 7, 9]);
    hwcToChwInto(Uint8Array.from([1, 2, 3, 99, 4, 5, 6, 99]), 4, 2, t, out, 0);
    expect(Array.from(out)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('refuses a slice outside the buffer', () => {
    expect(() => hwcToChwInto(new Uint8Array(6), 3, 2, t, new Float32Array(6), 1)).toThrow(RangeError);
    expect(() => hwcToChwInto(new Uint8Array(5), 3, 2, t, new Float32Array(6), 0)).toThrow(RangeError);
  });
});
