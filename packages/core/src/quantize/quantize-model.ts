import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { EmbedpoolError } from '../errors';
import type { PreprocessorConfig } from '../preprocess';
import { type ChannelStats, collectActivationStats } from './activation-stats';
import { type Agreement, compareSessions } from './compare';
import { openSession, sessionInputSize } from './embed-session';
import { DEFAULT_CALIBRATION_DIR, DEFAULT_HOLDOUT_DIR, type LoadedImage, loadImageDir } from './images';
import { findWeightMatMuls, groupMatMuls, type MatMulGroup } from './matmul-plan';
import {
  cloneModel,
  encodeModel,
  floatData,
  GraphIndex,
  getMetadata,
  type ModelProto,
  readModel,
  setMetadata,
} from './onnx-io';
import { type RewriteReport, rewriteInt8, smoothingScales } from './rewrite';

export type QuantizeMethod = 'smoothquant' | 'naive';

/** Metadata keys the output carries (ONNX metadata_props); `readModelPrecision` reads the first. */
export const META = {
  precision: 'embedpool.precision',
  method: 'embedpool.quantization.method',
  alpha: 'embedpool.quantization.alpha',
  weightBits: 'embedpool.quantization.weight_bits',
  floatMatMuls: 'embedpool.quantization.float_matmuls',
  minCosine: 'embedpool.quantization.min_cosine',
  meanCosine: 'embedpool.quantization.mean_cosine',
  normRatio: 'embedpool.quantization.norm_ratio',
  heldOut: 'embedpool.quantization.heldout_images',
  calibration: 'embedpool.quantization.calibration',
  sourceId: 'embedpool.source.id',
  sourceSha256: 'embedpool.source.sha256',
} as const;

/** Keys a source model may carry its own identity under (ours first). */
const SOURCE_ID_KEYS = ['embedpool.model_id', 'embedpool.model.id', 'embedpool.id', 'model_id'];

export interface QuantizeOptions {
  /** The float32 ONNX model. */
  input: string;
  method?: QuantizeMethod;
  /** SmoothQuant migration strength. Default 0.5. */
  alpha?: number;
  weightBits?: 7 | 8;
  /** Photos to gather activation statistics on. Default: the project's calibration photos. */
  calibrationDir?: string;
  /** Photos for the quality gate, never calibrated on. Default: the project's held-out photos. */
  holdoutDir?: string;
  /** The gate: lowest acceptable cosine to the float32 model on any held-out photo. Default 0.995. */
  minCosine?: number;
  /** MatMuls (node names) to keep in float32 from the start. */
  keepFloat?: string[];
  /**
   * How many more MatMuls may fall back to float32, most outlier-prone first, while the calibration
   * photos still score below `minCosine`. Default 4; 0 turns it off.
   */
  maxFloatFallback?: number;
  /** The source's id in the output's metadata; default: its own metadata, else its file name. */
  sourceId?: string;
  preprocessor?: PreprocessorConfig;
  /** Intra-op threads for the measuring sessions (0: onnxruntime picks). */
  threads?: number;
  log?: (line: string) => void;
}

