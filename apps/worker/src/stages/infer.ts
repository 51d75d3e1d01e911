/**
 * The infer stage: the model runs on whole batches. The micro-batcher (core/batching) hands each batch to
 * the engine (core/engine: ONNX Runtime on its inference threads); this file builds that batcher for the
 * worker, with the batch and inference metrics, and records the `infer` span of each image.
 */
import { MicroBatcher, type MicroBatcherOptions } from '@embedpool/core/batching';
import type { Engine } from '@embedpool/core/engine';
import { type Context, epochMs, recordSpan } from '@embedpool/core/telemetry';
import type { WorkerMetrics } from '../metrics';

/** The worker's one micro-batcher over its engine: every image of every kind of work goes through it. */
export function createInferenceBatcher(
  engine: Engine,
  opts: MicroBatcherOptions,
  metrics: WorkerMetrics,
): MicroBatcher {
  const batcher = new MicroBatcher(engine, opts);
  batcher.on('batch', (e: { size: number; inferMs: number; waitMs: number }) => {
    metrics.batchSize.observe(e.size);
    metrics.modelRuns.inc();
    metrics.stage.observe({ stage: 'inference' }, e.inferMs / 1000);
    metrics.stage.observe({ stage: 'batch_wait' }, e.waitMs / 1000);
  });
  return batcher;
}

/** The model run of the batch an image was in, as a span of that image's trace. */
export function recordInferSpan(parent: Context, ran: { at: number; size: number }, done: number): void {
  recordSpan('infer', parent, epochMs(ran.at), epochMs(done), { 'embedpool.batch.size': ran.size });
}
