import { readFileSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine } from '@embedpool/core/engine';
import { buildDinov2, DINOV2_BASE_CONFIG, parseDinov2Config } from '@embedpool/core/model';
import { defaultCacheDir } from '@embedpool/core/model-fetch';
import { type Agreement, quantizeModel } from '@embedpool/core/quantize';
import { fillInput } from '@embedpool/core/sku';
import { outlierDinov2Weights } from '@embedpool/testkit/stress-model';
import { cpuShare, cpuSnapshot } from './cpu';
import { type BenchImage, newPrefix, ServerUnderTest, scoreBody, scoreLoad } from './e2e';
import { progress } from './log';
import { round } from './stats';

/** Which int8 instructions the CPU has: VNNI does u8 x s8 dot products in one step. */
export interface Int8Cpu {
  avx2: boolean;
  avx512vnni: boolean;
  avxVnni: boolean;
  amxInt8: boolean;
  vnni: boolean;
}

export function int8Cpu(cpuinfo?: string): Int8Cpu {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '').split(/\s+/));
  const avx512vnni = flags.has('avx512_vnni');
  const avxVnni = flags.has('avx_vnni');
  return {
    avx2: flags.has('avx2'),
    avx512vnni,
    avxVnni,
    amxInt8: flags.has('amx_int8'),
    vnni: avx512vnni || avxVnni,
  };
}

export interface Int8Input {
  cacheDir?: string;
  quick: boolean;
  /** Intra-op threads for the raw comparison (the machine's cores). */
  threads: number;
  batchSizes: number[];
  /** For the end-to-end comparison; null skips it. */
  e2e: {
    redisUrl: string;
    images: BenchImage[];
    seconds: number;
    concurrency: number;
    env: Record<string, string>;
  } | null;
}

interface RunStats {
  medianMs: number;
  minMs: number;
  imagesPerSec: number;
  /** Process CPU time per image (median run): what the run cost, whoever else wanted the cores. */
  cpuMsPerImage: number;
}

export interface Int8RawRow {
  /** Intra-op threads of each session. */
  threads: number;
  batchSize: number;
  rounds: number;
  fp32: RunStats;
  int8: RunStats;
  /** int8 over fp32 images/s, from the median run times (the headline). */
  speedup: number;
  /** The same from the fastest runs: what each model does when the neighbours are quiet. */
  speedupFastest: number;
  /**
   * fp32 CPU time per image over int8's: with one intra-op thread nothing spins, so this is the work each
   * model does, and stays put when other processes take the cores (wall-clock ratios do not).
   */
  speedupCpu: number;
  foreignCores: number | null;
}

type Quality = Pick<Agreement, 'images' | 'minCosine' | 'meanCosine' | 'minNormRatio' | 'maxNormRatio'> & {
  worst: string;
};

export interface Int8Report {
  cpu: Int8Cpu;
  /** What the CPU should reach: 1.8x with VNNI, 1.3x on AVX2 only. */
  speedupTarget: number;
  model: {
    fp32Path: string;
    fp32Bytes: number;
    int8Path: string;
    int8Bytes: number;
    quantizeSeconds: number;
  };
  /** Float32 vs int8 on the held-out photos (never calibrated on). */
  smoothquant: Quality & { passed: boolean };
  /** The same for plain int8 (no smoothing): what the outliers do without it. */
  naive: Quality | null;
  raw: Int8RawRow[];
  e2e: {
    concurrency: number;
    seconds: number;
    fp32ImagesPerSec: number;
    int8ImagesPerSec: number;
    speedup: number;
    foreignCores: (number | null)[];
  } | null;
}

function quality(a: Agreement): Quality {
  return {
    images: a.images,
    minCosine: round(a.minCosine, 5),
    meanCosine: round(a.meanCosine, 5),
    minNormRatio: round(a.minNormRatio, 4),
    maxNormRatio: round(a.maxNormRatio, 4),
    worst: a.worst.name,
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile() && s.size > 0,
    () => false,
  );
}

