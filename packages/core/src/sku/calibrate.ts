/**
 * Measures inference throughput on this machine at several batch sizes and intra-op thread counts,
 * each laid out as the plan would run it (sessions = the inference cores / intra-op threads, all kept
 * busy at once), and turns the fastest into a worker plan. Decoding is not measured: it runs beside
 * inference and the plan sizes it separately.
 */
import { rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine, type ExecutionProvider } from '../engine';
import { EmbedpoolError } from '../errors';
import { DINOV2_BASE_CONFIG, writeDinov2Onnx } from '../model';
import { defaultCacheDir } from '../model-fetch/cache-paths';
import { readModelPrecision } from '../precision';
import { detectLocalResources } from './detect';
import {
  type ModelVariant,
  type PlanOptions,
  planForResources,
  type Resources,
  type WorkerPlan,
} from './plan';

export const DEFAULT_CALIBRATE_BATCH_SIZES: readonly number[] = [1, 4, 8];
export const DEFAULT_CALIBRATE_SECONDS = 2;
const RANDOM_MODEL_SEED = 0;

export interface CalibrateOptions {
  /** An ONNX model; default: a full-size random DINOv2 ViT-B/14, built once into the cache. */
  modelPath?: string;
  /** Where the random model lives (`<cacheDir>/random/`); default EMBEDPOOL_CACHE_DIR or ~/.cache/embedpool. */
  cacheDir?: string;
  batchSizes?: number[];
  /** Intra-op thread counts per session; default the plan's choice and half of it. */
  threads?: number[];
  /** Measuring time per batch size and thread count (at least one round always runs). */
  seconds?: number;
  /** Default: what the machine's resources suggest (cuda with GPUs). */
  provider?: ExecutionProvider;
  /**
   * Measure the int8 model: without `modelPath`, the random model quantized by `embedpool model quantize`'s
   * code (cached beside it). A `modelPath` that is int8 is recognised by itself.
   */
  int8?: boolean;
  /** Default: `detectLocalResources()`. */
  resources?: Resources;
  /** Called after each measurement, and when the model is built or reused. */
  onProgress?: (event: CalibrateEvent) => void;
}

export interface CalibrationRow {
  intraOpThreads: number;
  sessions: number;
  batchSize: number;
  runs: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  /** Mean wall time of one run. */
  msPerBatch: number;
}

export type CalibrateEvent =
  | { type: 'model'; path: string; built: boolean; seconds: number }
  | { type: 'load'; intraOpThreads: number; sessions: number; seconds: number }
  | { type: 'row'; row: CalibrationRow };

export interface CalibrationResult {
  modelPath: string;
  /** The measured model's precision; int8 plans say so. */
  modelVariant: ModelVariant;
  builtModel: boolean;
  /** The provider the engine actually ran (cuda falls back to cpu when its libraries are missing). */
  provider: ExecutionProvider;
  fallbackReason?: string;
  resources: Resources;
  rows: CalibrationRow[];
  best: CalibrationRow;
  plan: WorkerPlan;
  totalSeconds: number;
}

/** `<cacheDir>/random/dinov2-base-random-seed0-224-<dtype>.onnx`. */
export function randomModelPath(cacheDir: string, provider: ExecutionProvider): string {
  const dtype = provider === 'cuda' ? 'float16' : 'float32';
  return join(cacheDir, 'random', `dinov2-base-random-seed${RANDOM_MODEL_SEED}-224-${dtype}.onnx`);
}

async function fileSize(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() && s.size > 0 ? s.size : null;
  } catch {
    return null;
  }
}

/** Reuses the cached random model or builds it (~2.5 s, ~343 MB fp32); atomic, so a crash leaves none. */
export async function ensureRandomModel(
  cacheDir: string,
  provider: ExecutionProvider,
): Promise<{ path: string; built: boolean }> {
  const path = randomModelPath(cacheDir, provider);
  if ((await fileSize(path)) !== null) return { path, built: false };
  await writeDinov2Onnx({
    config: DINOV2_BASE_CONFIG,
    seed: RANDOM_MODEL_SEED,
    dtype: provider === 'cuda' ? 'float16' : 'float32',
    out: path,
  });
  return { path, built: true };
}

function positiveList(values: readonly number[], name: string): number[] {
  if (values.length === 0) throw new EmbedpoolError('CONFIG_INVALID', `${name}: at least one value needed`);
  for (const v of values) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new EmbedpoolError('CONFIG_INVALID', `${name}: ${v} is not a positive integer`);
    }
  }
  return [...new Set(values)].sort((a, b) => a - b);
}

