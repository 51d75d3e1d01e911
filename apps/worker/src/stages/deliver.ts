/**
 * The deliver stage: where finished vectors go. Each kind of work has its sink:
 * - an async job (/v1/jobs): its output here (the inline result in Redis, or blobs), then its callback,
 *   if any, handed to the `deliveries` queue (`writeJobOutput`, `queueJobCallback`);
 * - a signed callback, of a job or an ingestion: sent by the delivery worker (deliver-callback.ts);
 * - a /score job: the binary result key the waiting API request reads (score-processor.ts, via
 *   core/queue results);
 * - an ingestion chunk: a Parquet/JSONL shard and its index file (ingest/chunk-processor.ts).
 */
import type { BlobServiceClient } from '@azure/storage-blob';
import { writeJobVectors } from '@embedpool/core/blob';
import { type EmbedJobData, type JobLocation, type JobRecord, jobKeys } from '@embedpool/core/jobs';
import { permanentJobFailure } from '@embedpool/core/queue';
import type { Redis } from 'ioredis';

/** What the job processor needs from the delivery queue (see @embedpool/core/delivery). */
export interface DeliveryEnqueuer {
  enqueue(req: { jobId: string; url: string; kind: 'vectors' | 'blob-pointer' }): Promise<unknown>;
}

/** Where a job's output is written. */
export interface JobOutputDeps {
  redis: Redis;
  prefix: string;
  resultTtlSeconds: number;
  modelId: string;
  blob?: BlobServiceClient;
  /** Backoff of the sink's own retry; the SDK retries requests and BullMQ retries the whole job above it. */
  blobRetryDelayMs?: number;
}

/** Writes an async job's vectors where its output asks (one row per image, null for a failed one). */
export async function writeJobOutput(
  deps: JobOutputDeps,
  data: EmbedJobData,
  vectors: (Float32Array | null)[],
  dim: number,
): Promise<JobLocation> {
  const output = data.output;
  if (output.type === 'blob') {
    if (!deps.blob)
      throw permanentJobFailure('CONFIG_INVALID', 'blob output requested but no storage is configured');
    const written = await writeJobVectors({
      client: deps.blob,
      container: output.container,
      pathTemplate: output.path,
      jobId: data.jobId,
      jobDate: data.createdAt,
      items: data.images.map((img, i) => ({ id: img.id, vector: vectors[i] ?? null })),
      model: deps.modelId,
      dim,
      formats: { jsonl: true, npy: output.npy },
      createContainer: true,
      onExisting: 'accept-complete',
      retry: { attempts: 2, backoffMs: deps.blobRetryDelayMs ?? 1000 },
    });
    return { type: 'blob', container: written.container, blobs: written.blobs.map((b) => b.name) };
  }
  // Inline and callback outputs keep the vectors in Redis: fetched by GET .../result, or read by the delivery.
  const flat = new Float32Array(vectors.length * dim);
  vectors.forEach((v, i) => {
    if (v) flat.set(v, i * dim);
  });
  await deps.redis.set(
    jobKeys.result(deps.prefix, data.jobId),
    Buffer.from(flat.buffer, flat.byteOffset, flat.byteLength),
    'EX',
    deps.resultTtlSeconds,
  );
  return output.type === 'callback'
    ? { type: 'callback', url: output.url }
    : { type: 'inline', resultPath: `/v1/jobs/${data.jobId}/result` };
}

/** Hands a finished job's callback, if it has one, to the `deliveries` queue (once: ids dedupe). */
export async function queueJobCallback(
  deps: { deliveries?: DeliveryEnqueuer },
  record: JobRecord,
): Promise<void> {
  const out = record.output;
  const url = out.type === 'callback' ? out.url : out.type === 'blob' ? out.callbackUrl : undefined;
  // Already handed over (pending, delivered or dead-lettered): the delivery queue owns it from there.
  if (!url || record.state === 'cancelled' || record.delivery) return;
  if (!deps.deliveries)
    throw permanentJobFailure('CONFIG_INVALID', 'callback requested but deliveries are off');
  await deps.deliveries.enqueue({
    jobId: record.id,
    url,
    kind: out.type === 'blob' ? 'blob-pointer' : 'vectors',
  });
}