/**
 * The full-size ViT-B/14 with outlier channels (what real DINOv2 checkpoints have and plain random weights
 * lack), built with the project's builder and cached next to the plain bench model.
 */
async function outlierModel(cacheDir: string): Promise<string> {
  const path = join(cacheDir, 'random', 'dinov2-base-outliers-seed0-224-float32.onnx');
  if (!(await exists(path))) {
    progress(`int8: building the full-size outlier model at ${path}`);
    // initializer_range 0.05 as in the test stress model: random weights that still tell photos apart.
    const config = parseDinov2Config({ ...DINOV2_BASE_CONFIG, initializer_range: 0.05 });
    await writeFile(
      path,
      buildDinov2({ config, weights: outlierDinov2Weights(config), imageSize: 224 }).model,
    );
  }
  return path;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * fp32 and int8 run in alternation (a few runs of one, then the other, order swapped each round), so a
 * neighbour's burst on a shared machine hits both rather than whichever happened to run then.
 */
async function rawComparison(
  fp32: string,
  int8: string,
  input: Int8Input,
  threads: number,
  batchSizes: number[],
): Promise<Int8RawRow[]> {
  const runtime = { intraOpThreads: threads, interOpThreads: 1 };
  const engines = {
    fp32: await Engine.load({ modelPath: fp32, runtime }),
    int8: await Engine.load({ modelPath: int8, runtime }),
  };
  const rows: Int8RawRow[] = [];
  try {
    for (const batch of batchSizes) {
      const rounds = input.quick ? 3 : 5;
      const perRound = batch === 1 ? 3 : 1;
      let buf = fillInput(new Float32Array(batch * 3 * 224 * 224));
      const times: Record<'fp32' | 'int8', number[]> = { fp32: [], int8: [] };
      const cpuTimes: Record<'fp32' | 'int8', number[]> = { fp32: [], int8: [] };
      for (const which of ['fp32', 'int8'] as const)
        buf = (await engines[which].infer(buf, batch, 224, 224)).input;
      const before = cpuSnapshot([process.pid]);
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? (['fp32', 'int8'] as const) : (['int8', 'fp32'] as const);
        for (const which of order) {
          for (let i = 0; i < perRound; i++) {
            const c0 = process.cpuUsage();
            const t0 = performance.now();
            buf = (await engines[which].infer(buf, batch, 224, 224)).input;
            times[which].push(performance.now() - t0);
            const c = process.cpuUsage(c0);
            cpuTimes[which].push((c.user + c.system) / 1000);
          }
        }
      }
      const cpu = cpuShare(before, cpuSnapshot([process.pid]));
      const stats = (t: number[], c: number[]): RunStats => ({
        medianMs: round(median(t), 1),
        minMs: round(Math.min(...t), 1),
        imagesPerSec: round((batch * 1000) / median(t), 2),
        cpuMsPerImage: round(median(c) / batch, 1),
      });
      const row: Int8RawRow = {
        threads,
        batchSize: batch,
        rounds,
        fp32: stats(times.fp32, cpuTimes.fp32),
        int8: stats(times.int8, cpuTimes.int8),
        speedup: round(median(times.fp32) / median(times.int8), 2),
        speedupFastest: round(Math.min(...times.fp32) / Math.min(...times.int8), 2),
        speedupCpu: round(median(cpuTimes.fp32) / median(cpuTimes.int8), 2),
        foreignCores: cpu.foreignCores,
      };
      rows.push(row);
      progress(
        `int8: raw ${threads} thread(s) batch ${batch}: fp32 ${row.fp32.imagesPerSec} img/s, int8 ${row.int8.imagesPerSec} img/s: ` +
          `${row.speedup}x (fastest runs ${row.speedupFastest}x; CPU time per image ${row.fp32.cpuMsPerImage} vs ` +
          `${row.int8.cpuMsPerImage} ms: ${row.speedupCpu}x; foreign load ${row.foreignCores ?? '?'} cores)`,
      );
    }
  } finally {
    await engines.fp32.close();
    await engines.int8.close();
  }
  return rows;
}

