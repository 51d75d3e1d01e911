import { readFileSync } from 'node:fs';
import { Engine } from '@embedpool/core/engine';
import { preprocess } from '@embedpool/core/preprocess';
import { loadParityReference, PARITY_MODEL, parityImages, parityPixelValues } from '@embedpool/testkit';
import sharp from 'sharp';
import { type CpuShare, cpuShare, cpuSnapshot } from './cpu';
import { progress } from './log';
import { compareVectors, round, roundSummary, type Summary, summarize } from './stats';

export interface PreprocessInput {
  /** Each image and path runs at least this long... */
  minSeconds: number;
  /** ...and at least this many times (after one untimed run). */
  minReps: number;
  /** Concurrent decodes for the whole-machine figure (the libuv pool must be at least this big). */
  parallel: number;
  /** Embed both tensors with the parity fixture's small DINOv2 to see what shrink-on-load costs downstream. */
  throughModel: boolean;
  benchPids: number[];
}

export interface PreprocessRow {
  name: string;
  format: string;
  width: number;
  height: number;
  encodedBytes: number;
  /** Synthetic: re-encoded here from the 3000x2000 fixture JPEG, not a fixture file. */
  synthetic: boolean;
  exactMs: Summary;
  shrinkMs: Summary;
  /** One decode at a time: what one core does (sharp.concurrency is 1; one libuv thread per decode). */
  exactImagesPerSecPerCore: number;
  shrinkImagesPerSecPerCore: number;
  shrinkSpeedup: number;
  /** Shrink-on-load tensor vs the exact path's, in normalised units (1/255 of a pixel ~ 0.017). */
  shrinkVsExact: { tensorMad: number; tensorCosine: number };
  /** Against the PIL reference tensor (parity fixture), where one exists. */
  vsPilReference: { exactMad: number; shrinkMad: number } | null;
  /** Through the parity fixture's model (random weights, 192-d): cosine of the two embeddings. */
  embeddingCosineShrinkVsExact: number | null;
  embeddingCosineVsReference: { exact: number; shrink: number } | null;
}

export interface PreprocessMix {
  images: number;
  /** The fixture photos one after another, every file equally often. */
  exactImagesPerSecOneAtATime: number;
  shrinkImagesPerSecOneAtATime: number;
  parallel: number;
  exactImagesPerSecParallel: number;
  shrinkImagesPerSecParallel: number;
  cpu: CpuShare;
}

export interface PreprocessResult {
  sharpConcurrency: number;
  uvThreadpoolSize: string | null;
  rows: PreprocessRow[];
  mix: PreprocessMix;
  notes: string[];
}

interface Sample {
  name: string;
  bytes: Uint8Array;
  synthetic: boolean;
  hasReference: boolean;
}

