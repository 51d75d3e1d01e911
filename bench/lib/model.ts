import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DINOV2_BASE_CONFIG, writeDinov2Onnx } from '@embedpool/core/model';
import { defaultCacheDir } from '@embedpool/core/model-fetch';

export type BenchDtype = 'float32' | 'float16';

export interface BenchModel {
  path: string;
  bytes: number;
  /** true: built by this run; false: reused from the cache (or given with --model). */
  built: boolean;
  buildSeconds: number;
  /** Random weights: the speed is the real model's, the vectors mean nothing. */
  randomWeights: boolean;
  dtype: BenchDtype | 'unknown';
}

const SEED = 0;

/** Same name `embedpool sku calibrate` uses, so the two share one cached model. */
export function benchModelPath(cacheDir: string, dtype: BenchDtype): string {
  return join(cacheDir, 'random', `dinov2-base-random-seed${SEED}-224-${dtype}.onnx`);
}

async function size(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0 ? s.size : null;
  } catch {
    return null;
  }
}

/**
 * The model under test: `modelPath` when given, else a full-size random-weight DINOv2 ViT-B/14 (224 px)
 * reused from `<cache>/random/` or built there (~3 s, 343 MB fp32 / 172 MB fp16; written atomically).
 */
export async function ensureBenchModel(opts: {
  modelPath?: string;
  cacheDir?: string;
  dtype: BenchDtype;
}): Promise<BenchModel> {
  if (opts.modelPath) {
    const bytes = await size(opts.modelPath);
    if (bytes === null) throw new Error(`model file not found: ${opts.modelPath}`);
    return {
      path: opts.modelPath,
      bytes,
      built: false,
      buildSeconds: 0,
      randomWeights: false,
      dtype: 'unknown',
    };
  }
  const path = benchModelPath(opts.cacheDir ?? defaultCacheDir(), opts.dtype);
  const cached = await size(path);
  if (cached !== null) {
    return { path, bytes: cached, built: false, buildSeconds: 0, randomWeights: true, dtype: opts.dtype };
  }
  const t0 = performance.now();
  const { bytes } = await writeDinov2Onnx({
    config: DINOV2_BASE_CONFIG,
    seed: SEED,
    dtype: opts.dtype,
    out: path,
  });
  return {
    path,
    bytes,
    built: true,
    buildSeconds: (performance.now() - t0) / 1000,
    randomWeights: true,
    dtype: opts.dtype,
  };
}