export interface QuantizeResult {
  /** The int8 model, metadata included; only worth writing when `passed`. */
  model: Uint8Array;
  passed: boolean;
  minCosine: number;
  /** Float32 vs int8 on the held-out photos: what the gate decided on. */
  gate: Agreement;
  /** Float32 vs int8 on the calibration photos (what the fp32 fallback looked at). */
  calibration: Agreement;
  rewrite: RewriteReport;
  matmuls: number;
  metadata: Record<string, string>;
  source: { id: string; sha256: string; bytes: number };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/**
 * How badly per-tensor int8 fits each MatMul's input after smoothing: the largest channel over the
 * median channel. The fallback keeps the worst ones in float32 first.
 */
function outlierRanking(
  groups: MatMulGroup[],
  stats: ReadonlyMap<string, ChannelStats>,
  smooth: boolean,
  alpha: number,
  floatWeights: (name: string) => Float32Array,
): { name: string; ratio: number }[] {
  const out: { name: string; ratio: number }[] = [];
  for (const group of groups) {
    const act = stats.get(group.input);
    if (!act) continue;
    let a = Array.from(act.absMax);
    if (smooth && group.site) {
      const s = smoothingScales(
        act.absMax,
        group.matmuls.map((m) => ({ data: floatWeights(m.weight.name!), n: m.n })),
        alpha,
      );
      a = a.map((v, j) => v / s[j]!);
    }
    const ratio = Math.max(...a) / Math.max(1e-12, median(a));
    for (const m of group.matmuls) out.push({ name: m.name, ratio });
  }
  return out.sort((x, y) => y.ratio - x.ratio);
}

function sourceIdentity(path: string, meta: Record<string, string>, given?: string): string {
  if (given) return given;
  for (const key of SOURCE_ID_KEYS) if (meta[key]) return meta[key];
  return basename(path);
}

function checkDisjoint(calibration: LoadedImage[], holdout: LoadedImage[]): void {
  const seen = new Set(calibration.map((i) => i.sha256));
  const shared = holdout.filter((i) => seen.has(i.sha256)).map((i) => i.name);
  if (shared.length > 0) {
    throw new EmbedpoolError(
      'CONFIG_INVALID',
      `the held-out photos must not be calibration photos; both sets hold ${shared.join(', ')}`,
    );
  }
}

const fmt = (x: number) => x.toFixed(4);

/** The model's weight MatMuls, grouped by shared input; MODEL_INVALID when there is none to quantize. */
function probeMatMuls(
  source: ModelProto,
  input: string,
  log: (line: string) => void,
): { probeIndex: GraphIndex; probeGroups: ReturnType<typeof groupMatMuls>; matmuls: number } {
  const probeIndex = new GraphIndex(source);
  const probeGroups = groupMatMuls(probeIndex, findWeightMatMuls(probeIndex, source.graph!.node ?? []));
  const matmuls = probeGroups.reduce((n, g) => n + g.matmuls.length, 0);
  if (matmuls === 0) {
    throw new EmbedpoolError('MODEL_INVALID', `${input} has no MatMul by a float32 weight to quantize`);
  }
  log(
    `${matmuls} weight MatMuls in ${probeGroups.length} groups; ` +
      `${probeGroups.filter((g) => g.site).length} groups behind a LayerNorm that smoothing can fold into`,
  );
  return { probeIndex, probeGroups, matmuls };
}

/** The float MatMuls ranked by how far their inputs' outlier channels hurt int8 (worst first). */
function rankOutliers(
  probeIndex: GraphIndex,
  probeGroups: ReturnType<typeof groupMatMuls>,
  stats: Awaited<ReturnType<typeof collectActivationStats>>,
  smooth: boolean,
  alpha: number,
): ReturnType<typeof outlierRanking> {
  const weightCache = new Map<string, Float32Array>();
  const floatWeights = (name: string) => {
    let w = weightCache.get(name);
    if (!w) {
      w = floatData(probeIndex.initializers.get(name)!);
      weightCache.set(name, w);
    }
    return w;
  };
  const ranking = outlierRanking(probeGroups, stats, smooth, alpha, floatWeights);
  weightCache.clear();
  return ranking;
}

type Built = { model: ModelProto; rewrite: RewriteReport; session: InferenceSession; calib: Agreement };

/**
 * Rewrites a copy of the model to int8 and compares it with fp32 on the calibration photos; while it falls
 * short of `minCosine`, keeps the worst-ranked MatMul in float32 and tries again (up to maxFloatFallback).
 * The caller releases the returned session.
 */
async function buildWithFallback(
  opts: QuantizeOptions,
  source: ModelProto,
  fp32: InferenceSession,
  calibration: Awaited<ReturnType<typeof loadImageDir>>,
  q: {
    stats: Awaited<ReturnType<typeof collectActivationStats>>;
    ranking: ReturnType<typeof outlierRanking>;
    alpha: number;
    smooth: boolean;
    weightBits: 7 | 8;
    minCosine: number;
    log: (line: string) => void;
  },
): Promise<Built> {
  const keepFloat = new Set(opts.keepFloat ?? []);
  const budget = opts.maxFloatFallback ?? 4;
  const { stats, ranking, alpha, smooth, weightBits, minCosine, log } = q;
  let built: Built;
  for (let fallback = 0; ; fallback++) {
    const candidate = cloneModel(source);
    const index = new GraphIndex(candidate);
    const groups = groupMatMuls(index, findWeightMatMuls(index, candidate.graph!.node ?? []));
    const rewrite = rewriteInt8(candidate, groups, stats, { alpha, smooth, weightBits, keepFloat });
    const session = await openSession(encodeModel(candidate), { threads: opts.threads ?? 0 });
    const calib = await compareSessions(fp32, session, calibration);
    built = { model: candidate, rewrite, session, calib };
    log(
      `int8 (${rewrite.quantized.length} MatMuls, ${rewrite.keptFloat.length} float32): ` +
        `calibration photos min cosine ${fmt(calib.minCosine)}`,
    );
    const next = ranking.find((r) => !keepFloat.has(r.name));
    if (calib.minCosine >= minCosine || fallback >= budget || !next) break;
    await session.release();
    keepFloat.add(next.name);
    log(`keeping ${next.name} in float32 (input max/median channel ${next.ratio.toFixed(1)})`);
  }
  return built;
}

/** What the int8 model says about itself (the embedpool.* metadata keys). */
function int8Metadata(
  m: {
    smooth: boolean;
    alpha: number;
    weightBits: number;
    gate: Agreement;
    id: string;
    sha256: string;
    calibrationDigest: string;
  },
  built: Built,
  calibrationImages: number,
): Record<string, string> {
  return {
    [META.precision]: 'int8',
    [META.method]: m.smooth ? 'smoothquant+dynamic-int8' : 'dynamic-int8',
    [META.alpha]: m.smooth ? String(m.alpha) : '',
    [META.weightBits]: String(m.weightBits),
    [META.floatMatMuls]: built.rewrite.keptFloat.join(','),
    [META.minCosine]: m.gate.minCosine.toFixed(6),
    [META.meanCosine]: m.gate.meanCosine.toFixed(6),
    [META.normRatio]: `${m.gate.minNormRatio.toFixed(4)}..${m.gate.maxNormRatio.toFixed(4)}`,
    [META.heldOut]: String(m.gate.images),
    [META.calibration]: `${calibrationImages} images sha256:${m.calibrationDigest}`,
    [META.sourceId]: m.id,
    [META.sourceSha256]: m.sha256,
  };
}

/**
 * Quantizes a float32 DINOv2 ONNX model to int8 (DynamicQuantizeMatMul, per-column int8 weights),
 * SmoothQuant-style by default, then measures it against the float32 model on held-out photos.
 */
export async function quantizeModel(opts: QuantizeOptions): Promise<QuantizeResult> {
  const log = opts.log ?? (() => {});
  const method = opts.method ?? 'smoothquant';
  const alpha = opts.alpha ?? 0.5;
  const weightBits = opts.weightBits ?? 8;
  const minCosine = opts.minCosine ?? 0.995;
  const smooth = method === 'smoothquant';
  if (!(alpha >= 0 && alpha <= 1))
    throw new EmbedpoolError('CONFIG_INVALID', `alpha ${alpha} is not in [0, 1]`);

  const { model: source, bytes } = await readModel(opts.input);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const sourceMeta = getMetadata(source);
  if (sourceMeta[META.precision] === 'int8') {
    throw new EmbedpoolError('MODEL_INVALID', `${opts.input} is already quantized to int8`);
  }
  const fp32 = await openSession(bytes, { threads: opts.threads ?? 0 });
  try {
    const size = sessionInputSize(fp32);
    const load = (dir: string) =>
      loadImageDir(dir, { size, ...(opts.preprocessor ? { preprocessor: opts.preprocessor } : {}) });
    const calibration = await load(opts.calibrationDir ?? DEFAULT_CALIBRATION_DIR);
    const holdout = await load(opts.holdoutDir ?? DEFAULT_HOLDOUT_DIR);
    checkDisjoint(calibration, holdout);

    const { probeIndex, probeGroups, matmuls } = probeMatMuls(source, opts.input, log);
    const stats = await collectActivationStats(
      source,
      probeGroups.map((g) => g.input),
      calibration.map((i) => i.pixels),
      opts.threads ?? 0,
    );
    log(`activation statistics from ${calibration.length} calibration photos`);

    const ranking = rankOutliers(probeIndex, probeGroups, stats, smooth, alpha);

    const built = await buildWithFallback(opts, source, fp32, calibration, {
      stats,
      ranking,
      alpha,
      smooth,
      weightBits,
      minCosine,
      log,
    });

    try {
      const gate = await compareSessions(fp32, built.session, holdout);
      const passed = gate.minCosine >= minCosine;
      const calibrationDigest = createHash('sha256')
        .update(calibration.map((i) => i.sha256).join('\n'))
        .digest('hex');
      const id = sourceIdentity(opts.input, sourceMeta, opts.sourceId);
      const metadata = int8Metadata(
        { smooth, alpha, weightBits, gate, id, sha256, calibrationDigest },
        built,
        calibration.length,
      );
      setMetadata(built.model, metadata);
      built.model.docString = `${source.docString ?? ''}${source.docString ? ' | ' : ''}int8 (${metadata[META.method]}) of ${id}`;
      return {
        model: encodeModel(built.model),
        passed,
        minCosine,
        gate,
        calibration: built.calib,
        rewrite: built.rewrite,
        matmuls,
        metadata,
        source: { id, sha256, bytes: bytes.length },
      };
    } finally {
      await built.session.release();
    }
  } finally {
    await fp32.release();
  }
}
