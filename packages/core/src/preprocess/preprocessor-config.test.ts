import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmbedpoolError } from '../errors';
import {
  DINOV2_PREPROCESSOR_CONFIG,
  loadPreprocessorConfig,
  parsePreprocessorConfig,
} from './preprocessor-config';

// facebook/dinov2-base preprocessor_config.json, verbatim.
const DINOV2_BASE_JSON = `{
  "crop_size": {"height": 224, "width": 224},
  "do_center_crop": true,
  "do_convert_rgb": true,
  "do_normalize": true,
  "do_rescale": true,
  "do_resize": true,
  "image_mean": [0.485, 0.456, 0.406],
  "image_processor_type": "BitImageProcessor",
  "image_std": [0.229, 0.224, 0.225],
  "resample": 3,
  "rescale_factor": 0.00392156862745098,
  "size": {"shortest_edge": 256}
}`;

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err instanceof EmbedpoolError ? err.code : String(err);
  }
}

describe('preprocessor config', () => {
  it('parses the dinov2-base file to DINOV2_PREPROCESSOR_CONFIG; missing fields default to it', () => {
    expect(parsePreprocessorConfig(JSON.parse(DINOV2_BASE_JSON))).toEqual(DINOV2_PREPROCESSOR_CONFIG);
    expect(parsePreprocessorConfig({})).toEqual(DINOV2_PREPROCESSOR_CONFIG);
    expect(Object.isFrozen(DINOV2_PREPROCESSOR_CONFIG.size)).toBe(true);
  });

  it('accepts HF legacy shapes: int size, int crop, scalar mean/std, height/width size', () => {
    const c = parsePreprocessorConfig({ size: 128, crop_size: 112, image_mean: 0.5, image_std: 0.25 });
    expect(c.size).toEqual({ shortest_edge: 128 });
    expect(c.crop_size).toEqual({ height: 112, width: 112 });
    expect(c.image_mean).toEqual([0.5, 0.5, 0.5]);
    expect(c.image_std).toEqual([0.25, 0.25, 0.25]);
    expect(parsePreprocessorConfig({ size: { height: 10, width: 20 } }).size).toEqual({
      height: 10,
      width: 20,
    });
    expect(parsePreprocessorConfig({ size: { shortest_edge: 64, longest_edge: 1000 } }).size).toEqual({
      shortest_edge: 64,
    });
  });

  it('refuses what it cannot reproduce with CONFIG_INVALID', () => {
    expect(codeOf(() => parsePreprocessorConfig({ resample: 4 }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig({ size: {} }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig({ size: { height: 10 } }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig({ image_std: [0.2, 0, 0.2] }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig({ image_mean: [0.1, 0.2] }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig({ crop_size: 0 }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parsePreprocessorConfig('nope'))).toBe('CONFIG_INVALID');
  });

  it('loadPreprocessorConfig reads a file; missing or non-JSON files are CONFIG_INVALID', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'embedpool-preprocess-'));
    const path = join(dir, 'preprocessor_config.json');
    writeFileSync(path, DINOV2_BASE_JSON);
    expect(await loadPreprocessorConfig(path)).toEqual(DINOV2_PREPROCESSOR_CONFIG);
    writeFileSync(path, '{nope');
    await expect(loadPreprocessorConfig(path)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(loadPreprocessorConfig(join(dir, 'missing.json'))).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });
});