async function e2eRate(path: string, modelId: string, e: NonNullable<Int8Input['e2e']>) {
  const sut = await ServerUnderTest.start({
    modelPath: path,
    modelId,
    randomWeights: true,
    redisUrl: e.redisUrl,
    prefix: newPrefix(),
    env: e.env,
  });
  try {
    const bodies = e.images.map((img) => ({ body: scoreBody([img]), images: 1 }));
    await scoreLoad(sut.url, bodies.slice(0, 2), 1, 0.1);
    const before = cpuSnapshot([process.pid, sut.pid]);
    const load = await scoreLoad(sut.url, bodies, e.concurrency, e.seconds);
    const cpu = cpuShare(before, cpuSnapshot([process.pid, sut.pid]));
    if (load.errors > 0)
      throw new Error(`int8 e2e (${modelId}): ${load.errors} errors, first ${load.firstError}`);
    return { rate: load.images / load.wallSeconds, foreign: cpu.foreignCores };
  } finally {
    await sut.stop();
  }
}

export async function runInt8(input: Int8Input): Promise<Int8Report> {
  const cacheDir = input.cacheDir ?? defaultCacheDir();
  const cpu = int8Cpu();
  const fp32 = await outlierModel(cacheDir);
  const int8 = fp32.replace(/-float32\.onnx$/, '-int8.onnx');
  const t0 = performance.now();
  const smooth = await quantizeModel({
    input: fp32,
    threads: input.threads,
    log: (l) => progress(`int8: ${l}`),
  });
  const quantizeSeconds = (performance.now() - t0) / 1000;
  // Written even below the gate: the bench reports speed and quality either way.
  await writeFile(int8, smooth.model);
  progress(
    `int8: SmoothQuant in ${quantizeSeconds.toFixed(1)} s: held-out min cosine ${smooth.gate.minCosine.toFixed(4)}, ` +
      `norm ratio ${smooth.gate.minNormRatio.toFixed(3)}..${smooth.gate.maxNormRatio.toFixed(3)}`,
  );
  let naive: Quality | null = null;
  if (!input.quick) {
    const n = await quantizeModel({
      input: fp32,
      method: 'naive',
      maxFloatFallback: 0,
      threads: input.threads,
    });
    naive = quality(n.gate);
    progress(`int8: naive int8 (no smoothing): held-out min cosine ${naive.minCosine}`);
  }
  const raw = await rawComparison(fp32, int8, input, input.threads, input.batchSizes);
  // One thread: the CPU-time ratio without spinning threads, robust on a shared machine.
  if (input.threads > 1) raw.push(...(await rawComparison(fp32, int8, input, 1, [1])));
  let e2e: Int8Report['e2e'] = null;
  if (input.e2e) {
    const a = await e2eRate(fp32, 'outliers-fp32', input.e2e);
    const b = await e2eRate(int8, 'outliers-int8', input.e2e);
    e2e = {
      concurrency: input.e2e.concurrency,
      seconds: input.e2e.seconds,
      fp32ImagesPerSec: round(a.rate, 2),
      int8ImagesPerSec: round(b.rate, 2),
      speedup: round(b.rate / a.rate, 2),
      foreignCores: [a.foreign, b.foreign],
    };
    progress(
      `int8: end-to-end /score c=${e2e.concurrency}: fp32 ${e2e.fp32ImagesPerSec} img/s, int8 ${e2e.int8ImagesPerSec} img/s (${e2e.speedup}x)`,
    );
  }
  return {
    cpu,
    speedupTarget: cpu.vnni ? 1.8 : 1.3,
    model: {
      fp32Path: fp32,
      fp32Bytes: (await stat(fp32)).size,
      int8Path: int8,
      int8Bytes: smooth.model.length,
      quantizeSeconds: round(quantizeSeconds, 1),
    },
    smoothquant: { ...quality(smooth.gate), passed: smooth.passed },
    naive,
    raw,
    e2e,
  };
}