async function timeIt(fn: () => Promise<unknown>, minSeconds: number, minReps: number): Promise<number[]> {
  await fn();
  const out: number[] = [];
  const deadline = performance.now() + minSeconds * 1000;
  while (out.length < minReps || performance.now() < deadline) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Decode + resize + crop + normalise, exact path vs `shrinkOnLoad`, per image and over the fixture mix. */
export async function runPreprocess(input: PreprocessInput): Promise<PreprocessResult> {
  const fixtures = parityImages();
  const samples: Sample[] = fixtures.map((f) => ({
    name: f.name,
    bytes: readFileSync(f.path),
    synthetic: false,
    // decode_only images (the CMYK JPEG) have no single right RGB conversion to compare with.
    hasReference: f.reference !== undefined,
  }));
  const large = samples.find((s) => s.name === 'china_large_3000x2000.jpg');
  if (large) {
    // 3000x2000 in the other formats a shrink-on-load path exists for (WebP) or does not (PNG).
    const webp = await sharp(large.bytes).webp({ quality: 90 }).toBuffer();
    const png = await sharp(large.bytes).png({ compressionLevel: 6 }).toBuffer();
    samples.push(
      { name: 'china_large_3000x2000.webp', bytes: webp, synthetic: true, hasReference: false },
      { name: 'china_large_3000x2000.png', bytes: png, synthetic: true, hasReference: false },
    );
  }

  const exactTensors = new Map<string, Float32Array>();
  const shrinkTensors = new Map<string, Float32Array>();
  const rows: PreprocessRow[] = [];
  for (const s of samples) {
    const meta = await sharp(s.bytes).metadata();
    const exactMs = await timeIt(() => preprocess(s.bytes), input.minSeconds, input.minReps);
    const shrinkMs = await timeIt(
      () => preprocess(s.bytes, { shrinkOnLoad: true }),
      input.minSeconds,
      input.minReps,
    );
    const exact = await preprocess(s.bytes);
    const shrink = await preprocess(s.bytes, { shrinkOnLoad: true });
    exactTensors.set(s.name, exact);
    shrinkTensors.set(s.name, shrink);
    const vs = compareVectors(shrink, exact);
    let vsRef: PreprocessRow['vsPilReference'] = null;
    if (s.hasReference) {
      const ref = parityPixelValues(s.name);
      vsRef = {
        exactMad: round(compareVectors(exact, ref).mad, 4),
        shrinkMad: round(compareVectors(shrink, ref).mad, 4),
      };
    }
    const e = summarize(exactMs);
    const k = summarize(shrinkMs);
    const row: PreprocessRow = {
      name: s.name,
      format: meta.format ?? 'unknown',
      width: meta.autoOrient?.width ?? meta.width ?? 0,
      height: meta.autoOrient?.height ?? meta.height ?? 0,
      encodedBytes: s.bytes.byteLength,
      synthetic: s.synthetic,
      exactMs: roundSummary(e, 2),
      shrinkMs: roundSummary(k, 2),
      exactImagesPerSecPerCore: round(1000 / e.median, 1),
      shrinkImagesPerSecPerCore: round(1000 / k.median, 1),
      shrinkSpeedup: round(e.median / k.median, 2),
      shrinkVsExact: { tensorMad: round(vs.mad, 4), tensorCosine: round(vs.cosine, 6) },
      vsPilReference: vsRef,
      embeddingCosineShrinkVsExact: null,
      embeddingCosineVsReference: null,
    };
    rows.push(row);
    progress(
      `preprocess: ${s.name.padEnd(28)} exact ${e.median.toFixed(1).padStart(6)} ms, shrink ${k.median
        .toFixed(1)
        .padStart(6)} ms, tensor MAD ${row.shrinkVsExact.tensorMad}`,
    );
  }

  if (input.throughModel) await embedBoth(rows, exactTensors, shrinkTensors);

  // The fixture mix: every photo once per round, one at a time and `parallel` at a time.
  const photos = samples.filter((s) => !s.synthetic);
  const rounds = Math.max(2, Math.ceil(input.minReps / 2));
  const work = Array.from({ length: rounds }, () => photos).flat();
  const pids = [process.pid, ...input.benchPids];
  const before = cpuSnapshot(pids);
  const rate = async (concurrency: number, shrinkOnLoad: boolean) => {
    const t0 = performance.now();
    await pool(work, concurrency, (s) => preprocess(s.bytes, { shrinkOnLoad }));
    return round((work.length * 1000) / (performance.now() - t0), 1);
  };
  const mix: PreprocessMix = {
    images: work.length,
    exactImagesPerSecOneAtATime: await rate(1, false),
    shrinkImagesPerSecOneAtATime: await rate(1, true),
    parallel: input.parallel,
    exactImagesPerSecParallel: await rate(input.parallel, false),
    shrinkImagesPerSecParallel: await rate(input.parallel, true),
    cpu: cpuShare(before, cpuSnapshot(pids)),
  };
  progress(
    `preprocess: fixture mix ${mix.exactImagesPerSecOneAtATime} img/s one at a time (exact), ` +
      `${mix.exactImagesPerSecParallel} img/s ${input.parallel} at a time`,
  );
  return {
    sharpConcurrency: sharp.concurrency(),
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? null,
    rows,
    mix,
    notes: [
      'Times are decode (probe + decode + resize + crop) + normalise to float32 CHW, from bytes in memory.',
      'Embedding cosines use the parity fixture model (DINOv2 architecture, hidden 192, random weights): a sensitivity check, not the real model.',
    ],
  };
}

async function embedBoth(
  rows: PreprocessRow[],
  exact: Map<string, Float32Array>,
  shrink: Map<string, Float32Array>,
): Promise<void> {
  const ref = loadParityReference();
  const engine = await Engine.load({ modelPath: PARITY_MODEL, runtime: { intraOpThreads: 1 } });
  try {
    const per = 3 * 224 * 224;
    const embed = async (t: Float32Array) => {
      const buf = new Float32Array(per);
      buf.set(t.subarray(0, per));
      return (await engine.infer(buf, 1, 224, 224)).embeddings;
    };
    for (const row of rows) {
      const a = exact.get(row.name);
      const b = shrink.get(row.name);
      if (!a || !b || a.length !== per) continue;
      const ea = await embed(a);
      const eb = await embed(b);
      row.embeddingCosineShrinkVsExact = round(compareVectors(ea, eb).cosine, 6);
      const r = ref.embeddings[row.name];
      if (r && !ref.decode_only.includes(row.name)) {
        row.embeddingCosineVsReference = {
          exact: round(compareVectors(ea, r).cosine, 6),
          shrink: round(compareVectors(eb, r).cosine, 6),
        };
      }
    }
  } finally {
    await engine.close();
  }
}
