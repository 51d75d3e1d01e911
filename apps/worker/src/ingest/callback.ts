import type { IngestDeps } from './deps';

/**
 * Hands a finished ingestion's completion callback (`ingestion.finished`, see docs/ingestion.md) to the
 * `deliveries` queue: the one signed-callback path (stages/deliver-callback.ts), with the same signing, URL
 * policy, retries, metrics and dead letters as job callbacks. The delivery writes the record's `callback`.
 */
export async function queueIngestionCallback(
  deps: Pick<IngestDeps, 'store' | 'deliveries'>,
  ingestionId: string,
  round: number,
): Promise<string> {
  const record = await deps.store.get(ingestionId);
  const url = record?.request.callbackUrl;
  if (!record || !url) return 'none';
  if (record.callback?.state === 'delivered') return 'delivered';
  if (!deps.deliveries) {
    await deps.store.setCallback(ingestionId, {
      url,
      state: 'dead',
      attempts: 0,
      lastError: 'callbacks are not configured on the worker (CALLBACK_SECRET)',
    });
    return 'dead';
  }
  await deps.deliveries.enqueueIngestionFinished({ ingestionId, round, url });
  return 'queued';
}
