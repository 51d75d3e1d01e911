/**
 * The batch stage: a decoded image joins the worker's micro-batch (core/batching), which packs images of
 * many jobs, ingestions and /score requests into shared model runs.
 */
import type { MicroBatcher } from '@embedpool/core/batching';
import type { DecodedForModel } from '@embedpool/core/preprocess';
import { context, epochMs, recordSpan } from '@embedpool/core/telemetry';
import { recordInferSpan } from './infer';

/**
 * Queues one image and resolves with its vector once its batch has run. `arriving` is the release of
 * the batcher's `expect()` for this image. The batch is shared by images of many traces: its wait
 * (`batch`) and its model run (`infer`) are recorded as spans of this image's trace after the fact, from
 * the times the batcher reports.
 */
export async function joinBatch(
  batcher: MicroBatcher,
  pixels: DecodedForModel,
  arriving: () => void,
): Promise<Float32Array> {
  const parent = context.active();
  const queuedAt = performance.now();
  let ran: { at: number; size: number } | undefined;
  // Queue first, then stop expecting it: the other order could send a batch a moment too early.
  const queued = batcher.embed({
    fill: (out, offset) => pixels.writeInto(out, offset),
    dispatched: (at, size) => {
      ran = { at, size };
    },
  });
  arriving();
  const vector = await queued;
  if (ran) {
    recordSpan('batch', parent, epochMs(queuedAt), epochMs(ran.at), { 'embedpool.batch.size': ran.size });
    recordInferSpan(parent, ran, performance.now());
  }
  return vector;
}
