/**
 * Delivery bodies, built when each attempt is sent (never stored in the queue): from the job record and,
 * for `vectors`, the inline float32 result, read without consuming it.
 */
import type { Redis } from 'ioredis';
import { EmbedpoolError } from '../errors';
import { type JobRecord, jobKeys } from '../jobs';
import { EVENT_JOB_COMPLETED } from './signing';

export type DeliveryKind = 'vectors' | 'blob-pointer';

/** Why a delivery can never succeed because its source data is gone (recorded as the delivery's lastError). */
export type DeliveryGoneReason = 'RECORD_EXPIRED' | 'RESULT_EXPIRED' | 'RESULT_INVALID';

export type DeliveryItem =
  | { id: string; image_features: number[] }
  | { id: string; error: { code: string; message: string } };

export interface VectorsPayload {
  event: typeof EVENT_JOB_COMPLETED;
  jobId: string;
  state: JobRecord['state'];
  model: string | null;
  dim: number | null;
  items: DeliveryItem[];
  /** Only when the job failed as a whole. */
  error?: { code: string; message: string };
  createdAt: number;
  finishedAt: number | null;
}

export interface BlobPointerPayload {
  event: typeof EVENT_JOB_COMPLETED;
  jobId: string;
  state: JobRecord['state'];
  model: string | null;
  dim: number | null;
  location: JobRecord['location'] | null;
  counts: { total: number; succeeded: number; failed: number };
  failures: { index: number; id: string | null; code: string; message: string }[];
  error?: { code: string; message: string };
  createdAt: number;
  finishedAt: number | null;
}

/** A delivery whose data is gone: never retried. `details.reason` is a DeliveryGoneReason. */
export function deliveryGone(reason: DeliveryGoneReason, message: string): EmbedpoolError {
  return new EmbedpoolError('NOT_FOUND', `${reason}: ${message}`, { details: { reason } });
}

export function goneReason(err: unknown): DeliveryGoneReason | undefined {
  if (!(err instanceof EmbedpoolError) || err.code !== 'NOT_FOUND') return undefined;
  const reason = err.details?.reason;
  return reason === 'RECORD_EXPIRED' || reason === 'RESULT_EXPIRED' || reason === 'RESULT_INVALID'
    ? reason
    : undefined;
}

/**
 * The `vectors` body. `vectors` holds one float32 row of `dim` per item, in order (zero rows for failed
 * items); null when there is no result, which is only acceptable when no item succeeded.
 */
export function vectorsPayload(record: JobRecord, vectors: Float32Array | null): VectorsPayload {
  const failures = new Map(record.failures.map((f) => [f.index, f]));
  const dim = record.dim ?? null;
  const count = record.itemIds.length;
  if (vectors === null && record.succeeded > 0) {
    throw deliveryGone('RESULT_EXPIRED', `the inline result of job ${record.id} has expired or was removed`);
  }
  if (vectors !== null && (dim === null || dim <= 0 || vectors.length !== count * dim)) {
    throw deliveryGone(
      'RESULT_INVALID',
      `the inline result of job ${record.id} holds ${vectors.length} floats, expected ${count} x ${dim}`,
    );
  }
  const jobError = record.error ?? { code: 'INTERNAL', message: 'no result for this image' };
  const items: DeliveryItem[] = record.itemIds.map((id, index) => {
    const failure = failures.get(index);
    if (failure) return { id, error: { code: failure.code, message: failure.message } };
    if (vectors === null || dim === null) return { id, error: { ...jobError } };
    return { id, image_features: Array.from(vectors.subarray(index * dim, (index + 1) * dim)) };
  });
  return {
    event: EVENT_JOB_COMPLETED,
    jobId: record.id,
    state: record.state,
    model: record.model ?? null,
    dim,
    items,
    ...(record.error ? { error: record.error } : {}),
    createdAt: record.createdAt,
    finishedAt: record.finishedAt ?? null,
  };
}

/** The `blob-pointer` body: where the blobs are, and what happened to each image. */
export function blobPointerPayload(record: JobRecord): BlobPointerPayload {
  return {
    event: EVENT_JOB_COMPLETED,
    jobId: record.id,
    state: record.state,
    model: record.model ?? null,
    dim: record.dim ?? null,
    location: record.location ?? null,
    counts: { total: record.total, succeeded: record.succeeded, failed: record.failed },
    failures: record.failures.map((f) => ({
      index: f.index,
      id: record.itemIds[f.index] ?? null,
      code: f.code,
      message: f.message,
    })),
    ...(record.error ? { error: record.error } : {}),
    createdAt: record.createdAt,
    finishedAt: record.finishedAt ?? null,
  };
}

/** Reads a job's inline float32 result WITHOUT deleting it (the API's GET /result still serves it). */
export async function readInlineResult(
  redis: Redis,
  prefix: string,
  jobId: string,
): Promise<Float32Array | null> {
  const buf = await redis.getBuffer(jobKeys.result(prefix, jobId));
  if (!buf) return null;
  if (buf.byteLength % 4 !== 0) {
    throw deliveryGone('RESULT_INVALID', `the inline result of job ${jobId} is not whole float32 values`);
  }
  // Copy into an aligned buffer: a Buffer slice may start at an offset that is not a multiple of 4.
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

/** The JSON body of one delivery attempt. */
export async function buildDeliveryBody(
  redis: Redis,
  prefix: string,
  record: JobRecord,
  kind: DeliveryKind,
): Promise<string> {
  if (kind === 'blob-pointer') return JSON.stringify(blobPointerPayload(record));
  return JSON.stringify(vectorsPayload(record, await readInlineResult(redis, prefix, record.id)));
}
