/**
 * Cold start to first answer: a fresh process loads the model and answers one image, once as the worker
 * did before it had a warm-up (the first request pays for onnxruntime's first-run allocations) and once
 * as it does now (apps/worker/src/warm-up.ts runs a dummy batch of MAX_BATCH_SIZE before the worker
 * reports ready). Each run is its own child process, so every "first" run is really the first.
 */
import { readFileSync } from 'node:fs';
import { Engine } from '@embedpool/core/engine';
import { createLogger } from '@embedpool/core/logger';
import { preprocess } from '@embedpool/core/preprocess';
import { warmUp } from '@embedpool/worker';
import { median, round } from './stats';

export interface ColdStartInput {
  modelPath: string;
  provider: 'cpu' | 'cuda';
  /** The warm-up batch: the worker's MAX_BATCH_SIZE. */
  batch: number;
  warmUp: boolean;
  imagePath: string;
}

export interface ColdStartRun {
  warmUp: boolean;
  /** Engine.load: session creation on every inference thread. */
  loadMs: number;
  /** The dummy batch; null without warm-up. */
  warmUpMs: number | null;
  /** The first image after the process is ready: decode + preprocess + model run. */
  firstAnswerMs: number;
  /** The same image again: what every later request costs. */
  secondAnswerMs: number;
  /** Load (+ warm-up) + first answer: from "start the worker" to "first vector out". */
  timeToFirstAnswerMs: number;
}

/** Child side (bench/child.ts `coldstart`). */
export async function runColdStart(input: ColdStartInput): Promise<ColdStartRun> {
  const bytes = readFileSync(input.imagePath);
  const t0 = performance.now();
  const engine = await Engine.load({
    modelPath: input.modelPath,
    runtime: { executionProvider: input.provider },
  });
  try {
    const loaded = performance.now();
    const height = engine.info.height ?? 224;
    const width = engine.info.width ?? 224;
    let warmUpMs: number | null = null;
    if (input.warmUp) {
      const w = await warmUp(
        engine,
        { batch: input.batch, height, width },
        createLogger({ name: 'bench', level: 'silent' }),
      );
      warmUpMs = round(w.ms, 1);
    }
    const ready = performance.now();
    const answer = async () => {
      const start = performance.now();
      const x = await preprocess(bytes);
      await engine.infer(x, 1, height, width);
      return performance.now() - start;
    };
    const first = await answer();
    const second = await answer();
    return {
      warmUp: input.warmUp,
      loadMs: round(loaded - t0, 1),
      warmUpMs,
      firstAnswerMs: round(first, 1),
      secondAnswerMs: round(second, 1),
      timeToFirstAnswerMs: round(ready - t0 + first, 1),
    };
  } finally {
    await engine.close();
  }
}

export interface ColdStartSummary {
  warmUp: boolean;
  runs: number;
  loadMsMedian: number;
  warmUpMsMedian: number | null;
  firstAnswerMsMedian: number;
  secondAnswerMsMedian: number;
  timeToFirstAnswerMsMedian: number;
}

export interface ColdStartReport {
  batch: number;
  image: string;
  before: ColdStartSummary;
  after: ColdStartSummary;
  runs: ColdStartRun[];
}

export function summarize(runs: ColdStartRun[], warm: boolean): ColdStartSummary {
  const mine = runs.filter((r) => r.warmUp === warm);
  const med = (xs: number[]) => round(median(xs), 1);
  return {
    warmUp: warm,
    runs: mine.length,
    loadMsMedian: med(mine.map((r) => r.loadMs)),
    warmUpMsMedian: warm ? med(mine.map((r) => r.warmUpMs ?? 0)) : null,
    firstAnswerMsMedian: med(mine.map((r) => r.firstAnswerMs)),
    secondAnswerMsMedian: med(mine.map((r) => r.secondAnswerMs)),
    timeToFirstAnswerMsMedian: med(mine.map((r) => r.timeToFirstAnswerMs)),
  };
}

/** The markdown section. */
export function coldStartMarkdown(c: ColdStartReport): string[] {
  const row = (label: string, s: ColdStartSummary) =>
    `| ${label} | ${s.runs} | ${s.loadMsMedian} | ${s.warmUpMsMedian ?? '–'} | ${s.firstAnswerMsMedian} | ${s.secondAnswerMsMedian} | ${s.timeToFirstAnswerMsMedian} |`;
  return [
    '## Cold start to first answer (fresh process per run, medians)',
    '',
    `One image (${c.image}) right after the model is loaded; warm-up = one dummy batch of ${c.batch} per inference thread.`,
    '',
    '| worker start | runs | load (ms) | warm-up (ms) | first answer (ms) | second answer (ms) | start to first answer (ms) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('before: no warm-up', c.before),
    row('after: warm-up before ready', c.after),
    '',
  ];
}