/**
 * A deterministic, image-like input (values in roughly the normalised pixel range); `seed` varies it, so
 * buffers meant to differ (one per session) do. Also what the bench feeds the model.
 */
export function fillInput(buf: Float32Array, seed = 0): Float32Array {
  let x = 0x9e3779b9 ^ seed;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = ((x >>> 0) / 0x1_0000_0000) * 4 - 2;
  }
  return buf;
}

/** The model to measure: the given one, or the random DINOv2 built once in the cache (and its int8 copy). */
async function calibrationModel(
  opts: CalibrateOptions,
  provider: ExecutionProvider,
): Promise<{ modelPath: string; builtModel: boolean }> {
  let modelPath = opts.modelPath;
  let builtModel = false;
  if (modelPath === undefined) {
    const t = performance.now();
    const r = await ensureRandomModel(opts.cacheDir ?? defaultCacheDir(), provider);
    modelPath = r.path;
    builtModel = r.built;
    opts.onProgress?.({
      type: 'model',
      path: r.path,
      built: r.built,
      seconds: (performance.now() - t) / 1000,
    });
  }
  if (opts.int8 && opts.modelPath === undefined) {
    if (provider === 'cuda') throw new EmbedpoolError('CONFIG_INVALID', 'int8 models run on CPU only');
    const t = performance.now();
    const int8Path = modelPath.replace(/-float32\.onnx$/, '-int8.onnx');
    const cached = (await fileSize(int8Path)) !== null;
    if (!cached) {
      // Loaded on use: the quantizer pulls in onnxruntime-node, which planning alone never needs.
      const { quantizeModel } = await import('../quantize/quantize-model');
      const q = await quantizeModel({ input: modelPath, maxFloatFallback: 0 });
      // Atomic, like the random model: a crash leaves no half-written file for the next run to trust.
      const tmp = `${int8Path}.${process.pid}.tmp`;
      await writeFile(tmp, q.model);
      await rename(tmp, int8Path);
    }
    modelPath = int8Path;
    builtModel = !cached;
    opts.onProgress?.({
      type: 'model',
      path: int8Path,
      built: !cached,
      seconds: (performance.now() - t) / 1000,
    });
  }
  return { modelPath, builtModel };
}

/** The plan's name for a model file's precision; undefined when it is none of the three. */
function variantOf(precision: string): ModelVariant | undefined {
  return precision === 'int8'
    ? 'int8'
    : precision === 'float16'
      ? 'fp16'
      : precision === 'float32'
        ? 'fp32'
        : undefined;
}

/**
 * Every batch size for `seconds` each on a loaded engine, all its sessions busy at once, after one warm-up
 * run of the largest batch per session (so arenas are grown before timing starts). Appends one row per size.
 */
