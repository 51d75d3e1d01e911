import { readFileSync } from 'node:fs';
import { DINOV2_PREPROCESSOR_CONFIG, preprocess } from '@embedpool/core/preprocess';
import { median, round } from './stats';

/**
 * Decode alone: sharp decode + resize + normalize of one image, one at a time, the pipeline benchmark's
 * yardstick. Child side (bench/child.ts `decode`): a process that does nothing else, so its CPU time is the
 * decode's own.
 */
export interface DecodeAloneInput {
  imagePath: string;
  seconds: number;
}

export interface DecodeAlone {
  cpuMsPerImage: number;
  wallMsPerImage: number;
  reps: number;
}

export async function runDecodeAlone({ imagePath, seconds }: DecodeAloneInput): Promise<DecodeAlone> {
  const bytes = readFileSync(imagePath);
  const opts = { config: DINOV2_PREPROCESSOR_CONFIG };
  for (let i = 0; i < 5; i++) await preprocess(bytes, opts);
  const samples: { cpu: number; wall: number }[] = [];
  // Several short rounds; the median round resists a neighbour's burst.
  for (let round_ = 0; round_ < 5; round_++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let reps = 0;
    while (performance.now() - t0 < (seconds * 1000) / 5 || reps < 5) {
      await preprocess(bytes, opts);
      reps++;
    }
    const c = process.cpuUsage(c0);
    samples.push({ cpu: (c.user + c.system) / 1000 / reps, wall: (performance.now() - t0) / reps });
  }
  return {
    cpuMsPerImage: round(median(samples.map((s) => s.cpu)), 2),
    wallMsPerImage: round(median(samples.map((s) => s.wall)), 2),
    reps: samples.length,
  };
}
