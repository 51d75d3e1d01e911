import type { Engine } from '@embedpool/core/engine';
import type { Logger } from '@embedpool/core/logger';

export interface WarmUpResult {
  /** Images run per inference thread: the largest batch the worker will form. */
  batch: number;
  /** Model runs made (one per inference thread). */
  runs: number;
  ms: number;
}

/**
 * Runs the model once per inference thread on a zero batch of the largest size the batcher forms, before
 * the worker announces itself: onnxruntime allocates its arenas and picks kernels on a session's first
 * run of a shape, and that cost belongs to start-up, not to the first user's request. The biggest batch
 * sizes the arena for every smaller one.
 */
export async function warmUp(
  engine: Engine,
  shape: { batch: number; height: number; width: number },
  logger: Logger,
): Promise<WarmUpResult> {
  const started = performance.now();
  const input = new Float32Array(shape.batch * 3 * shape.height * shape.width);
  const runs = engine.threads;
  // One run per thread, all at once: the engine hands each to an idle thread, so every session is warmed.
  await Promise.all(
    Array.from({ length: runs }, () => engine.infer(input, shape.batch, shape.height, shape.width)),
  );
  const result = { batch: shape.batch, runs, ms: performance.now() - started };
  logger.info({ ...result, ms: Math.round(result.ms) }, 'model warmed up');
  return result;
}
