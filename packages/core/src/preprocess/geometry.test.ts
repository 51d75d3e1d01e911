import { describe, expect, it } from 'vitest';
import { centerCropRegion, fixedOutputSize, planGeometry, resizeOutputSize } from './geometry';
import { DINOV2_PREPROCESSOR_CONFIG, parsePreprocessorConfig } from './preprocessor-config';

describe('resizeOutputSize (HF get_resize_output_image_size)', () => {
  it('short side to shortest_edge, long side int(256 * long / short)', () => {
    const size = { shortest_edge: 256 };
    expect(resizeOutputSize({ width: 640, height: 427 }, size)).toEqual({ width: 383, height: 256 });
    expect(resizeOutputSize({ width: 427, height: 640 }, size)).toEqual({ width: 256, height: 383 });
    expect(resizeOutputSize({ width: 3000, height: 2000 }, size)).toEqual({ width: 384, height: 256 });
    expect(resizeOutputSize({ width: 512, height: 600 }, size)).toEqual({ width: 256, height: 300 });
    expect(resizeOutputSize({ width: 560, height: 120 }, size)).toEqual({ width: 1194, height: 256 });
    expect(resizeOutputSize({ width: 16, height: 16 }, size)).toEqual({ width: 256, height: 256 });
  });

  it('height/width resizes to exactly that', () => {
    expect(resizeOutputSize({ width: 640, height: 427 }, { height: 100, width: 50 })).toEqual({
      width: 50,
      height: 100,
    });
  });
});

describe('centerCropRegion (HF center_crop)', () => {
  it('offsets (size - crop) // 2', () => {
    expect(centerCropRegion({ width: 383, height: 256 }, { width: 224, height: 224 })).toEqual({
      left: 79,
      top: 16,
      width: 224,
      height: 224,
    });
    expect(centerCropRegion({ width: 1194, height: 256 }, { width: 224, height: 224 })).toMatchObject({
      left: 485,
      top: 16,
    });
  });

  it('pads an axis shorter than the crop by ceil((crop - size) / 2) in front', () => {
    expect(centerCropRegion({ width: 5, height: 100 }, { width: 8, height: 64 })).toEqual({
      left: -2,
      top: 18,
      width: 8,
      height: 64,
    });
    expect(centerCropRegion({ width: 4, height: 4 }, { width: 7, height: 8 })).toMatchObject({
      left: -2,
      top: -2,
    });
  });
});

describe('planGeometry / fixedOutputSize', () => {
  it('follows the do_* flags', () => {
    const noCrop = parsePreprocessorConfig({ do_center_crop: false });
    expect(planGeometry(noCrop, { width: 640, height: 427 }).region).toEqual({
      left: 0,
      top: 0,
      width: 383,
      height: 256,
    });
    expect(fixedOutputSize(noCrop)).toBeUndefined();
    const noResize = parsePreprocessorConfig({ do_resize: false });
    expect(planGeometry(noResize, { width: 640, height: 427 })).toMatchObject({
      resized: { width: 640, height: 427 },
      region: { left: 208, top: 101 },
    });
    expect(fixedOutputSize(DINOV2_PREPROCESSOR_CONFIG)).toEqual({ width: 224, height: 224 });
    expect(
      fixedOutputSize(parsePreprocessorConfig({ do_center_crop: false, size: { height: 30, width: 40 } })),
    ).toEqual({
      width: 40,
      height: 30,
    });
  });
});
