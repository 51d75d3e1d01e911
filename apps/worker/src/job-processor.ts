import type { BlobServiceClient } from '@azure/storage-blob';
import { BlobStaging } from '@embedpool/core/blob';
import { EmbedpoolError, toEmbedpoolError } from '@embedpool/core/errors';
import { type EmbedJobData, type JobStore, jobKeys } from '@embedpool/core/jobs';
import type { Logger } from '@embedpool/core/logger';
import {
  deleteInline,
  type InlineBlobStore,
  InlineReader,
  type ItemFailure,
  permanentJobFailure,
} from '@embedpool/core/queue';
import { inSpan } from '@embedpool/core/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import pLimit from 'p-limit';
import type { EmbedPipeline } from './embed-pipeline';
import { type DeliveryEnqueuer, queueJobCallback, writeJobOutput } from './stages/deliver';

export type { DeliveryEnqueuer } from './stages/deliver';

export interface JobProcessorDeps {
  pipeline: EmbedPipeline;
  redis: Redis;
  prefix: string;
  store: JobStore;
  resultTtlSeconds: number;
  modelId: string;
  dim: () => number;
  logger: Logger;
  /** Images of one job in flight at once: a 1,000-image job must not open 1,000 downloads. */
  perJobConcurrency: number;
  blob?: BlobServiceClient;
  /** Backoff of the sink's own retry; the SDK retries requests and BullMQ retries the whole job above it. */
  blobRetryDelayMs?: number;
  deliveries?: DeliveryEnqueuer;
}

function l2normalize(v: Float32Array): void {
  let sum = 0;
  for (const x of v) sum += x * x;
  const n = Math.sqrt(sum);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i]! /= n;
}

/**
 * An async job: embed every image, write the output (inline result, blobs, or the result a callback will
 * carry), record the outcome, then hand callbacks to the delivery queue. Every step is safe to repeat, so
 * a job retried after a crash or a storage outage ends with one output and one delivery. (Long: the steps
 * share the job's record, inline source and log, and each is commented where it starts.)
 */
export function createJobProcessor(deps: JobProcessorDeps) {
  // Long: the processor itself; see above.
  return async (job: Job<EmbedJobData>): Promise<{ state: string }> => {
    // Validated on dequeue by the dispatcher (@embedpool/core/queue dispatch.ts); embed-worker.ts closes
    // the record of a job the dispatcher refuses.
    const data = job.data;
    const log = deps.logger.child({ jobId: data.jobId });
    const record = await deps.store.get(data.jobId);
    if (!record) throw permanentJobFailure('NOT_FOUND', `job record ${data.jobId} is gone`);
    if (record.state === 'cancelled') {
      await deleteInline(deps.redis, data.inline, stagedBlobs(deps)).catch(() => {});
      return { state: 'cancelled' };
    }
    if (record.state !== 'queued' && record.state !== 'running') {
      // Finished on an earlier attempt that died before the delivery was queued: queue it (ids dedupe).
      await queueJobCallback(deps, record);
      return { state: record.state };
    }
    try {
      if ((await deps.store.markRunning(data.jobId)) === 'missing') {
        // The record vanished since the read above: Redis lost its data. Nothing may be written for it.
        throw new UnrecoverableError(`STATE_LOST: job record ${data.jobId} is gone`);
      }
      const limit = pLimit(deps.perJobConcurrency);
      const blobs = stagedBlobs(deps);
      const inline = new InlineReader(data.inline, deps.redis, {
        timeoutMs: 10_000,
        ...(blobs ? { blobs } : {}),
      });
      const settled = await Promise.allSettled(
        data.images.map((img) => limit(() => deps.pipeline.embed(img.ref, undefined, inline))),
      );
      const dim = deps.dim();
      const vectors: (Float32Array | null)[] = [];
      const failures: ItemFailure[] = [];
      settled.forEach((s, index) => {
        if (s.status === 'fulfilled') {
          if (data.normalize) l2normalize(s.value);
          vectors.push(s.value);
        } else {
          const e = toEmbedpoolError(s.reason);
          vectors.push(null);
          failures.push({ index, code: e.code, message: e.message });
        }
      });
      const location = await inSpan('deliver', { 'embedpool.sink': data.output.type }, () =>
        writeJobOutput(deps, data, vectors, dim),
      );
      const succeeded = vectors.length - failures.length;
      const moved = await deps.store.finish(data.jobId, {
        succeeded,
        failed: failures.length,
        failures,
        location,
        model: deps.modelId,
        dim,
      });
      if (moved === 'missing') {
        // Redis lost the record while the job ran: an inline result nobody can read goes; blob outputs stay
        // for `embedpool recover` to list.
        await deleteInline(deps.redis, data.inline, stagedBlobs(deps)).catch(() => {});
        if (data.output.type !== 'blob') await deps.redis.del(jobKeys.result(deps.prefix, data.jobId));
        log.error({ location }, 'job finished but its record is gone (redis lost its data)');
        throw new UnrecoverableError(`STATE_LOST: job record ${data.jobId} is gone`);
      }
      // The output and the outcome are written: the images are no longer needed (a retry finds the job final).
      await deleteInline(deps.redis, data.inline, stagedBlobs(deps)).catch(() => {});
      const finished = await deps.store.get(data.jobId);
      if (finished) await queueJobCallback(deps, finished);
      log.info({ images: vectors.length, failed: failures.length, output: data.output.type }, 'job done');
      return { state: finished?.state ?? 'completed' };
    } catch (err) {
      const e = toEmbedpoolError(err);
      // A permanent EmbedpoolError ends the job at once (the dispatcher makes it unrecoverable): record it now.
      const last =
        err instanceof UnrecoverableError ||
        (err instanceof EmbedpoolError && err.permanent) ||
        job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ err: e.message, code: e.code, attempt: job.attemptsMade + 1, last }, 'job attempt failed');
      if (last) {
        const storageCode = typeof e.details?.storageCode === 'string' ? e.details.storageCode : undefined;
        await deps.store.fail(data.jobId, {
          code: storageCode ? `STORAGE_${storageCode}` : e.code,
          message: e.message,
        });
        await deleteInline(deps.redis, data.inline, stagedBlobs(deps)).catch(() => {});
      }
      throw err;
    }
  };
}

/** Staged job images are read with the worker's storage client (any container: the job names it). */
function stagedBlobs(deps: JobProcessorDeps): InlineBlobStore | undefined {
  return deps.blob ? new BlobStaging(deps.blob, '') : undefined;
}
