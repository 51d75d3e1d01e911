import { Engine, type ExecutionProvider } from '@embedpool/core/engine';
import { fillInput } from '@embedpool/core/sku';
import { type CpuShare, cpuShare, cpuSnapshot } from './cpu';
import { progress } from './log';
import { round, roundSummary, type Summary, summarize } from './stats';

/** How the cores are split: `intraOpThreads` per session, `sessions` sessions running at once. */
export interface Split {
  intraOpThreads: number;
  sessions: number;
}

export interface RawInput {
  modelPath: string;
  provider: ExecutionProvider;
  splits: Split[];
  batchSizes: number[];
  /** Each cell runs at least this long... */
  minSeconds: number;
  /** ...and collects at least this many timed runs (over all sessions). */
  minRuns: number;
  /** Untimed runs per session at each batch size first (GPU: cuDNN picks kernels per shape). */
  warmupPerBatchSize: boolean;
  /** Other processes of the bench (parent, redis-server), for the CPU accounting. */
  benchPids: number[];
  /** A cell during which other processes used more than `foreignCores` is measured again, within a budget. */
  noisy: { foreignCores: number; maxAttempts: number; budgetSeconds: number };
}

export interface RawCell {
  intraOpThreads: number;
  sessions: number;
  batchSize: number;
  runs: number;
  images: number;
  wallSeconds: number;
  /** images / wall time of the cell: includes every pause and hiccup. */
  imagesPerSecWall: number;
  /** sessions x batch / median run time: the headline, robust to a noisy neighbour's bursts. */
  imagesPerSecMedian: number;
  /** Wall time of one infer() as the caller sees it (post to the thread, run, answer back). */
  runMs: Summary;
  /** session.run() alone, timed inside the inference thread. */
  sessionRunMs: Summary;
  /** Median per image: the latency cost of batching. */
  msPerImageMedian: number;
  /**
   * Images per CPU-second the bench's processes got: steadier than images/s when other processes take
   * CPU (it still counts spinning threads as work).
   */
  imagesPerCoreSecond: number | null;
  cpu: CpuShare;
  /** Measurements taken (more than one when other processes were busy); the quietest is kept. */
  attempts: number;
  foreignCoresPerAttempt: (number | null)[];
}

export interface RawSplitResult {
  intraOpThreads: number;
  sessions: number;
  provider: ExecutionProvider;
  fallbackReason: string | null;
  loadSeconds: number;
  inputName: string;
  outputName: string;
  dim: number | null;
}

export interface RawResult {
  splits: RawSplitResult[];
  cells: RawCell[];
}