async function measure(
  engine: Engine,
  m: { intra: number; sessions: number; batchSizes: number[]; seconds: number; maxBatch: number },
  rows: CalibrationRow[],
  onProgress: CalibrateOptions['onProgress'],
): Promise<void> {
  const { intra, sessions, batchSizes, seconds, maxBatch } = m;
  const height = engine.info.height ?? 224;
  const width = engine.info.width ?? 224;
  const per = 3 * height * width;
  const buffers = Array.from({ length: sessions }, () => fillInput(new Float32Array(maxBatch * per)));
  // Warm-up: every session runs the largest batch once, so arenas are grown before timing starts.
  await Promise.all(
    buffers.map(async (b, i) => {
      buffers[i] = (await engine.infer(b, maxBatch, height, width)).input;
    }),
  );
  for (const batch of batchSizes) {
    let runs = 0;
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    await Promise.all(
      buffers.map(async (_, i) => {
        let mine = 0;
        while (mine === 0 || performance.now() < deadline) {
          buffers[i] = (await engine.infer(buffers[i]!, batch, height, width)).input;
          mine++;
          runs++;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const row: CalibrationRow = {
      intraOpThreads: intra,
      sessions,
      batchSize: batch,
      runs,
      images: runs * batch,
      seconds: elapsed,
      imagesPerSecond: (runs * batch) / elapsed,
      msPerBatch: (elapsed * 1000 * sessions) / runs,
    };
    rows.push(row);
    onProgress?.({ type: 'row', row });
  }
}

/**
 * Loads the model once per intra-op thread count (with as many sessions as the plan would run) and
 * measures every batch size; a thread count whose layout cannot fit this machine is skipped.
 */
async function measureLayouts(
  opts: CalibrateOptions,
  c: {
    resources: Resources;
    provider: ExecutionProvider;
    threads: number[];
    batchSizes: number[];
    seconds: number;
    maxBatch: number;
    modelPath: string;
    modelBytes: number;
    variantOpt: Pick<PlanOptions, 'modelVariant'>;
  },
): Promise<{
  rows: CalibrationRow[];
  actualProvider: ExecutionProvider;
  fallbackReason: string | undefined;
}> {
  const { resources, provider, threads, batchSizes, seconds, maxBatch, modelPath, modelBytes, variantOpt } =
    c;
  const rows: CalibrationRow[] = [];
  let actualProvider: ExecutionProvider = provider;
  let fallbackReason: string | undefined;
  for (const intra of threads) {
    // The layout the plan would run with this many intra-op threads; a layout that cannot fit is skipped.
    let sessions: number;
    try {
      sessions = planForResources(resources, {
        provider,
        intraOpThreads: intra,
        batchSize: maxBatch,
        modelBytes,
        ...variantOpt,
      }).inferenceThreads;
    } catch (err) {
      if (err instanceof EmbedpoolError && err.code === 'CONFIG_INVALID') continue;
      throw err;
    }
    const t = performance.now();
    const engine = await Engine.load({
      modelPath,
      threads: sessions,
      runtime: { executionProvider: provider, cudaDeviceId: 0, intraOpThreads: intra },
    });
    opts.onProgress?.({
      type: 'load',
      intraOpThreads: intra,
      sessions,
      seconds: (performance.now() - t) / 1000,
    });
    actualProvider = engine.provider;
    fallbackReason = engine.fallbackReason;
    try {
      await measure(engine, { intra, sessions, batchSizes, seconds, maxBatch }, rows, opts.onProgress);
    } finally {
      await engine.close();
    }
  }
  return { rows, actualProvider, fallbackReason };
}

export async function calibrate(opts: CalibrateOptions = {}): Promise<CalibrationResult> {
  const started = performance.now();
  const resources = opts.resources ?? (await detectLocalResources());
  const provider = opts.provider ?? (resources.gpus.length > 0 ? 'cuda' : 'cpu');
  const batchSizes = positiveList(opts.batchSizes ?? DEFAULT_CALIBRATE_BATCH_SIZES, 'batch sizes');
  const seconds = opts.seconds ?? DEFAULT_CALIBRATE_SECONDS;
  if (!(seconds > 0)) throw new EmbedpoolError('CONFIG_INVALID', 'seconds must be positive');
  const maxBatch = batchSizes.at(-1)!;
  const basePlan = planForResources(resources, { provider, batchSize: maxBatch });
  const threads = positiveList(
    opts.threads ?? [Math.max(1, Math.floor(basePlan.intraOpThreads / 2)), basePlan.intraOpThreads],
    'threads',
  );

  const { modelPath, builtModel } = await calibrationModel(opts, provider);
  const modelBytes = await fileSize(modelPath);
  if (modelBytes === null) throw new EmbedpoolError('MODEL_NOT_FOUND', `model file not found: ${modelPath}`);
  const precision = (await readModelPrecision(modelPath)).precision;
  const modelVariant = variantOf(precision);
  if (opts.int8 && modelVariant !== 'int8') {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `${modelPath} is not an int8 model (embedpool model quantize)`,
    );
  }
  // Only int8 changes the plan (it is CPU-only); fp32 vs fp16 follows the provider as before.
  const variantOpt: Pick<PlanOptions, 'modelVariant'> = modelVariant === 'int8' ? { modelVariant } : {};

  const { rows, actualProvider, fallbackReason } = await measureLayouts(opts, {
    resources,
    provider,
    threads,
    batchSizes,
    seconds,
    maxBatch,
    modelPath,
    modelBytes,
    variantOpt,
  });
  if (rows.length === 0) {
    throw new EmbedpoolError('CONFIG_INVALID', 'no thread count could be measured: none fits this machine');
  }
  const best = rows.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
  const planOpts: PlanOptions = {
    provider: actualProvider,
    intraOpThreads: best.intraOpThreads,
    inferenceThreads: best.sessions,
    batchSize: best.batchSize,
    modelBytes,
    ...variantOpt,
  };
  const plan = planForResources(actualProvider === 'cpu' ? { ...resources, gpus: [] } : resources, planOpts);
  if (fallbackReason) plan.warnings.push(`measured on CPU: ${fallbackReason}`);
  return {
    modelPath,
    modelVariant: plan.modelVariant,
    builtModel,
    provider: actualProvider,
    ...(fallbackReason ? { fallbackReason } : {}),
    resources,
    rows,
    best,
    plan,
    totalSeconds: (performance.now() - started) / 1000,
  };
}
