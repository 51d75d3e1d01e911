import type { EmbedpoolError } from '@embedpool/core/errors';
import type { IngestionStore, RetryNote } from '@embedpool/core/ingest';
import type { Job } from 'bullmq';

/** The code an ingestion shows for an error: the storage service's own as `STORAGE_<code>`, else ours. */
export function ingestionErrorCode(e: EmbedpoolError): string {
  return typeof e.details?.storageCode === 'string' ? `STORAGE_${e.details.storageCode}` : e.code;
}

/**
 * Says in the ingestion's state that a step failed for now and BullMQ will try it again. Best effort: the
 * note only informs, and a Redis hiccup here must not replace the error being retried.
 */
export async function noteRetry(
  store: IngestionStore,
  ingestionId: string,
  step: RetryNote['step'],
  code: string,
  message: string,
  job: Job,
): Promise<void> {
  await store
    .noteRetry(ingestionId, {
      step,
      code,
      message,
      attempt: job.attemptsMade + 1,
      attempts: job.opts.attempts ?? 1,
      at: Date.now(),
    })
    .catch(() => {});
}