/** Model throughput straight on onnxruntime-node through the Engine: the ceiling for the pipeline. */
export async function runRaw(input: RawInput): Promise<RawResult> {
  const result: RawResult = { splits: [], cells: [] };
  const pids = [process.pid, ...input.benchPids];
  const maxBatch = Math.max(...input.batchSizes);
  let retrySeconds = 0;
  for (const split of input.splits) {
    const t0 = performance.now();
    const engine = await Engine.load({
      modelPath: input.modelPath,
      threads: split.sessions,
      runtime: {
        executionProvider: input.provider,
        intraOpThreads: split.intraOpThreads,
        interOpThreads: 1,
      },
    });
    const loadSeconds = (performance.now() - t0) / 1000;
    if (engine.provider !== input.provider) {
      await engine.close();
      throw new Error(
        `asked for ${input.provider} but the engine runs on ${engine.provider}: ${engine.fallbackReason ?? ''}`,
      );
    }
    result.splits.push({
      ...split,
      provider: engine.provider,
      fallbackReason: engine.fallbackReason ?? null,
      loadSeconds: round(loadSeconds),
      inputName: engine.info.inputName,
      outputName: engine.info.outputName,
      dim: engine.dim,
    });
    progress(
      `raw: ${split.intraOpThreads} intra-op x ${split.sessions} session(s) loaded in ${loadSeconds.toFixed(1)} s`,
    );
    try {
      const height = engine.info.height ?? 224;
      const width = engine.info.width ?? 224;
      const per = 3 * height * width;
      const buffers = Array.from({ length: split.sessions }, (_, i) =>
        fillInput(new Float32Array(maxBatch * per), i),
      );
      // Every session runs once before timing: weights paged in, arenas allocated, threads spun up.
      await Promise.all(
        buffers.map(async (b, i) => {
          buffers[i] = (await engine.infer(b, 1, height, width)).input;
        }),
      );
      for (const batch of input.batchSizes) {
        if (input.warmupPerBatchSize) {
          await Promise.all(
            buffers.map(async (b, i) => {
              buffers[i] = (await engine.infer(b, batch, height, width)).input;
            }),
          );
        }
        const measure = async (): Promise<RawCell> => {
          const runMs: number[] = [];
          const sessionMs: number[] = [];
          const before = cpuSnapshot(pids);
          const start = performance.now();
          const deadline = start + input.minSeconds * 1000;
          // Each session loops until the cell has both its time and its runs; every run started is counted.
          const more = () => performance.now() < deadline || runMs.length < input.minRuns;
          await Promise.all(
            buffers.map(async (_, i) => {
              while (more()) {
                const r0 = performance.now();
                const r = await engine.infer(buffers[i]!, batch, height, width);
                runMs.push(performance.now() - r0);
                sessionMs.push(r.inferMs);
                buffers[i] = r.input;
              }
            }),
          );
          const wall = (performance.now() - start) / 1000;
          const cpu = cpuShare(before, cpuSnapshot(pids));
          const run = summarize(runMs);
          const cell: RawCell = {
            intraOpThreads: split.intraOpThreads,
            sessions: split.sessions,
            batchSize: batch,
            runs: runMs.length,
            images: runMs.length * batch,
            wallSeconds: round(wall),
            imagesPerSecWall: round((runMs.length * batch) / wall),
            imagesPerSecMedian: round((split.sessions * batch * 1000) / run.median),
            runMs: roundSummary(run, 1),
            sessionRunMs: roundSummary(summarize(sessionMs), 1),
            msPerImageMedian: round(run.median / batch, 1),
            imagesPerCoreSecond: cpu.benchCores
              ? round((runMs.length * batch) / (cpu.benchCores * wall), 3)
              : null,
            cpu,
            attempts: 1,
            foreignCoresPerAttempt: [],
          };
          return cell;
        };
        // A neighbour's burst can halve a cell: measure again (within a budget) and keep the quietest try.
        let cell = await measure();
        let attempts = 1;
        const tries = [cell.cpu.foreignCores];
        while (
          attempts < input.noisy.maxAttempts &&
          (cell.cpu.foreignCores ?? 0) > input.noisy.foreignCores &&
          retrySeconds + cell.wallSeconds <= input.noisy.budgetSeconds
        ) {
          retrySeconds += cell.wallSeconds;
          progress(
            `raw: ${split.intraOpThreads}x${split.sessions} batch ${batch}: other processes took ` +
              `${cell.cpu.foreignCores} cores; measuring again`,
          );
          const again = await measure();
          attempts++;
          tries.push(again.cpu.foreignCores);
          if ((again.cpu.foreignCores ?? 0) < (cell.cpu.foreignCores ?? 0)) cell = again;
        }
        cell.attempts = attempts;
        cell.foreignCoresPerAttempt = tries;
        result.cells.push(cell);
        progress(
          `raw: ${split.intraOpThreads}x${split.sessions} batch ${String(batch).padStart(3)}: ` +
            `${cell.imagesPerSecMedian.toFixed(2)} img/s (median run ${cell.runMs.median.toFixed(0)} ms, ` +
            `${cell.runs} runs, wall ${cell.imagesPerSecWall.toFixed(2)} img/s, foreign load ${cell.cpu.foreignCores ?? '?'} cores` +
            (cell.attempts > 1 ? `, quietest of ${cell.attempts} tries)` : ')'),
        );
      }
    } finally {
      await engine.close();
    }
  }
  return result;
}
