import { toEmbedpoolError } from '@embedpool/core/errors';
import type { Logger } from '@embedpool/core/logger';
import {
  InlineReader,
  type ItemFailure,
  keys,
  permanentJobFailure,
  type ScoreJobData,
  type ScoreResult,
  writeResult,
} from '@embedpool/core/queue';
import { inSpan } from '@embedpool/core/telemetry';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EmbedPipeline } from './embed-pipeline';
import type { WorkerMetrics } from './metrics';

export interface ScoreProcessorDeps {
  pipeline: EmbedPipeline;
  redis: Redis;
  prefix: string;
  resultTtlSeconds: number;
  modelId: string;
  dim: () => number;
  logger: Logger;
  metrics?: WorkerMetrics;
}

/** Reading a job's inline bytes from the API that holds them: loopback or the same network, so seconds. */
const INLINE_FETCH_TIMEOUT_MS = 10_000;

function l2normalize(v: Float32Array): void {
  let sum = 0;
  for (const x of v) sum += x * x;
  const n = Math.sqrt(sum);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i]! /= n;
}

/**
 * Embeds every image of a score job, writes the vectors to the job's binary result key and returns the
 * per-image failures. A bad image fails only its own row; a job nobody waits for any more is dropped
 * without running the model (UnrecoverableError: no retry).
 */
export function createScoreProcessor(deps: ScoreProcessorDeps) {
  return async (job: Job<ScoreJobData>): Promise<ScoreResult> => {
    // Validated on dequeue by the dispatcher (@embedpool/core/queue dispatch.ts).
    const data = job.data;
    const log = deps.logger.child({ jobId: job.id, requestId: data.requestId });
    await assertWanted(deps, job.id!, data.deadline);

    const inline = new InlineReader(data.inline, deps.redis, { timeoutMs: INLINE_FETCH_TIMEOUT_MS });
    const settled = await Promise.allSettled(
      data.images.map((ref) => deps.pipeline.embed(ref, undefined, inline)),
    );
    const dim = deps.dim();
    const vectors = new Float32Array(settled.length * dim);
    const failures: ItemFailure[] = [];
    settled.forEach((s, index) => {
      if (s.status === 'fulfilled') {
        if (data.normalize) l2normalize(s.value);
        vectors.set(s.value, index * dim);
      } else {
        const e = toEmbedpoolError(s.reason);
        failures.push({ index, code: e.code, message: e.message });
      }
    });
    // The sink of a /score job: the result key the waiting API request reads.
    await inSpan('deliver', { 'embedpool.sink': 'redis-result', 'embedpool.images': settled.length }, () =>
      writeResult(deps.redis, deps.prefix, job.id!, vectors, deps.resultTtlSeconds),
    );
    log.debug({ images: settled.length, failures: failures.length }, 'score job done');
    return { count: settled.length, dim, failures, model: deps.modelId };
  };
}

async function assertWanted(deps: ScoreProcessorDeps, jobId: string, deadline: number): Promise<void> {
  if (Date.now() > deadline) {
    throw permanentJobFailure('TIMEOUT', `the caller stopped waiting ${Date.now() - deadline} ms ago`);
  }
  if ((await deps.redis.exists(keys.cancelled(deps.prefix, jobId))) === 1) {
    throw permanentJobFailure('TIMEOUT', 'the caller cancelled the request');
  }
}
