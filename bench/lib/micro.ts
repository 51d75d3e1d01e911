import { Worker } from 'node:worker_threads';
import { MicroBatcher } from '@embedpool/core/batching';
import type { Engine } from '@embedpool/core/engine';
import { progress } from './log';
import { round, roundSummary, type Summary, summarize } from './stats';

export interface MicroInput {
  batchSizes: number[];
  reps: number;
  /** BATCH_WAIT_MS a timer-only batcher would make every lone request wait. */
  batchWaitMs: number;
}

export interface TransferRow {
  batchSize: number;
  bufferBytes: number;
  /** Round trip main -> thread -> main with the buffer transferred both ways (what the engine does). */
  transferMs: Summary;
  /** The same with structured-clone copies both ways. */
  copyMs: Summary;
  savedMsPerBatch: number;
}

export interface IdleBatchRow {
  /** The shipped rule: a lone image on an idle model leaves at once. */
  noWaitWhenIdleMs: Summary;
  /** The same image when something else is still "expected" for batchWaitMs: what a timer-only batcher does. */
  timerOnlyMs: Summary;
  batchWaitMs: number;
}

export interface MicroResult {
  transfer: TransferRow[];
  idleBatch: IdleBatchRow;
}

// An echo thread: answers with the same buffer, moved back when it was moved in.
const ECHO = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => parentPort.postMessage(m, m.transfer ? [m.buf.buffer] : []));
`;

/** A stand-in engine with a fixed 0-ms model, so only the batcher's own scheduling is timed. */
function instantEngine(): Engine {
  const fake = {
    threads: 1,
    infer: async (input: Float32Array, count: number) => ({
      embeddings: new Float32Array(count * 8),
      dim: 8,
      input,
      inferMs: 0,
    }),
  };
  return fake as unknown as Engine;
}

/**
 * A/B tests of two optimizations the pipeline already has, isolated from the model:
 * - batch buffers transferred to the inference thread instead of copied;
 * - the micro-batcher's rule that a lone image on an idle model does not wait for company.
 */
export async function runMicro(input: MicroInput): Promise<MicroResult> {
  const worker = new Worker(ECHO, { eval: true });
  const transfer: TransferRow[] = [];
  try {
    const roundTrip = (buf: Float32Array, moved: boolean) =>
      new Promise<Float32Array>((resolve) => {
        worker.once('message', (m: { buf: Float32Array }) => resolve(m.buf));
        worker.postMessage({ buf, transfer: moved }, moved ? [buf.buffer as ArrayBuffer] : []);
      });
    for (const batch of input.batchSizes) {
      let buf: Float32Array = new Float32Array(batch * 3 * 224 * 224).fill(0.25);
      const t: number[] = [];
      const c: number[] = [];
      for (let i = 0; i < input.reps + 2; i++) {
        const t0 = performance.now();
        buf = await roundTrip(buf, true);
        const t1 = performance.now();
        buf = await roundTrip(buf, false);
        const t2 = performance.now();
        if (i >= 2) {
          t.push(t1 - t0);
          c.push(t2 - t1);
        }
      }
      const ts = summarize(t);
      const cs = summarize(c);
      transfer.push({
        batchSize: batch,
        bufferBytes: buf.byteLength,
        transferMs: roundSummary(ts, 3),
        copyMs: roundSummary(cs, 3),
        savedMsPerBatch: round(cs.median - ts.median, 3),
      });
      progress(
        `micro: batch ${batch} buffer round trip: transfer ${ts.median.toFixed(3)} ms, copy ${cs.median.toFixed(2)} ms`,
      );
    }
  } finally {
    await worker.terminate();
  }

  const batcher = new MicroBatcher(instantEngine(), {
    maxBatchSize: 16,
    batchWaitMs: input.batchWaitMs,
    height: 224,
    width: 224,
  });
  const item = { fill: (out: Float32Array, offset: number) => out.fill(0.5, offset, offset + 8) };
  const lone: number[] = [];
  const timer: number[] = [];
  for (let i = 0; i < input.reps + 2; i++) {
    const t0 = performance.now();
    await batcher.embed(item);
    const t1 = performance.now();
    // Something is announced but never arrives: the batch waits its batchWaitMs, as a timer-only batcher would.
    const release = batcher.expect();
    await batcher.embed(item);
    const t2 = performance.now();
    release();
    if (i >= 2) {
      lone.push(t1 - t0);
      timer.push(t2 - t1);
    }
  }
  await batcher.close();
  const idleBatch: IdleBatchRow = {
    noWaitWhenIdleMs: roundSummary(summarize(lone), 3),
    timerOnlyMs: roundSummary(summarize(timer), 3),
    batchWaitMs: input.batchWaitMs,
  };
  progress(
    `micro: lone image through the batcher: ${idleBatch.noWaitWhenIdleMs.median} ms (no-wait rule) vs ` +
      `${idleBatch.timerOnlyMs.median} ms (waiting ${input.batchWaitMs} ms for company)`,
  );
  return { transfer, idleBatch };
}
